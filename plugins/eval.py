"""`eval`: score a model (or a fine-tune's adapter) on a standard benchmark with
`swift eval` (EvalScope's native backend).

Benchmarks are downloaded by EvalScope from ModelScope when the job starts, so an eval
job always needs the network, even for the local demo model.
"""

from __future__ import annotations

from gateway.commands import CommandSpec, Param
from gateway.contracts import JobContext
from gateway.hookspecs import RegisterCommand, hookimpl
from gateway.model import Command, JobSpec
from plugins.argv import extra_flags
from plugins.jobspec import OUTPUT_DIR, model_job
from plugins.params import ADAPTER, GPUS, HUB

#: EvalScope native benchmarks hammer offers (names as `--eval_dataset` takes them).
BENCHMARKS = ("gsm8k", "arc", "mmlu", "cmmlu", "ceval", "hellaswag", "truthful_qa", "humaneval", "bbh",
              "iquiz")
EVAL_DIR = f"{OUTPUT_DIR}/eval"

PARAMS: tuple[Param, ...] = (
    Param("model", "model", "model preset or hub id (optional with adapter=)", positional=True),
    Param("benchmark", "enum", "which benchmark", choices=BENCHMARKS, default="gsm8k"),
    Param("limit", "int", "questions to ask (default 100; 10 for demo)", min=1, max=100_000),
    ADAPTER, GPUS, HUB,
)


def build_job(command: Command, ctx: JobContext) -> JobSpec:
    a = command.args
    hub = a.get("hub", "modelscope")
    model, argv, parts, _ = model_job(command, ctx, "eval", hub)
    benchmark = a.get("benchmark", "gsm8k")
    limit = int(a.get("limit") or (10 if model.local else 100))
    argv.extend([("torch_dtype", model.preset.torch_dtype), ("infer_backend", "transformers"),
                 ("eval_backend", "Native"), ("eval_dataset", [benchmark]), ("eval_limit", limit),
                 ("eval_output_dir", EVAL_DIR), ("temperature", 0.0),
                 ("max_length", model.preset.max_length)])
    argv.items.extend(extra_flags(command, ctx))
    # EvalScope fetches the benchmark itself, from ModelScope.
    parts.needs_network = True
    parts.add_hub("modelscope")
    parts.params.update({"hub": hub, "benchmark": benchmark, "eval_limit": limit, "eval_dir": EVAL_DIR,
                         "max_length": model.preset.max_length})
    return parts.build(ctx)


EVAL = CommandSpec(
    verb="eval", aliases=("evaluate", "bench"), params=PARAMS,
    help="Score a model or a fine-tune on a benchmark (EvalScope via swift eval).",
    examples=(".eval qwen-7b benchmark=gsm8k limit=200", ".eval adapter=3f9c2a1b benchmark=ceval"),
    build_job=build_job,
)


@hookimpl
def hammer_commands(register: RegisterCommand) -> None:
    register(EVAL)
