"""Estimator inputs from outside the catalog: a custom architecture (CLI --params and shape
flags) and a JobSpec-style parameter mapping (what the orchestrator holds)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from gateway.catalog import ModelArch, load_models
from gateway.estimate.memory import Estimate, EstimateError, estimate

#: Task names the plugins use -> the estimator's task (preference tuning sized as DPO).
TASK_ALIASES = {"finetune": "sft", "rlhf": "dpo", "align": "dpo", "kto": "dpo", "orpo": "dpo",
                "simpo": "dpo", "cpo": "dpo", "eval": "infer", "inference": "infer"}


def custom_arch(name: str, params: float, **overrides: Any) -> ModelArch:
    """A ModelArch for a model outside the catalog: `params` plus any known shape numbers
    (layers, hidden_size, intermediate_size, heads, kv_heads, vocab_size, max_context,
    tied_embeddings); the rest is taken from the preset nearest in size."""
    if not params or params <= 0:
        raise EstimateError("--params must be a positive parameter count", "e.g. --params 7.6e9")
    presets = [m for m in load_models().values() if not m.local and not m.vision_params]
    nearest = min(presets, key=lambda m: abs(m.params - params))
    fields = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(fields) - set(ModelArch.__dataclass_fields__)
    if unknown:
        raise EstimateError(f"unknown architecture fields {sorted(unknown)}")
    base = dataclasses.replace(nearest, name=name, params=int(params), display_name=name,
                               hub_id_hf=None, hub_id_modelscope=None, vision_params=0)
    if "hidden_size" in fields or "heads" in fields:
        base = dataclasses.replace(base, head_dim=0)
    try:
        return dataclasses.replace(base, **fields)
    except ValueError as exc:
        raise EstimateError(f"inconsistent architecture: {exc}") from None


def _task_of(task: str) -> str:
    t = task.lower()
    return TASK_ALIASES.get(t, t)


def estimate_from_params(model: str | ModelArch, params: Mapping[str, Any], *, task: str = "sft",
                         gpus: int = 1) -> Estimate:
    """Estimate a job from a JobSpec-style parameter mapping (what the orchestrator holds).

    Reads `tuner` (or ms-swift's `train_type`), `max_length`, `batch_size` (or
    `per_device_train_batch_size`), `zero` (2/3 or "zero2"/"zero3", or `deepspeed`),
    `tp`/`pp` (or Megatron's `tensor_model_parallel_size`/`pipeline_model_parallel_size`),
    `lora_rank`, `quant_bits`, `gradient_checkpointing`; unknown keys are ignored.
    """
    def get(*keys: str, default: Any = None) -> Any:
        for k in keys:
            if params.get(k) is not None:
                return params[k]
        return default

    zero_raw = get("zero", "deepspeed")
    zero = None
    if zero_raw not in (None, "", 0, "0"):
        digits = "".join(ch for ch in str(zero_raw) if ch.isdigit())
        zero = int(digits) if digits else None
    quant = get("quant_bits")
    return estimate(
        model, tuner=str(get("tuner", "train_type", default="lora")),
        task=_task_of(str(get("rlhf_type", default=task))),
        max_length=int(length) if (length := get("max_length")) else None,
        batch_size=int(get("batch_size", "per_device_train_batch_size", default=1)),
        gpus=int(get("gpus", default=gpus)), zero=zero,
        tp=int(get("tp", "tensor_model_parallel_size", default=1)),
        pp=int(get("pp", "pipeline_model_parallel_size", default=1)),
        gradient_checkpointing=bool(get("gradient_checkpointing", default=True)),
        lora_rank=int(get("lora_rank", default=8)), quant_bits=int(quant) if quant else None,
    )
