"""Discord rendering, slash-command definitions and config, without any network."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.chat.discord import DiscordConfig, render, slash
from gateway.commands import CommandTable
from gateway.model import Actor, Button, Conversation, OutboundMessage
from gateway.plugins import load_plugins


async def test_embed_carries_title_text_fields_progress_level_and_footer() -> None:
    msg = OutboundMessage(
        title="Job 3f9c · sft demo-lora on demo",
        text="training",
        fields=(("Step", "3/10"), ("Loss", "1.2345 ▇▅▃")),
        progress=0.3,
        level="error",
        footer="requested by Ada",
    )
    r = render.render(msg)
    e = r.embed.to_dict()
    assert e["title"] == msg.title and e["color"] == 0xED4245 and e["footer"]["text"] == "requested by Ada"
    assert e["description"].splitlines() == ["`██████░░░░░░░░░░░░░░` 30%", "training"]
    assert [(f["name"], f["value"]) for f in e["fields"]] == list(msg.fields)
    assert r.view is None and r.image is None


async def test_long_text_and_too_many_fields_are_cut_to_discord_limits() -> None:
    msg = OutboundMessage(
        title="t" * 300, text="x" * 5000, fields=tuple((f"f{i}", "v" * 2000) for i in range(30))
    )
    e = render.render(msg).embed.to_dict()
    assert len(e["title"]) == 256 and e["title"].endswith("…")
    assert len(e["description"]) == 4096 and e["description"].endswith("…")
    assert all(len(f["value"]) <= 1024 for f in e["fields"]) and len(e["fields"]) <= 25
    total = (
        len(e["title"]) + len(e["description"]) + sum(len(f["name"]) + len(f["value"]) for f in e["fields"])
    )
    assert total <= 6000


async def test_buttons_become_components_whose_ids_say_everything() -> None:
    msg = OutboundMessage(
        buttons=(
            Button("approve", "Approve", "3f9c2a1b", "primary"),
            Button("deny", "Deny", "3f9c2a1b", "danger"),
        )
    )
    r = render.render(msg)
    assert r.view is not None and not r.view.is_dispatchable()
    [row] = r.view.to_components()
    assert [(c["label"], c["custom_id"], c["style"]) for c in row["components"]] == [
        ("Approve", "hammer:approve:3f9c2a1b", 1),
        ("Deny", "hammer:deny:3f9c2a1b", 4),
    ]
    assert render.parse_custom_id("hammer:approve:3f9c2a1b") == ("approve", "3f9c2a1b")
    assert render.parse_custom_id("hammer:delete:3f9c2a1b") is None
    assert render.parse_custom_id("other:cancel:1") is None


async def test_loss_curve_is_attached_and_shown_in_the_embed(tmp_path: Path) -> None:
    png = tmp_path / "loss_curve.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    r = render.render(OutboundMessage(title="done", image=png))
    assert r.embed.to_dict()["image"]["url"] == "attachment://loss_curve.png"
    assert [f.filename for f in r.send_kwargs()["files"]] == ["loss_curve.png"]
    assert [f.filename for f in r.edit_kwargs()["attachments"]] == ["loss_curve.png"]
    gone = render.render(OutboundMessage(title="done", image=tmp_path / "missing.png"))
    assert "image" not in gone.embed.to_dict() and "files" not in gone.send_kwargs()


async def test_an_edit_without_buttons_removes_them() -> None:
    kwargs = render.render(OutboundMessage(title="finished")).edit_kwargs()
    assert kwargs["view"] is None and "attachments" not in kwargs


# -- slash commands ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table() -> CommandTable:
    plugins = load_plugins({"enabled": ["chatops", "finetune", "infer"]}, env={})
    return CommandTable(plugins.command_specs(), prefix=".")


def test_slash_definitions_from_the_command_table_are_valid_for_discord(table: CommandTable) -> None:
    commands = slash.from_specs(table.specs.values())
    assert [c.verb for c in commands] == list(slash.VERBS)
    for c in commands:
        p = c.payload()
        assert re.fullmatch(r"[a-z0-9_-]{1,32}", p["name"]) and 1 <= len(p["description"]) <= 100
        assert len(p["options"]) <= 25
        required = [o["required"] for o in p["options"]]
        assert required == sorted(required, reverse=True), f"/{c.verb}: required options first"
        for o in p["options"]:
            assert re.fullmatch(r"[a-z0-9_-]{1,32}", o["name"]) and 1 <= len(o["description"]) <= 100
            assert len(o.get("choices", ())) <= 25
    finetune = next(c for c in commands if c.verb == "finetune").payload()
    by_name = {o["name"]: o for o in finetune["options"]}
    assert by_name["model"]["autocomplete"] and by_name["dataset"]["autocomplete"]
    assert by_name["epochs"]["type"] == slash.NUMBER and by_name["epochs"]["min_value"] == 0.01
    assert by_name["tuner"]["choices"] == [{"name": t, "value": t} for t in ("lora", "qlora", "full")]


def test_a_used_slash_command_parses_with_the_chat_grammar(table: CommandTable) -> None:
    commands = {c.verb: c for c in slash.from_specs(table.specs.values())}
    text = slash.to_text(
        commands["finetune"],
        "finetune",
        [
            {"name": "model", "value": "demo-lora"},
            {"name": "dataset", "value": "demo"},
            {"name": "epochs", "value": 2.0},
            {"name": "prompt", "value": "say hi"},
        ],
    )
    assert text == 'finetune demo-lora demo epochs=2 prompt="say hi"'
    cmd = table.parse(text, Actor("discord", "1"), Conversation("discord", "2"))
    assert (cmd.args["model"], cmd.args["dataset"], cmd.args["epochs"], cmd.args["prompt"]) == (
        "demo-lora",
        "demo",
        2.0,
        "say hi",
    )


def test_to_text_keeps_order_and_falls_back_to_key_value() -> None:
    infer = next(c for c in slash.DEFAULT_COMMANDS if c.verb == "infer")
    assert (
        slash.to_text(infer, "infer", [{"name": "prompt", "value": "hello there"}])
        == 'infer prompt="hello there"'
    )
    assert (
        slash.to_text(
            infer,
            "infer",
            [{"name": "options", "value": "max_new_tokens=5"}, {"name": "model", "value": "demo"}],
        )
        == "infer demo max_new_tokens=5"
    )
    plan = next(c for c in slash.DEFAULT_COMMANDS if c.verb == "plan")
    assert (
        slash.to_text(plan, "plan", [{"name": "command", "value": " finetune demo-lora demo "}])
        == "plan finetune demo-lora demo"
    )
    assert slash.to_text(None, "jobs", [{"name": "all", "value": True}]) == "jobs all=true"


def test_autocomplete_prefers_names_that_start_with_what_was_typed() -> None:
    assert slash.suggest(["alpaca-zh", "wiki_zh", "zh-chat"], "zh") == ["zh-chat", "alpaca-zh", "wiki_zh"]
    assert "qwen-7b-lora" in slash.model_candidates()
    assert "alpaca-zh" in slash.dataset_candidates()
    assert len(slash.suggest(slash.model_candidates(), "")) == 25


# -- config ------------------------------------------------------------------------------------------
def test_config_accepts_the_documented_example() -> None:
    cfg = DiscordConfig.model_validate(
        {
            "token": "env:DISCORD_BOT_TOKEN",
            "channels": ["#Experiments", "123456789012345678"],
            "role_map": {"ML Admins": "admin", "123456789012345679": "trainer"},
        }
    )
    assert cfg.channels == ["experiments", "123456789012345678"] and cfg.threads and cfg.slash_commands


@pytest.mark.parametrize(
    "table_, field",
    [
        ({"channels": ["experiments"]}, "token"),
        ({"token": "abc.def.ghi", "channels": ["experiments"]}, "token"),  # a literal token, not a reference
        ({"token": "env:T", "channels": []}, "channels"),
        ({"token": "env:T", "channels": ["bad channel!"]}, "channels"),
        ({"token": "env:T", "channels": ["x"], "role_map": {"Mods": "Admin!"}}, "role_map"),
        ({"token": "env:T", "channels": ["x"], "guilds": ["seed-lab"]}, "guilds"),
        ({"token": "env:T", "channels": ["x"], "prefix": "!"}, "prefix"),
    ],
)
def test_config_refuses_mistakes_by_key(table_: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        DiscordConfig.model_validate(table_)
    assert field in {str(e["loc"][0]) for e in err.value.errors()}


def test_the_documented_config_section_is_valid() -> None:
    """docs/discord.md carries the commented section for config.example.toml; uncommented,
    it must be a valid `[chat.discord]` table."""
    import tomllib

    doc = (Path(__file__).resolve().parents[2] / "docs" / "discord.md").read_text(encoding="utf-8")
    block = doc.split("## config.example.toml section", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    text = "\n".join(line.removeprefix("# ") for line in block.strip().splitlines())
    table = tomllib.loads(text)["chat"]["discord"]
    cfg = DiscordConfig.model_validate(table)
    assert cfg.token == "env:DISCORD_BOT_TOKEN" and cfg.channels == ["experiments"]
    assert set(table) == set(DiscordConfig.model_fields) - {"enabled"}, "every key is documented"
