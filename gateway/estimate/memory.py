"""Per-GPU memory of a training or inference job, as a breakdown.

The model follows what ms-swift (the program the sandbox runs) actually allocates:

* Without DeepSpeed or Megatron, ms-swift loads the model in `torch_dtype` (bf16) and the
  HF Trainer trains it as is: *pure bf16*. Full tuning then keeps bf16 weights, bf16
  gradients and bf16 AdamW moments (2+2+4 bytes/param, no fp32 master copy), and
  PyTorch's foreach AdamW materialises `sqrt(exp_avg_sq)` for every parameter during the
  step (one more state-sized temporary). LoRA adapters are fp32 (PEFT upcasts them):
  4 bytes weight + 4 gradient + 8 AdamW.
* DeepSpeed ZeRO and Megatron train in mixed precision: bf16 weights, fp32 master
  weights and fp32 AdamW moments (ZeRO paper's 2+2+12 bytes/param; Megatron keeps fp32
  `main_grad`s, 2+4+12). ZeRO-2 shards gradients and optimizer state over the GPUs, ZeRO-3
  also the weights (plus the parameters it gathers for the layer it is computing);
  Megatron splits the model over tensor x pipeline ranks and shards optimizer state over
  the data-parallel ranks (distributed optimizer).
* QLoRA keeps the decoder's linear weights in 4-bit NF4 with double quantization
  (4.127 bits/param) or 8-bit LLM.int8; embeddings, LM head, norms and the vision tower
  stay 16-bit.
* Activations: with gradient checkpointing (ms-swift's default) each decoder layer keeps
  its bf16 input, plus the full working set of the one layer being recomputed;
  without it, every layer's working set. The working set counts what HF's decoder layer
  saves for backward (RMSNorm's fp32 copies, q/k/v with GQA heads repeated for SDPA, the
  SwiGLU intermediates) and, for LoRA, the dropout copies of each adapter's input.
  Logits: bf16 logits, their fp32 copy and fp32 log-softmax (transformers computes the
  cross-entropy in fp32): 10 bytes per token per vocabulary entry. DPO runs chosen and
  rejected together (twice the batch) and, for full tuning, a frozen reference model.
* Inference: weights plus a bf16 KV cache for `max_length x batch`.
* Overhead: the CUDA context (~0.5 GiB, ~0.75 GiB with NCCL) and 5% for the caching
  allocator's fragmentation.

Sources and calibration: docs/estimate.md and tests/unit/test_estimate.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.catalog import ModelArch, UnknownModelError, resolve_model

GIB = 1024**3
TUNERS = ("lora", "qlora", "full")
TASKS = ("sft", "pt", "dpo", "infer")
ZERO_STAGES = (2, 3)
DEFAULT_MAX_LENGTH = 2048

CUDA_CONTEXT_BYTES = int(0.5 * GIB)
NCCL_BYTES = int(0.25 * GIB)
ALLOCATOR_OVERHEAD = 0.05
NF4_BYTES = (4 + 0.127) / 8  # NF4 + double-quantized absmax (QLoRA paper, section 3)
INT8_BYTES = 1.0
LOGIT_BYTES = 2 + 4 + 4  # bf16 logits, fp32 copy, fp32 log-softmax
ZERO2_BUCKET_ELEMS = 2e8  # ms-swift's zero2.json reduce/allgather bucket sizes
ZERO3_MAX_LIVE_ELEMS = 1e9  # stage3_max_live_parameters in ms-swift's zero3.json

#: Keys of Estimate.breakdown, in display order (bytes per GPU; all present, 0 if unused).
BREAKDOWN_KEYS = (
    "weights", "reference_model", "trainable_weights", "gradients", "optimizer",
    "master_weights", "optimizer_step", "activations", "logits", "kv_cache",
    "comm_buffers", "cuda_context", "allocator_overhead",
)


class EstimateError(ValueError):
    """A request the estimator cannot or will not size: `message` names the conflict,
    `hint` says what to do instead."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "hint": self.hint}


