"""Training jobs (sft, pt, rlhf, and their Megatron forms): typed options -> ms-swift flags.

One function, `build_training_job`, serves `finetune`, `pretrain` and `align`, so the
three verbs cannot drift apart: the same option always maps to the same flag, checked
against the same rules. Defaults come from the model preset (see plugins/presets.py).
"""

from __future__ import annotations

from typing import Any

from gateway.commands import CommandError, Param
from gateway.contracts import JobContext
from gateway.model import Command, JobSpec
from plugins.argv import Argv, extra_flags
from plugins.datasets import resolve_dataset
from plugins.jobspec import OUTPUT_DIR, SpecParts, multi_gpu_env
from plugins.models import resolve_model
from plugins.params import GPUS, HUB, SYSTEM

TUNERS = ("lora", "qlora", "full")
ALIGN_METHODS = ("dpo", "kto", "orpo", "simpo")
#: The data each alignment method trains on (see presets.DatasetPreset.kind).
ALIGN_DATA = {"dpo": "preference", "orpo": "preference", "simpo": "preference", "kto": "kto"}

MODEL = Param("model", "model",
              "model preset (qwen-7b, demo...) with optional -lora/-qlora/-full, or a hub id",
              required=True, positional=True)
DATASET = Param("dataset", "dataset", "dataset preset, hub id (org/name[#N]) or upload:FILE.jsonl",
                required=True, positional=True)

TRAIN_PARAMS: tuple[Param, ...] = (
    MODEL, DATASET,
    Param("tuner", "enum", "lora adapters, qlora (4-bit base, GPU only) or full weights", choices=TUNERS),
    Param("epochs", "float", "passes over the dataset", min=0.01, max=100),
    Param("max_steps", "int", "stop after this many optimizer steps (overrides epochs)",
          min=1, max=10_000_000),
    Param("lr", "float", "learning rate", min=1e-8, max=1.0),
    Param("batch_size", "int", "samples per GPU per step", min=1, max=512),
    Param("grad_accum", "int", "gradient accumulation steps", min=1, max=4096),
    Param("max_length", "int", "longest sample in tokens (longer ones are dropped)", min=16, max=131072),
    Param("rank", "int", "LoRA rank", min=1, max=1024),
    Param("alpha", "int", "LoRA alpha", min=1, max=4096),
    Param("eval_ratio", "float", "fraction of the data held out for evaluation", min=0, max=0.5),
    Param("seed", "int", "random seed", min=0, max=2**31 - 1),
    Param("prompt", "text", "a prompt to try the trained model on when training ends"),
    SYSTEM, GPUS, HUB,
)

MEGATRON_PARAMS: tuple[Param, ...] = (
    Param("megatron", "bool", "train with Megatron-LM (large models, several GPUs)"),
    Param("tp", "int", "Megatron tensor-parallel size", min=1, max=64),
    Param("pp", "int", "Megatron pipeline-parallel size", min=1, max=64),
    Param("sp", "bool", "Megatron sequence parallelism (needs tp > 1)"),
)

ALIGN_PARAMS: tuple[Param, ...] = (
    Param("method", "enum", "preference-alignment method", choices=ALIGN_METHODS, default="dpo"),
    Param("beta", "float", "strength of the preference term (method default if unset)", min=0, max=100),
    Param("gamma", "float", "SimPO target reward margin", min=0, max=100),
)


