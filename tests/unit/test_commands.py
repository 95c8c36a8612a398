"""The command grammar: table tests, a property test over arbitrary input, injection."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import build_command_table
from gateway.commands import CommandError, CommandTable, Param, split_model_ref, tokenize
from gateway.config import load_settings
from gateway.model import Actor, Command, Conversation
from gateway.plugins import load_plugins

ACTOR = Actor("web", "alice", "alice")
CONV = Conversation("web", "main")


@pytest.fixture(scope="module")
def table() -> CommandTable:
    return build_command_table(load_plugins(), load_settings(None))


def parse(table: CommandTable, text: str) -> Command:
    return table.parse(text, ACTOR, CONV)


REQUIRED_VERBS = ["help", "finetune", "train", "sft", "pretrain", "align", "infer", "download", "export", "eval",
                  "plan", "status", "jobs", "logs", "cancel", "estimate"]


@pytest.mark.parametrize("verb", REQUIRED_VERBS)
def test_every_required_verb_is_registered(table: CommandTable, verb: str) -> None:
    assert table.lookup(verb).verb in table.specs


@pytest.mark.parametrize("text,verb,args", [
    (".finetune qwen-7b-lora wiki_zh epochs=3 rank=64", "finetune",
     {"model": "qwen-7b-lora", "dataset": "wiki_zh", "epochs": 3.0, "rank": 64}),
    (".train llama3-lora script_summary", "finetune", {"model": "llama3-lora", "dataset": "script_summary"}),
    (".sft demo-lora demo epochs=2", "finetune", {"model": "demo-lora", "dataset": "demo", "epochs": 2.0}),
    ('.finetune demo-lora demo prompt="hello there, world"', "finetune", {"prompt": "hello there, world"}),
    (".align qwen-7b-lora hh-rlhf-cn method=dpo", "align", {"method": "dpo"}),
    ("finetune demo-lora demo", "finetune", {"model": "demo-lora"}),  # slash commands come without prefix
    (".FINETUNE demo-lora demo", "finetune", {"model": "demo-lora"}),
    (".jobs", "jobs", {"all": False}),
    (".cancel 3f9c2a1b", "cancel", {"job": "3f9c2a1b"}),
    (".help finetune", "help", {"verb": "finetune"}),
    (".finetune Qwen/Qwen2.5-7B-Instruct AI-ModelScope/alpaca-gpt4-data-zh#500", "finetune",
     {"model": "Qwen/Qwen2.5-7B-Instruct", "dataset": "AI-ModelScope/alpaca-gpt4-data-zh#500"}),
])
def test_examples_parse_into_typed_commands(table: CommandTable, text: str, verb: str, args: dict) -> None:
    cmd = parse(table, text)
    assert cmd.verb == verb
    for key, value in args.items():
        assert cmd.args[key] == value and type(cmd.args[key]) is type(value)


def test_plan_wraps_a_whole_command(table: CommandTable) -> None:
    cmd = parse(table, ".plan finetune demo-lora demo epochs=2")
    inner = cmd.args["command"]
    assert inner.verb == "finetune" and inner.args["epochs"] == 2.0


@pytest.mark.parametrize("text,code,in_hint", [
    (".fintune demo-lora demo", "unknown_verb", ".finetune"),
    (".finetune demo-lora demo epoch=3", "unknown_key", "epochs="),
    (".finetune demo-lora demo epochs=three", "bad_value", "epochs=FLOAT"),
    (".finetune demo-lora demo epochs=1000", "out_of_range", "between"),
    (".finetune demo-lora", "missing_argument", "Usage: .finetune MODEL DATASET"),
    (".finetune demo-lora demo extra", "unexpected_argument", "key=value"),
    (".finetune demo-lora demo epochs=1 epochs=2", "duplicate_key", "Usage"),
    ('.finetune demo-lora demo prompt="open', "unterminated_quote", "Close it"),
    (".align demo-lora demo method=ppo", "bad_value", "dpo"),
    (".cancel ../../etc", "bad_job_id", ".jobs"),
    ("." + "x" * 2001, "too_long", "Shorten"),
    ("", "empty", ".help"),
    (".finetune demo-lora demo\x00", "bad_character", "plain text"),
])
def test_user_errors_have_code_message_and_hint(table: CommandTable, text: str, code: str, in_hint: str) -> None:
    with pytest.raises(CommandError) as err:
        parse(table, text)
    assert err.value.code == code
    assert err.value.message
    assert in_hint in err.value.hint


def test_help_and_usage_are_generated_from_the_specs(table: CommandTable) -> None:
    overview = table.help_text()
    for verb in ("finetune", "align", "infer", "cancel"):
        assert f".{verb}" in overview
    detail = table.help_text("train")
    assert detail.startswith(".finetune MODEL DATASET") and "Aliases: .train, .sft" in detail


def test_tokenizer_has_only_whitespace_and_double_quotes() -> None:
    assert tokenize('a  b\t"c d" k="v w" \'x y\'') == [
        ("a", False), ("b", False), ("c d", False), ("k=v w", True), ("'x", False), ("y'", False)]
    assert tokenize('"a=b"') == [("a=b", False)]  # a quoted '=' is data, not an option
    assert tokenize("$(rm -rf /) `id` a;b && c | d") == [
        ("$(rm", False), ("-rf", False), ("/)", False), ("`id`", False), ("a;b", False), ("&&", False),
        ("c", False), ("|", False), ("d", False)]


def test_model_ref_splits_preset_and_tuner() -> None:
    assert split_model_ref("qwen-7b-lora") == ("qwen-7b", "lora")
    assert split_model_ref("qwen-7b-qlora") == ("qwen-7b", "qlora")
    assert split_model_ref("Qwen/Qwen2.5-7B-lora") == ("Qwen/Qwen2.5-7B-lora", None)
    assert split_model_ref("demo") == ("demo", None)


INJECTIONS = [
    ".finetune demo-lora demo; rm -rf /",
    ".finetune demo-lora demo && curl evil",
    ".finetune demo-lora demo | sh",
    ".finetune `id` demo",
    ".finetune $(id) demo",
    ".finetune demo-lora demo\nrm -rf /",
    ".finetune demo-lora ../../etc/passwd",
    ".finetune demo-lora upload:../secret.jsonl",
    ".finetune --output_dir=/etc demo",
    ".finetune demo-lora --dataset=/etc/passwd",
    ".finetune demo-lora demo epochs=--1",
    ".finetune demo-lora demo lr=1e-3;id",
    ".finetune ｄｅｍｏ-lora demo",  # full-width look-alikes
    ".finetune demo-lora demo epochs=３",  # a non-ASCII digit
    ".finetune demo‐lora demo",  # U+2010 hyphen
    ".finetune demo-lora demo\u202eepochs=1",  # bidi override
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_attempts_are_rejected(table: CommandTable, text: str) -> None:
    with pytest.raises(CommandError):
        parse(table, text)


INERT = [
    '.finetune demo-lora demo prompt="--output_dir=/etc; rm -rf / && $(id) `id` | sh"',
    '.finetune demo-lora demo system="-rf --deepspeed zero3"',
    '.infer demo prompt="-h"',
]


@pytest.mark.parametrize("text", INERT)
def test_hostile_free_text_stays_inert_data_in_argv(table: CommandTable, text: str) -> None:
    from gateway.app import Hammer
    hammer = Hammer(load_settings(None))
    hammer.build(chat=False)
    import asyncio
    cmd = parse(table, text)
    spec = asyncio.run(hammer.planner.build(cmd))
    assert_argv_safe(list(spec.argv), cmd)


def assert_argv_safe(argv: list[str], cmd: Command) -> None:
    """Every argv element that starts with '-' is a flag hammer chose, never user text."""
    user_values = [v for v in cmd.args.values() if isinstance(v, str)]
    for element in argv:
        if element.startswith("-"):
            flag = element.split("=", 1)[0]
            assert flag.startswith("--") and flag[2:].replace("_", "").replace("-", "").isalnum(), element
            assert not any(element == v for v in user_values), element
    assert "sh" not in argv[:1] and "bash" not in argv


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_parse_returns_a_typed_command_or_raises_command_error(table: CommandTable, text: str) -> None:
    check_parse(table, text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["finetune", "demo-lora", "demo", "epochs=3", "rank=64", '"a b"', "=", "x=",
                                 "=y", '"', "method=dpo", "lr=1e-4", "tuner=full", "plan", ".", "--x", "gpus=2",
                                 "tp=2", "megatron=true", "prompt=", "upload:a.jsonl", "Qwen/Qwen2", "\n", " "]),
                max_size=12))
def test_grammar_shaped_input_never_raises_anything_else(table: CommandTable, words: list[str]) -> None:
    check_parse(table, "." + " ".join(words))


def check_parse(table: CommandTable, text: str) -> None:
    try:
        cmd = parse(table, text)
    except CommandError as err:
        assert err.code and err.message
        return
    assert cmd.verb in table.specs
    check_types(table, cmd)


def check_types(table: CommandTable, cmd: Command) -> None:
    spec = table.specs[cmd.verb]
    params = {p.name: p for p in spec.params}
    for key, value in cmd.args.items():
        if key == "command":
            assert isinstance(value, Command)
            check_types(table, value)
            continue
        if key in spec.fixed:
            continue
        p = params[key]
        expected = {"int": int, "float": float, "bool": bool}.get(p.kind, str)
        assert type(value) is expected, (key, value)
        if p.kind in ("int", "float"):
            assert (p.min is None or value >= p.min) and (p.max is None or value <= p.max)
        if p.kind == "enum":
            assert value in p.choices
        if p.kind in ("model", "dataset", "job"):
            assert value.isascii() and not value.startswith("-") and ".." not in value


def test_operator_extra_flags_are_typed(table: CommandTable) -> None:
    t = CommandTable(table.specs.values())
    t.add_extra_params("finetune", [Param("warmup_ratio", "float", min=0, max=0.5, flag="--warmup_ratio")])
    assert parse(t, ".finetune demo-lora demo warmup_ratio=0.1").args["warmup_ratio"] == 0.1
    with pytest.raises(CommandError):
        parse(t, ".finetune demo-lora demo warmup_ratio=0.9")