@dataclass(frozen=True)
class Estimate:
    """What one job needs per GPU, and why (`breakdown`, bytes per GPU)."""

    arch: ModelArch
    tuner: str
    task: str
    max_length: int
    batch_size: int
    gpus: int
    zero: int | None
    tp: int
    pp: int
    gradient_checkpointing: bool
    lora_rank: int
    quant_bits: int | None
    backend: str  # single | ddp | deepspeed | megatron
    trainable_params: int
    breakdown: Mapping[str, int]
    notes: tuple[str, ...] = field(default=())

    @property
    def model(self) -> str:
        return self.arch.name

    @property
    def per_gpu_bytes(self) -> int:
        return sum(self.breakdown.values())

    @property
    def per_gpu_gib(self) -> float:
        return self.per_gpu_bytes / GIB

    @property
    def total_gib(self) -> float:
        """Memory over all the job's GPUs (per GPU x GPUs; the worst pipeline stage)."""
        return self.per_gpu_gib * self.gpus

    @property
    def training(self) -> bool:
        return self.task != "infer"

    def request(self) -> dict[str, Any]:
        """The arguments that reproduce this estimate with `estimate(arch, **request)`."""
        return {"tuner": self.tuner, "task": self.task, "max_length": self.max_length,
                "batch_size": self.batch_size, "gpus": self.gpus, "zero": self.zero, "tp": self.tp,
                "pp": self.pp, "gradient_checkpointing": self.gradient_checkpointing,
                "lora_rank": self.lora_rank, "quant_bits": self.quant_bits}

    def with_changes(self, **changes: Any) -> Estimate:
        """The same job with some arguments changed (used for alternatives and hints)."""
        request = self.request()
        if changes.get("tuner", "qlora") != "qlora" and "quant_bits" not in changes:
            request["quant_bits"] = None  # leaving QLoRA drops its quantization
        return estimate(self.arch, **{**request, **changes})

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "per_gpu_gib": round(self.per_gpu_gib, 2),
            "total_gib": round(self.total_gib, 2),
            "breakdown": {k: round(v / GIB, 2) for k, v in self.breakdown.items()},
            "request": self.request(),
            "backend": self.backend,
            "trainable_params": self.trainable_params,
            "notes": list(self.notes),
        }


