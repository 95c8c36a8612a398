"""`infer`: answer a prompt with a model, a fine-tune's adapter (`adapter=JOBID`), or
both, through `swift infer`.

ms-swift's CLI takes prompts only from a dataset file or an interactive terminal, so the
prompt travels in `JobSpec.params["prompts"]` (never in argv) and the runner writes it as
a one-line JSONL file (`prepare` item `prompts:PATH`) that `--val_dataset` reads. The
answers land in `/workspace/output/infer_result.jsonl` and come back as `sample` events.
"""

from __future__ import annotations

from gateway.commands import CommandSpec, Param
from gateway.contracts import JobContext
from gateway.hookspecs import RegisterCommand, hookimpl
from gateway.model import Command, JobSpec
from plugins.argv import extra_flags
from plugins.jobspec import OUTPUT_DIR, model_job, multi_gpu_env
from plugins.params import ADAPTER, GPUS, HUB, SYSTEM

PROMPTS_FILE = "/workspace/prompts.jsonl"
RESULT_FILE = f"{OUTPUT_DIR}/infer_result.jsonl"

PARAMS: tuple[Param, ...] = (
    Param("model", "model", "model preset or hub id (optional with adapter=)", positional=True),
    Param("prompt", "text", "what to ask the model", required=True),
    ADAPTER, SYSTEM,
    Param("max_new_tokens", "int", "longest answer in tokens", min=1, max=8192),
    Param("temperature", "float", "sampling temperature (0: always the most likely token)", min=0, max=2,
          default=0.0),
    GPUS, HUB,
)


def build_job(command: Command, ctx: JobContext) -> JobSpec:
    a = command.args
    hub = a.get("hub", "modelscope")
    model, argv, parts, _ = model_job(command, ctx, "infer", hub)
    gpus = parts.gpus
    max_new = int(a.get("max_new_tokens") or (64 if model.local else 512))
    argv.extend([("torch_dtype", model.preset.torch_dtype), ("infer_backend", "transformers"),
                 ("val_dataset", [PROMPTS_FILE]), ("result_path", RESULT_FILE), ("max_new_tokens", max_new),
                 ("temperature", float(a.get("temperature", 0.0))), ("stream", False), ("max_batch_size", 1),
                 ("max_length", model.preset.max_length)])
    argv.text("system", a.get("system"))
    argv.items.extend(extra_flags(command, ctx))
    parts.prepare.append(f"prompts:{PROMPTS_FILE}")
    parts.env.update(multi_gpu_env(gpus))
    parts.params.update({"prompts": [a["prompt"]], "hub": hub, "max_new_tokens": max_new,
                         "result_path": RESULT_FILE, "max_length": model.preset.max_length})
    if a.get("system"):
        parts.params["system"] = a["system"]
    return parts.build(ctx)


INFER = CommandSpec(
    verb="infer", aliases=("ask",), params=PARAMS,
    help="Ask a model (or a fine-tune's adapter) a question.",
    examples=('.infer demo prompt="Hello, who are you?"', '.infer adapter=3f9c2a1b prompt="Summarize: ..."',
              '.infer qwen-7b prompt="写一首诗" max_new_tokens=256'),
    build_job=build_job,
)


@hookimpl
def hammer_commands(register: RegisterCommand) -> None:
    register(INFER)