def build_training_job(command: Command, ctx: JobContext, *, task: str) -> JobSpec:
    """task: sft | pt | rlhf."""
    a = command.args
    hub = a.get("hub", "modelscope")
    model = resolve_model(a["model"], hub)
    preset = model.preset
    tuner = _tuner(a, model.tuner)
    method = a.get("method", "dpo") if task == "rlhf" else None
    megatron = bool(a.get("megatron", False))
    tp, pp = int(a.get("tp", 1)), int(a.get("pp", 1))
    gpus = _gpus(a, preset.default_gpus, megatron, tp, pp)
    _check(a, tuner, gpus, megatron, tp, pp, preset)

    want = ALIGN_DATA[method] if method else None
    dataset = resolve_dataset(a["dataset"], ctx, hub=hub, want=want)
    program = ("megatron", task) if megatron else ("swift", task)
    argv = Argv(*program)
    parts = SpecParts(task=task, model_ref=model.ref, argv=argv, gpus=gpus)
    parts.add_model(model)
    parts.add_dataset(dataset, hub)
    argv.extend(model.flags())
    argv.opt("dataset", dataset.value)
    argv.extend(parts.hub_flags(hub))
    if method:
        argv.opt("rlhf_type", method)
        argv.opt("beta", a.get("beta"))
        if method == "simpo":
            argv.opt("simpo_gamma", a.get("gamma"))
        if method != "simpo" and a.get("gamma") is not None:
            raise CommandError("bad_combination", "gamma only applies to method=simpo.",
                               "Use method=simpo, or drop gamma.")

    lora = tuner in ("lora", "qlora")
    # Alignment starts from a tuned model: half the fine-tuning rate keeps it from drifting.
    base_lr = preset.lr_lora if lora else preset.lr_full
    lr = a.get("lr") or base_lr * (0.5 if method and not preset.local else 1)
    batch = int(a.get("batch_size") or preset.batch_size)
    accum = int(a.get("grad_accum") or preset.grad_accum)
    max_length = int(a.get("max_length") or preset.max_length)
    argv.opt("tuner_type", "full" if tuner == "full" else "lora")
    if tuner == "qlora":
        argv.extend([("quant_method", "bnb"), ("quant_bits", 4),
                     ("bnb_4bit_compute_dtype", preset.torch_dtype), ("bnb_4bit_quant_type", "nf4"),
                     ("bnb_4bit_use_double_quant", True)])
    argv.opt("torch_dtype", preset.torch_dtype)
    if megatron:
        _megatron_flags(argv, a, preset, batch, accum, gpus // (tp * pp), lr)
    else:
        argv.opt("num_train_epochs", float(a.get("epochs") or preset.epochs))
        argv.opt("max_steps", a.get("max_steps"))
        argv.opt("per_device_train_batch_size", batch)
        argv.opt("per_device_eval_batch_size", batch)
        argv.opt("gradient_accumulation_steps", accum)
        argv.opt("learning_rate", lr)
        argv.opt("gradient_checkpointing", preset.gradient_checkpointing)
        argv.opt("warmup_ratio", 0.0 if preset.local else 0.05)
        argv.opt("save_total_limit", 2)
        argv.opt("dataloader_num_workers", 0 if preset.local else None)
    rank = int(a.get("rank") or preset.lora_rank)
    if lora:
        argv.extend([("lora_rank", rank), ("lora_alpha", int(a.get("alpha") or preset.lora_alpha)),
                     ("target_modules", ["all-linear"])])
    # ms-swift writes each run under /workspace/output/v<N>-<time>/ (its default
    # add_version); the runner and `adapter=JOBID` both look for that layout.
    argv.extend([("max_length", max_length), ("output_dir", OUTPUT_DIR),
                 ("logging_steps", preset.logging_steps), ("save_steps", preset.save_steps),
                 ("report_to", ["tensorboard"]), ("split_dataset_ratio", float(a.get("eval_ratio", 0.0))),
                 ("seed", a.get("seed", 42)), ("dataset_num_proc", 1)])
    if preset.local:
        argv.opt("check_model", False)
    argv.text("system", a.get("system"))
    argv.items.extend(extra_flags(command, ctx))

    parts.env.update(multi_gpu_env(gpus))
    epochs = float(a.get("epochs") or preset.epochs)
    parts.count_training(epochs=epochs, max_length=max_length,
                         max_steps=int(a["max_steps"]) if a.get("max_steps") is not None else None,
                         samples_per_step=batch * accum * max(1, gpus))
    parts.params.update({
        "tuner": tuner, "hub": hub, "max_length": max_length, "batch_size": batch, "grad_accum": accum,
        "learning_rate": lr, "gradient_checkpointing": preset.gradient_checkpointing,
        "torch_dtype": preset.torch_dtype, "megatron": megatron,
    })
    if lora:
        parts.params["lora_rank"] = rank
    if tuner == "qlora":
        parts.params["quant_bits"] = 4
    if megatron:
        parts.params.update({"tp": tp, "pp": pp, "sp": bool(a.get("sp", False))})
    if method:
        parts.params["method"] = method
    if a.get("prompt"):
        parts.params["sample_prompts"] = [a["prompt"]]
    if a.get("system"):
        parts.params["system"] = a["system"]
    return parts.build(ctx)


def _tuner(a: Any, from_name: str | None) -> str:
    given = a.get("tuner")
    if given and from_name and given != from_name:
        raise CommandError("bad_combination", f"The model name says {from_name} but tuner={given}.",
                           f"Say it once: either the -{from_name} suffix or tuner={given}.")
    return str(given or from_name or "lora")


def _gpus(a: Any, default: int, megatron: bool, tp: int, pp: int) -> int:
    if a.get("gpus") is not None:
        return int(a["gpus"])
    return tp * pp if megatron else default


def _check(a: Any, tuner: str, gpus: int, megatron: bool, tp: int, pp: int, preset: Any) -> None:
    if tuner == "full" and (a.get("rank") is not None or a.get("alpha") is not None):
        raise CommandError("bad_combination", "rank and alpha only apply to lora and qlora.",
                           "Drop them, or train with tuner=lora.")
    if tuner == "qlora" and gpus == 0:
        raise CommandError("bad_combination",
                           "QLoRA needs a CUDA GPU (bitsandbytes 4-bit); this job has gpus=0.",
                           "Use -lora on the CPU, or give gpus=1 or more.")
    limit = preset.arch.max_context if preset.arch else None
    if limit and a.get("max_length") and int(a["max_length"]) > limit:
        raise CommandError("out_of_range", f"max_length={a['max_length']} is longer than {preset.name} "
                           f"handles ({limit} tokens).", f"Use max_length={limit} or less.")
    if not megatron:
        used = [k for k in ("tp", "pp", "sp") if a.get(k) is not None]
        if used:
            raise CommandError("bad_combination", f"{', '.join(used)} only apply to Megatron training.",
                               "Add megatron=true, or drop them.")
        return
    if tuner == "qlora":
        raise CommandError("bad_combination", "Megatron does not train QLoRA (4-bit) models.",
                           "Use tuner=lora or tuner=full with megatron=true.")
    if gpus == 0:
        raise CommandError("bad_combination", "Megatron needs GPUs.", f"Give gpus={tp * pp} or more.")
    if gpus % (tp * pp):
        raise CommandError("bad_combination", f"tp x pp = {tp * pp} does not divide gpus={gpus}.",
                           f"Every data-parallel copy needs tp x pp GPUs: use gpus={tp * pp} or a multiple.")
    if a.get("sp") and tp < 2:
        raise CommandError("bad_combination", "Sequence parallelism (sp=true) needs tp of 2 or more.",
                           "Set tp=2 (or more), or drop sp.")
    if a.get("max_steps") is None and not float(a.get("epochs") or preset.epochs).is_integer():
        raise CommandError("bad_value", "Megatron trains whole epochs.",
                           "Use epochs=1, 2, ... or max_steps=N.")


def _megatron_flags(argv: Argv, a: Any, preset: Any, batch: int, accum: int, dp: int, lr: float) -> None:
    """Megatron names: micro/global batch instead of per-device batch + accumulation,
    `train_iters` instead of max_steps, `lr`, and activation recomputation."""
    argv.opt("tensor_model_parallel_size", int(a.get("tp", 1)))
    argv.opt("pipeline_model_parallel_size", int(a.get("pp", 1)))
    argv.opt("sequence_parallel", True if a.get("sp") else None)
    argv.opt("micro_batch_size", batch)
    argv.opt("global_batch_size", batch * accum * max(dp, 1))
    if a.get("max_steps") is not None:
        argv.opt("train_iters", int(a["max_steps"]))
    else:
        argv.opt("num_train_epochs", int(float(a.get("epochs") or preset.epochs)))
    argv.opt("lr", lr)
    argv.opt("recompute_granularity", "selective" if preset.gradient_checkpointing else "none")