def _stage_params(arch: ModelArch, tp: int, pp: int) -> int:
    """Parameters on the busiest GPU when Megatron splits the model tp x pp ways."""
    if tp == 1 and pp == 1:
        return arch.params
    emb, head = arch.embedding_params, arch.lm_head_params
    body = arch.language_params - emb - head
    per_stage_layers = -(-arch.layers // pp)
    layers_part = body * per_stage_layers // arch.layers
    if pp == 1:
        stage = arch.params
    else:  # first stage: embeddings + vision; last: LM head (a copy of the embedding if tied)
        first = layers_part + emb + arch.vision_params
        last = layers_part + (head or emb)
        stage = max(first, last)
    return -(-stage // tp)


def _layer_working_set(arch: ModelArch, lora: bool) -> int:
    """Bytes per token one decoder layer saves for backward (bf16, SDPA attention)."""
    h, q, kv, i = arch.hidden_size, arch.q_dim, arch.kv_dim, arch.intermediate_size
    per_token = 20 * h + 12 * q + 2 * kv + 8 * i
    if lora:  # dropout output (bf16) and mask (bool) for each adapter's input
        per_token += 3 * (5 * h + q + i)
    return per_token


def _validate(arch: ModelArch, tuner: str, task: str, max_length: int, batch_size: int, gpus: int,
              zero: int | None, tp: int, pp: int, lora_rank: int, quant_bits: int | None) -> None:
    if tuner not in TUNERS:
        raise EstimateError(f"unknown tuner {tuner!r}", "use lora, qlora or full")
    if task not in TASKS:
        raise EstimateError(f"unknown task {task!r}", "use sft, pt, dpo or infer")
    for name, value in (("max_length", max_length), ("batch_size", batch_size), ("gpus", gpus),
                        ("tp", tp), ("pp", pp), ("lora_rank", lora_rank)):
        if value < 1:
            raise EstimateError(f"{name} must be at least 1, not {value}")
    if quant_bits is not None and quant_bits not in (4, 8):
        raise EstimateError(f"quant_bits must be 4 or 8, not {quant_bits}",
                            "QLoRA uses bitsandbytes NF4 (4) or LLM.int8 (8)")
    if tuner == "full" and quant_bits is not None:
        raise EstimateError("QLoRA and full tuning conflict: quantized base weights cannot be trained",
                            "use --tuner qlora (adapters on a 4-bit model) or --tuner full without "
                            "quantization")
    if zero is not None and zero not in ZERO_STAGES:
        raise EstimateError(f"ZeRO stage must be 2 or 3, not {zero}")
    if zero is not None and task == "infer":
        raise EstimateError("DeepSpeed ZeRO shards training state; it does not apply to inference",
                            "drop --zero, or use --tp to split the model over GPUs")
    if zero is not None and tp * pp > 1:
        raise EstimateError("DeepSpeed ZeRO and Megatron TP/PP are different training backends",
                            "use either --zero 2|3 or --tp/--pp, not both")
    if tp * pp > gpus:
        raise EstimateError(f"tensor x pipeline parallel ({tp} x {pp} = {tp * pp}) needs more GPUs "
                            f"than --gpus {gpus}", f"use --gpus {tp * pp} or smaller --tp/--pp")
    if gpus % (tp * pp):
        raise EstimateError(f"--gpus {gpus} is not a multiple of tp x pp = {tp * pp}",
                            "every data-parallel replica needs a full set of tp x pp GPUs")
    if tp > 1 and (arch.heads % tp or arch.kv_heads % tp):
        raise EstimateError(f"--tp {tp} must divide the attention heads ({arch.heads}) and KV heads "
                            f"({arch.kv_heads}) of {arch.name}",
                            f"use a --tp that divides {arch.kv_heads}")
    if pp > arch.layers:
        raise EstimateError(f"--pp {pp} exceeds the {arch.layers} layers of {arch.name}")
    if tuner == "qlora" and tp * pp > 1:
        raise EstimateError("QLoRA (bitsandbytes) does not run under Megatron TP/PP",
                            "use --tuner lora with --tp/--pp, or QLoRA with --zero")


def estimate(model: str | ModelArch, *, tuner: str = "lora", task: str = "sft", max_length: int | None = None,
             batch_size: int = 1, gpus: int = 1, zero: int | None = None, tp: int = 1, pp: int = 1,
             gradient_checkpointing: bool = True, lora_rank: int = 8,
             quant_bits: int | None = None) -> Estimate:
    """Estimate per-GPU memory for one job. Raises EstimateError for bad requests.

    `model` is a preset, alias, hub id or a ModelArch (for models outside the catalog).
    `tuner="lora"` with `quant_bits` set means QLoRA; `tuner="qlora"` defaults to 4 bits.
    `zero` picks DeepSpeed ZeRO-2/3, `tp`/`pp` Megatron tensor/pipeline parallelism;
    `gpus` beyond tp x pp are data-parallel replicas (DDP when neither is set).
    `max_length` defaults to 2048 tokens, or the model's context if that is shorter.
    """
    arch = _resolve(model)
    if max_length is None:
        max_length = min(DEFAULT_MAX_LENGTH, arch.max_context)
    tuner, task = str(tuner).lower(), str(task).lower()
    if tuner == "lora" and quant_bits is not None:
        tuner = "qlora"
    _validate(arch, tuner, task, max_length, batch_size, gpus, zero, tp, pp, lora_rank, quant_bits)
    if tuner == "qlora" and quant_bits is None:
        quant_bits = 4
    if tuner != "qlora":
        quant_bits = None
    notes: list[str] = []
    megatron = tp * pp > 1
    backend = "megatron" if megatron else "deepspeed" if zero else "ddp" if gpus > 1 else "single"
    dp = gpus // (tp * pp)
    if zero and gpus == 1:
        notes.append("ZeRO on one GPU shards nothing; it only adds DeepSpeed's buffers")
    if max_length > arch.max_context:
        notes.append(f"max_length {max_length} exceeds {arch.name}'s configured context "
                     f"({arch.max_context}); it needs RoPE scaling")
    if arch.vision_params:
        notes.append("vision tower weights counted (frozen, as ms-swift's freeze_vit default); "
                     "image activations depend on MAX_PIXELS and are not modelled")

    split = tp * pp
    params_gpu = _stage_params(arch, tp, pp)
    weight_shard = dp if zero == 3 else 1
    b: dict[str, float] = dict.fromkeys(BREAKDOWN_KEYS, 0.0)

    # Weights (16-bit, or quantized linear layers for QLoRA)
    if tuner == "qlora":
        qbytes = NF4_BYTES if quant_bits == 4 else INT8_BYTES
        b["weights"] = (arch.linear_params * qbytes + (arch.params - arch.linear_params) * 2) / weight_shard
    else:
        b["weights"] = 2 * params_gpu / weight_shard
    if task == "dpo" and tuner == "full":
        b["reference_model"] = 2 * params_gpu / weight_shard
        notes.append("DPO with full tuning keeps a frozen reference model (LoRA uses the base instead)")

    # Trainable state
    if task == "infer":
        trainable = 0
        if tuner in ("lora", "qlora"):
            b["trainable_weights"] = 2 * arch.lora_params(lora_rank) / split
    elif tuner == "full":
        trainable = arch.params - arch.vision_params
        t_gpu = params_gpu * trainable / arch.params
        if megatron:
            b["gradients"] = 4 * t_gpu  # fp32 main_grad buffer
            b["master_weights"] = 4 * t_gpu / dp
            b["optimizer"] = 8 * t_gpu / dp
        elif zero:
            b["gradients"] = 2 * t_gpu / dp
            b["master_weights"] = 4 * t_gpu / dp
            b["optimizer"] = 8 * t_gpu / dp
        else:  # pure bf16, torch foreach AdamW
            b["gradients"] = 2 * t_gpu
            b["optimizer"] = 4 * t_gpu
            b["optimizer_step"] = 2 * t_gpu
            notes.append("full tuning without DeepSpeed is pure bf16 (no fp32 master weights), "
                         "as ms-swift runs it")
    else:
        trainable = arch.lora_params(lora_rank)
        t_gpu = trainable / split
        shard = dp if zero else 1
        b["trainable_weights"] = 4 * t_gpu / weight_shard
        b["gradients"] = 4 * t_gpu / shard
        b["optimizer"] = 8 * t_gpu / shard
        if not (zero or megatron):
            b["optimizer_step"] = 4 * t_gpu

    # Activations, logits, KV cache (per GPU: Megatron splits them over tp with sequence parallel)
    tokens = max_length * batch_size * (2 if task == "dpo" else 1)
    h = arch.hidden_size
    if task == "infer":
        b["kv_cache"] = 2 * arch.layers * arch.kv_dim * 2 * tokens / split
        # Nothing is saved for backward: only the current layer's intermediates during prefill,
        # about a quarter of a training layer's working set.
        b["activations"] = _layer_working_set(arch, False) * tokens / tp / 4
        b["logits"] = 4 * arch.vocab_size * batch_size * 2 / tp
    else:
        layer = _layer_working_set(arch, tuner != "full") * tokens / tp
        logits = LOGIT_BYTES * arch.vocab_size * tokens / tp
        if tuner == "qlora":  # one linear layer dequantized to bf16 at a time
            layer += 2 * h * max(arch.intermediate_size, arch.q_dim)
        if gradient_checkpointing:
            # Saved layer inputs, plus the larger of the loss computation (forward end) and
            # the one layer being recomputed (backward): they are never live together.
            b["activations"] = arch.layers * 2 * h * tokens / tp + layer
            b["logits"] = max(0.0, logits - layer)
        else:
            b["activations"] = arch.layers * layer
            b["logits"] = logits
            notes.append("gradient checkpointing is off: every layer's activations are kept")
    # The AdamW step runs after backward has freed the activations: count only the excess.
    b["optimizer_step"] = max(0.0, b["optimizer_step"] - b["activations"] - b["logits"])

    # Communication buffers
    if task != "infer" and gpus > 1:
        grad_bytes_per = 2 if tuner == "full" else 4
        if backend == "ddp":
            b["comm_buffers"] = grad_bytes_per * trainable  # DDP's flat gradient buckets
        elif zero == 2:
            b["comm_buffers"] = min(2 * ZERO2_BUCKET_ELEMS, 2 * trainable) * grad_bytes_per
        elif zero == 3:
            unit = max(arch.linear_params_per_layer, arch.embedding_params)
            b["comm_buffers"] = 2 * min(ZERO3_MAX_LIVE_ELEMS, 2 * unit) + 2 * 2 * h * h
        else:
            b["comm_buffers"] = 2 * 2 * h * h
    b["cuda_context"] = CUDA_CONTEXT_BYTES + (NCCL_BYTES if gpus > 1 else 0)
    b["allocator_overhead"] = ALLOCATOR_OVERHEAD * sum(v for k, v in b.items() if k != "cuda_context")
    return Estimate(arch=arch, tuner=tuner, task=task, max_length=max_length, batch_size=batch_size,
                    gpus=gpus, zero=zero, tp=tp, pp=pp, gradient_checkpointing=gradient_checkpointing,
                    lora_rank=lora_rank, quant_bits=quant_bits, backend=backend,
                    trainable_params=trainable, breakdown={k: int(v) for k, v in b.items()},
                    notes=tuple(notes))


def _resolve(model: str | ModelArch) -> ModelArch:
    if isinstance(model, ModelArch):
        return model
    try:
        return resolve_model(model)
    except UnknownModelError as exc:
        hint = (f"closest presets: {', '.join(exc.suggestions)}; " if exc.suggestions else "")
        raise EstimateError(f"unknown model {model!r}",
                            hint + "or give its size and shape (--params 7.6e9 --layers ... "
                            "--hidden-size ...)") from None
