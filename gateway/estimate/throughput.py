"""How fast a job runs on a machine, and so what it costs.

Training (compute-bound), per token:

    forward  = 2 x M + 2 x L x s x q_dim      M = decoder linear weights + LM head;
                                              the second term is causal attention
    backward = 2 x forward (full tuning: input and weight gradients)
             = 2 x M + 4 x L x s x q_dim (LoRA/QLoRA: frozen weights need input
               gradients only)
    + one more forward with gradient checkpointing (recompute)
    + one more forward for DPO (the reference pass)

    tokens/s = GPUs x peak dense bf16 FLOP/s x MFU x scaling / FLOPs per token

MFU 0.35 is what HF-Trainer-style training with FlashAttention/SDPA typically reaches
on A100/H100-class GPUs at these sequence lengths (the Megatron-LM and PaLM papers report
40-55% for large, tuned runs; single-GPU fine-tuning scripts land lower). QLoRA pays for
dequantizing every weight on every pass: x0.6. Scaling over GPUs: 0.9 DDP / ZeRO-2,
0.75 ZeRO-3 (it all-gathers the weights every step), 0.8 Megatron.

Inference (decode, memory-bandwidth-bound): each step reads the GPU's share of the
weights and KV cache once, at 60% of peak bandwidth, and yields one token per sequence
in the batch; capped by the compute bound above.

Peak figures are NVIDIA's dense (no sparsity) BF16 tensor numbers and HBM/GDDR
bandwidth from the product data sheets. Everything here is an estimate for budgeting,
good to a factor of ~1.5; the job's real tokens/s shows in its progress messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.estimate.memory import Estimate
from gateway.model import InstanceType

TRAIN_MFU = 0.35
QLORA_SLOWDOWN = 0.6
DECODE_BANDWIDTH_EFFICIENCY = 0.6
SCALING = {"single": 1.0, "ddp": 0.9, "deepspeed2": 0.9, "deepspeed3": 0.75, "megatron": 0.8}


@dataclass(frozen=True)
class GpuSpec:
    name: str
    bf16_tflops: float  # dense
    bandwidth_gbps: float
    nvlink: bool = False  # SXM parts with NVLink/NVSwitch between the GPUs of a machine


# Most specific first: "a100" before "a10", "l40s" before "l40" before "l4".
_SPECS: tuple[tuple[str, GpuSpec], ...] = (
    ("h200", GpuSpec("H200", 989, 4800, nvlink=True)),
    ("h100", GpuSpec("H100", 989, 3350, nvlink=True)),
    ("a100", GpuSpec("A100", 312, 2039, nvlink=True)),
    ("l40s", GpuSpec("L40S", 362, 864)),
    ("l40", GpuSpec("L40", 181, 864)),
    ("a10g", GpuSpec("A10G", 70, 600)),
    ("a10", GpuSpec("A10", 125, 600)),
    ("l4", GpuSpec("L4", 121, 300)),
    ("4090", GpuSpec("RTX 4090", 165, 1008)),
    ("3090", GpuSpec("RTX 3090", 71, 936)),
    ("a6000", GpuSpec("RTX A6000", 155, 768)),
    ("v100", GpuSpec("V100", 125, 900, nvlink=True)),
    ("t4", GpuSpec("T4", 65, 320)),
)
UNKNOWN_GPU = GpuSpec("unknown GPU", 50, 500)
CPU = GpuSpec("CPU", 0.5, 20)


def gpu_spec(name: str | None) -> GpuSpec:
    """Peak figures for a GPU named as the catalog or nvidia-smi names it."""
    if not name:
        return CPU
    key = name.lower().replace("nvidia", "").replace("geforce", "")
    for needle, spec in _SPECS:
        if needle in key:
            return spec
    return UNKNOWN_GPU


def flops_per_token(est: Estimate) -> float:
    arch = est.arch
    matmul = arch.linear_params + arch.vocab_size * arch.hidden_size
    attention = 2 * arch.layers * est.max_length * arch.q_dim
    forward = 2 * matmul + attention
    if est.task == "infer":
        return forward
    backward = 2 * forward if est.tuner == "full" else 2 * matmul + 2 * attention
    total = forward + backward
    if est.gradient_checkpointing:
        total += forward
    if est.task == "dpo":
        total += forward
    return float(total)


def _scaling(est: Estimate) -> float:
    key = est.backend + (str(est.zero) if est.backend == "deepspeed" else "")
    return SCALING.get(key, 0.8)


def tokens_per_second(est: Estimate, instance: InstanceType) -> float:
    """Estimated tokens processed per second by `est` on `instance` (see module doc)."""
    spec = gpu_spec(instance.gpu) if instance.gpu_count else CPU
    gpus = min(est.gpus, instance.gpu_count) if instance.gpu_count else 1
    compute = gpus * spec.bf16_tflops * 1e12 * TRAIN_MFU * _scaling(est) / flops_per_token(est)
    if est.tuner == "qlora":
        compute *= QLORA_SLOWDOWN
    if est.task != "infer":
        return compute
    read_bytes = est.breakdown["weights"] + est.breakdown["kv_cache"] / 2  # cache half full on average
    step_s = read_bytes / (spec.bandwidth_gbps * 1e9 * DECODE_BANDWIDTH_EFFICIENCY)
    replicas = max(1, est.gpus // (est.tp * est.pp))
    return min(compute, replicas * est.batch_size / step_s) if step_s > 0 else compute


def usd_per_million_tokens(tps: float, price_per_hour: float) -> float:
    return price_per_hour / (tps * 3600) * 1e6 if tps > 0 else float("inf")
