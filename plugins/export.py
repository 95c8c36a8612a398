"""`export`: turn a fine-tune into something to deploy, through `swift export`.

* `.export JOBID` merges the job's LoRA adapter into its base model (`--merge_lora true`);
* `bits=4|8 method=awq|gptq|bnb` quantizes (a LoRA job is merged first, in the same run);
* `model=PRESET bits=4 method=...` quantizes a base model without any job.

AWQ and GPTQ calibrate on a dataset (default: 256 samples of alpaca, or the local demo
data for the demo model); bitsandbytes needs none. All three run on a CUDA GPU.
"""

from __future__ import annotations

from gateway.commands import CommandError, CommandSpec, Param
from gateway.contracts import JobContext
from gateway.hookspecs import RegisterCommand, hookimpl
from gateway.model import Command, JobSpec
from plugins.argv import extra_flags
from plugins.datasets import resolve_dataset
from plugins.jobspec import OUTPUT_DIR, model_job
from plugins.params import GPUS, HUB

METHODS = ("awq", "gptq", "bnb")
#: Bit widths each method exports in ms-swift 4.6.
METHOD_BITS = {"awq": (4,), "gptq": (2, 3, 4, 8), "bnb": (4, 8)}

PARAMS: tuple[Param, ...] = (
    Param("adapter", "job", "the finished fine-tune to export", positional=True),
    Param("model", "model", "a base model to quantize (instead of a job)"),
    Param("merge", "bool", "merge the LoRA adapter into the base weights (default: true for LoRA jobs)"),
    Param("bits", "enum", "quantize to this many bits", choices=("4", "8")),
    Param("method", "enum", "quantization method", choices=METHODS),
    Param("dataset", "dataset", "calibration data for awq/gptq (default alpaca-zh#256)"),
    GPUS, HUB,
)


def build_job(command: Command, ctx: JobContext) -> JobSpec:
    a = command.args
    hub = a.get("hub", "modelscope")
    if not a.get("adapter") and not a.get("model"):
        raise CommandError("missing_argument", ".export needs a job id or model=PRESET.",
                           "Usage: .export JOBID [bits=4 method=awq], "
                           "or .export model=qwen-7b bits=4 method=gptq")
    model, argv, parts, prior = model_job(command, ctx, "export", hub, with_hub_flags=False)
    bits = int(a["bits"]) if a.get("bits") else None
    method = a.get("method")
    if method and bits is None:
        raise CommandError("missing_argument", f"method={method} needs bits=4 or bits=8.", "Add bits=4.")
    if bits is not None:
        method = method or ("awq" if bits == 4 else "bnb")
        if bits not in METHOD_BITS[method]:
            ok = ", ".join(m for m, b in METHOD_BITS.items() if bits in b)
            raise CommandError("bad_combination", f"{method} cannot export {bits}-bit weights.",
                               f"For bits={bits} use method={ok}.")
    is_lora = prior is not None and prior.is_adapter
    merge = a.get("merge")
    if merge and not is_lora:
        raise CommandError("bad_combination", "There is no LoRA adapter to merge"
                           + (f": job {prior.job_id} trained full weights." if prior else "."),
                           "Drop merge=true; use bits=4 to quantize instead.")
    if merge is None:
        merge = is_lora
    if not merge and bits is None:
        raise CommandError("nothing_to_do", "Nothing to export: no merge and no quantization.",
                           "Use merge=true (LoRA jobs) or bits=4|8 method=awq|gptq|bnb.")
    if is_lora and not merge:
        raise CommandError("bad_combination", "A LoRA job is quantized after merging its adapter.",
                           "Drop merge=false.")
    parts.gpus = int(a["gpus"]) if a.get("gpus") is not None else (1 if bits else model.preset.default_gpus)
    if bits and parts.gpus == 0:
        raise CommandError("bad_combination", f"{method} quantization needs a CUDA GPU; this job has gpus=0.",
                           "Give gpus=1, or export with merge=true only.")
    argv.opt("merge_lora", True if merge else None)
    if bits:
        argv.extend([("quant_bits", bits), ("quant_method", method)])
        if method in ("awq", "gptq"):
            ref = a.get("dataset") or ("demo" if model.local else "alpaca-zh#256")
            ds = resolve_dataset(ref, ctx, hub=hub)
            parts.add_dataset(ds, hub)
            argv.extend([("dataset", ds.value), ("quant_n_samples", 256),
                         ("max_length", model.preset.max_length)])
    elif a.get("dataset"):
        raise CommandError("bad_combination", "dataset= is calibration data for awq/gptq quantization.",
                           "Drop it, or add bits=4 method=awq.")
    argv.extend(parts.hub_flags(hub))
    out = f"{OUTPUT_DIR}/{'quantized' if bits else 'merged'}"
    argv.extend([("output_dir", out), ("exist_ok", True)])
    if model.local:
        argv.opt("torch_dtype", model.preset.torch_dtype)
    argv.items.extend(extra_flags(command, ctx))
    parts.params.update({"hub": hub, "merge": bool(merge), "quant_bits": bits, "quant_method": method,
                         "export_dir": out})
    return parts.build(ctx)


EXPORT = CommandSpec(
    verb="export", params=PARAMS,
    help="Merge a fine-tune's LoRA adapter into its model, or quantize a model (awq, gptq, bnb).",
    examples=(".export 3f9c2a1b", ".export 3f9c2a1b bits=4 method=awq",
              ".export model=qwen-7b bits=8 method=gptq"),
    build_job=build_job,
)


@hookimpl
def hammer_commands(register: RegisterCommand) -> None:
    register(EXPORT)
