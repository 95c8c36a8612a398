"""Every task plugin's argv, checked by the parsers of the tools that will run it.

ms-swift 4.6 parses its command line with transformers' HfArgumentParser over its
argument dataclasses (swift.utils.parse_args). We build exactly those parsers and parse
each generated argv *without* instantiating the dataclasses (their __post_init__ would
download models): every flag must be one of the class's own option strings (no
abbreviations, no unknown flags), every value must pass the option's type and choices,
and the names ms-swift only checks later (tuner_type, model_type, template, rlhf_type)
are checked against ms-swift's registries here. `download` runs the hubs' own CLIs, so
its argv goes through `modelscope`'s argparse parser and `hf`'s click command.

Megatron's argument classes import megatron-core and mcore-bridge at module level; when
those are not installed (a CPU host), this test loads ms-swift's own
swift/megatron/arguments modules with those two imports stubbed: the dataclass fields,
types and choices are ms-swift's, unchanged.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import os
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.taskctx import build, make_ctx, make_prior_job

pytestmark = pytest.mark.swift

swift = pytest.importorskip("swift", reason="ms-swift is not installed (pip install 'hammer-gateway[swift]')")

if not swift.__version__.startswith("4.6"):
    pytest.skip(f"these argv target ms-swift 4.6, found {swift.__version__}", allow_module_level=True)


class ArgvRejected(Exception):
    pass


def _raise(message: str) -> None:
    raise ArgvRejected(message)


def _hf_parser(cls: type) -> argparse.ArgumentParser:
    from swift.utils.utils import _patch_get_type_hints
    from transformers import HfArgumentParser
    with _patch_get_type_hints():
        parser = HfArgumentParser([cls])
    parser.error = _raise  # type: ignore[method-assign]
    return parser


def _megatron_arguments() -> Any:
    try:
        import mcore_bridge  # noqa: F401
        import megatron.core  # noqa: F401
    except ImportError:
        _stub_megatron_imports()
    if "swift.megatron" not in sys.modules or not hasattr(sys.modules["swift.megatron"], "arguments"):
        # Load the arguments package without swift/megatron/__init__.py, which
        # initializes Megatron (CUDA, process groups) on import.
        pkg = types.ModuleType("swift.megatron")
        pkg.__path__ = [os.path.join(os.path.dirname(swift.__file__), "megatron")]
        sys.modules["swift.megatron"] = pkg
        utils = types.ModuleType("swift.megatron.utils")
        utils.initialize_megatron = lambda *a, **k: None  # type: ignore[attr-defined]
        sys.modules["swift.megatron.utils"] = utils
    return importlib.import_module("swift.megatron.arguments")


def _stub_megatron_imports() -> None:
    core = types.ModuleType("megatron.core")
    core.__path__ = []
    core.__version__ = "0.16.0"  # type: ignore[attr-defined]
    core.mpu = types.ModuleType("megatron.core.mpu")  # type: ignore[attr-defined]
    transformer = types.ModuleType("megatron.core.transformer")
    transformer.__path__ = []
    enums = types.ModuleType("megatron.core.transformer.enums")
    enums.AttnBackend = enum.Enum("AttnBackend", "flash fused unfused local auto")  # type: ignore[attr-defined]
    megatron = types.ModuleType("megatron")
    megatron.__path__ = []
    megatron.core = core  # type: ignore[attr-defined]
    bridge = types.ModuleType("mcore_bridge")
    bridge.__path__ = []
    bridge_model = types.ModuleType("mcore_bridge.model")
    bridge_model.get_mcore_model_type = lambda *a, **k: None  # type: ignore[attr-defined]
    bridge_model.get_model_meta = lambda *a, **k: None  # type: ignore[attr-defined]
    for name, mod in {"megatron": megatron, "megatron.core": core, "megatron.core.mpu": core.mpu,
                      "megatron.core.transformer": transformer, "megatron.core.transformer.enums": enums,
                      "mcore_bridge": bridge, "mcore_bridge.model": bridge_model}.items():
        sys.modules.setdefault(name, mod)


@pytest.fixture(scope="module")
def parsers() -> Iterator[dict[tuple[str, str], argparse.ArgumentParser]]:
    from swift import arguments as a
    before = set(sys.modules)
    meg = _megatron_arguments()
    classes = {("swift", "sft"): a.SftArguments, ("swift", "pt"): a.PretrainArguments,
               ("swift", "rlhf"): a.RLHFArguments, ("swift", "infer"): a.InferArguments,
               ("swift", "export"): a.ExportArguments, ("swift", "eval"): a.EvalArguments,
               ("megatron", "sft"): meg.MegatronSftArguments,
               ("megatron", "pt"): meg.MegatronPretrainArguments}
    built = {key: _hf_parser(cls) for key, cls in classes.items()}
    # The stubs (and the Megatron package loaded around its __init__) must not leak
    # into other tests that check whether Megatron is installed.
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("megatron", "mcore_bridge") or name.startswith("swift.megatron"):
            del sys.modules[name]
    yield built


def validate_swift(argv: tuple[str, ...], parsers: dict[tuple[str, str], argparse.ArgumentParser]
                   ) -> argparse.Namespace:
    """Parse like ms-swift does; fail on anything it would not accept."""
    from swift.arguments import get_supported_tuners
    from swift.model import MODEL_MAPPING
    from swift.template import TEMPLATE_MAPPING

    parser = parsers[(argv[0], argv[1])]
    args = list(argv[2:])
    flags = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    assert len(flags) == len(set(flags)), f"a flag is given twice: {flags}"
    for flag in flags:
        assert flag in parser._option_string_actions, f"{flag} is not an option of {argv[0]} {argv[1]}"
    ns, unknown = parser.parse_known_args(args)
    assert unknown == [], f"ms-swift would refuse: {unknown}"
    if argv[0] == "swift" and argv[1] in ("sft", "pt", "rlhf"):
        assert ns.tuner_type in get_supported_tuners()
        assert "--train_type" not in flags  # removed in ms-swift 4
    if getattr(ns, "model_type", None):
        assert ns.model_type in MODEL_MAPPING, ns.model_type
    if getattr(ns, "template", None):
        assert ns.template in TEMPLATE_MAPPING, ns.template
    return ns


COMMANDS = [
    # sft: lora / qlora / full, presets, hub ids, uploads, options
    "finetune demo-lora demo",
    "finetune demo-lora demo epochs=2 lr=0.0005 batch_size=4 max_length=256 seed=7 eval_ratio=0.1",
    "sft demo-full demo max_steps=3",
    "train qwen-7b-lora alpaca-zh epochs=2 rank=16 alpha=64 grad_accum=8",
    "finetune qwen-7b-qlora alpaca-en max_length=4096",
    "finetune qwen-14b-full alpaca-zh gpus=4",
    "finetune llama3 self-cognition#500 tuner=lora hub=hf",
    "finetune internlm2.5-7b-lora code-alpaca",
    "finetune glm4-9b-lora long-alpaca",
    "finetune qwen3-8b-lora AI-ModelScope/alpaca-gpt4-data-zh#1000",
    "finetune Qwen/Qwen2.5-0.5B-Instruct upload:faq.jsonl",
    'finetune demo-lora upload:faq.jsonl#10 system="You are --output_dir=/etc helpful" prompt="hi there"',
    # pt
    "pretrain demo-lora demo",
    "pt qwen-7b-full wiki_zh gpus=8",
    # rlhf
    "align demo-lora demo",
    "align demo-lora demo method=kto",
    "align demo-lora demo method=orpo beta=0.2",
    "align demo-lora demo method=simpo gamma=1.5 beta=2",
    "rlhf qwen-7b-lora dpo-emoji method=dpo beta=0.1",
    "align qwen-7b-full orpo-mix method=orpo gpus=8",
    "align qwen-7b-lora ultrafeedback-kto method=kto",
    "align llama3-lora hh-rlhf-cn method=simpo",
    # megatron
    "finetune qwen-7b-lora alpaca-zh megatron=true tp=2 pp=2 sp=true",
    "finetune llama3-70b-full alpaca-en megatron=true tp=4 pp=2 gpus=16 epochs=2",
    "pretrain qwen-14b-lora wiki_zh megatron=true tp=2 max_steps=100 gpus=2",
    # infer
    'infer demo prompt="Hello, who are you?"',
    'infer qwen-7b prompt="--output_dir=/etc" system="--model evil" max_new_tokens=100 temperature=0.7',
    'infer adapter=lorajob1 prompt="hi"',
    'infer qwen-7b adapter=fulljob1 prompt="hi" gpus=2',
    'infer adapter=qwenjob1 prompt="hi" hub=hf',
    # export
    "export lorajob1",
    "export qwenjob1 bits=4 method=awq",
    "export qwenjob1 bits=4 method=gptq dataset=alpaca-en#128",
    "export qwenjob1 bits=8 method=bnb",
    "export fulljob1 bits=8 method=gptq",
    "export model=qwen-7b bits=4",
    "export model=qwen-7b bits=8 method=bnb hub=hf",
    # eval
    "eval qwen-7b benchmark=gsm8k limit=50",
    "eval demo",
    "eval adapter=lorajob1 benchmark=ceval",
    "eval adapter=qwenjob1 benchmark=mmlu gpus=2",
]


@pytest.fixture
def ctx(tmp_path: Path) -> Any:
    c = make_ctx(tmp_path)
    make_prior_job(c, "lorajob1", model="demo")
    make_prior_job(c, "qwenjob1", model="qwen2.5-7b")
    make_prior_job(c, "fulljob1", model="qwen2.5-7b", adapter=False, tuner="full")
    return c


@pytest.mark.parametrize("text", COMMANDS)
def test_swift_accepts_argv(text: str, ctx: Any, parsers: Any) -> None:
    spec = build(text, ctx)
    assert spec.argv[0] in ("swift", "megatron")
    ns = validate_swift(spec.argv, parsers)
    if "output_dir" in vars(ns) and spec.task != "eval":
        assert ns.output_dir.startswith("/workspace/output")


def test_free_text_stays_one_value(ctx: Any, parsers: Any) -> None:
    spec = build('finetune demo-lora demo system="--output_dir=/etc --model x"', ctx)
    ns = validate_swift(spec.argv, parsers)
    assert ns.system == "--output_dir=/etc --model x"
    assert ns.output_dir == "/workspace/output"
    assert ns.model == "/cache/models/demo"


def test_megatron_parallel_sizes_parse(ctx: Any, parsers: Any) -> None:
    spec = build("finetune qwen-7b-lora alpaca-zh megatron=true tp=2 pp=2 sp=true gpus=8", ctx)
    ns = validate_swift(spec.argv, parsers)
    sizes = (ns.tensor_model_parallel_size, ns.pipeline_model_parallel_size, ns.sequence_parallel)
    assert sizes == (2, 2, True)
    assert ns.global_batch_size == 1 * 16 * 2  # micro batch x accumulation x data-parallel copies


def test_qlora_flags_parse(ctx: Any, parsers: Any) -> None:
    ns = validate_swift(build("finetune qwen-7b-qlora alpaca-zh", ctx).argv, parsers)
    quant = (ns.tuner_type, ns.quant_method, ns.quant_bits, ns.bnb_4bit_quant_type)
    assert quant == ("lora", "bnb", 4, "nf4")


def test_export_merge_parses(ctx: Any, parsers: Any) -> None:
    ns = validate_swift(build("export lorajob1", ctx).argv, parsers)
    assert ns.merge_lora is True
    assert ns.adapters == ["/inputs/jobs/lorajob1/adapter"]


def test_validator_catches_bad_argv(parsers: Any) -> None:
    """The check itself can fail: an unknown flag, a removed flag, a bad choice."""
    with pytest.raises(AssertionError):
        validate_swift(("swift", "sft", "--train_type", "lora"), parsers)
    with pytest.raises(ArgvRejected):
        validate_swift(("swift", "rlhf", "--rlhf_type", "dpx"), parsers)
    with pytest.raises(ArgvRejected):
        validate_swift(("swift", "sft", "--num_train_epochs", "two"), parsers)
    with pytest.raises(AssertionError):
        validate_swift(("megatron", "sft", "--learning_rate", "1e-4"), parsers)


# -- download: the hubs' own CLIs -----------------------------------------------------------


def _validate_download(argv: tuple[str, ...]) -> dict[str, Any]:
    if argv[0] == "modelscope":
        from modelscope_hub.cli.main import _build_parser
        parser = _build_parser()
        parser.error = _raise  # type: ignore[method-assign]
        return vars(parser.parse_args(list(argv[1:])))
    assert argv[0] == "hf"
    from huggingface_hub.cli.hf import app
    ctx = app.make_context("hf", list(argv[1:]))
    with warnings.catch_warnings():  # click 8.2 moved the subcommand out of protected_args
        warnings.simplefilter("ignore", DeprecationWarning)
        pending = [*getattr(ctx, "protected_args", []), *ctx.args]
    name, cmd, rest = app.resolve_command(ctx, pending)
    assert name == "download"
    return dict(cmd.make_context(name, rest, parent=ctx).params)


@pytest.mark.parametrize("text,repo", [
    ("download qwen-7b", "Qwen/Qwen2.5-7B-Instruct"),
    ("download Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
    ('download glm4 revision="master"', "ZhipuAI/GLM-4-9B-0414"),
])
def test_modelscope_cli_accepts_download(text: str, repo: str, ctx: Any) -> None:
    pytest.importorskip("modelscope_hub")
    spec = build(text, ctx)
    params = _validate_download(spec.argv)
    assert params["model"] == repo


@pytest.mark.parametrize("text,repo", [
    ("download llama3 hub=hf", "meta-llama/Meta-Llama-3-8B-Instruct"),
    ('download qwen-7b hub=hf revision="main"', "Qwen/Qwen2.5-7B-Instruct"),
])
def test_hf_cli_accepts_download(text: str, repo: str, ctx: Any) -> None:
    pytest.importorskip("huggingface_hub.cli.hf")
    spec = build(text, ctx)
    params = _validate_download(spec.argv)
    assert params["repo_id"] == repo
