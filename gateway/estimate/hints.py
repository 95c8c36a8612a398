"""The local Docker host as an instance type, and what to say when a job runs out of memory."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence

from gateway.catalog import load_instances
from gateway.estimate.inputs import estimate_from_params
from gateway.estimate.memory import GIB, Estimate, EstimateError
from gateway.estimate.picker import DEFAULT_HEADROOM, MIB, choose, variants
from gateway.model import InstanceType, Job

NVIDIA_SMI = ("nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits")


def parse_nvidia_smi(text: str) -> list[tuple[str, int]]:
    """`name, memory.total` lines (MiB, no units) -> [(name, mib)]; junk lines skipped."""
    gpus = []
    for line in text.splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append((name.strip(), int(float(mem.strip()))))
        except ValueError:
            continue
    return [g for g in gpus if g[0]]


def _query_nvidia_smi() -> str | None:
    try:
        done = subprocess.run(list(NVIDIA_SMI), capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return 0.0


def local_host_instance(query: Callable[[], str | None] = _query_nvidia_smi) -> InstanceType:
    """The machine the gateway runs on, as the `docker` cloud's only instance: its GPUs
    (from nvidia-smi; the smallest GPU's memory counts, as a job may land on any) or,
    without nvidia-smi, a CPU-only host. Price 0: it is already paid for."""
    gpus = parse_nvidia_smi(query() or "")
    names = sorted({name for name, _ in gpus})
    return InstanceType(
        cloud="docker", instance_type="local", gpu=" / ".join(names) or None, gpu_count=len(gpus),
        gpu_memory_mib=min((mib for _, mib in gpus), default=0), vcpus=os.cpu_count() or 1,
        ram_gib=round(_ram_gib(), 1), price_per_hour=0.0, spot_price_per_hour=None, region="local")


# Changes tried on the same GPU, least disruptive first: they cost nothing extra.
_SAME_MACHINE_ORDER = ("ckpt", "batch", "lora", "qlora", "max_length")


def oom_hint(est: Estimate, gpu_name: str | None, gpu_mem_mib: int, *,
             instances: Sequence[InstanceType] | None = None, headroom: float = DEFAULT_HEADROOM) -> str:
    """The reply for a job that failed with kind `oom`: the estimated need, the GPU it had,
    and the cheapest concrete change that fits.

    The job did run out of memory, so when the estimate says it should have fit, the real
    need was at least the GPU's memory: every candidate is scaled up by that ratio.
    Changes that keep the same GPU come first (they cost nothing); otherwise the cheapest
    catalog machine for the unchanged job, or for the cheapest change.
    """
    have = gpu_mem_mib * MIB
    gpu = gpu_name or "the GPU"
    scale = max(1.0, have / est.per_gpu_bytes) if est.per_gpu_bytes else 1.0
    lines = [f"Out of GPU memory: the estimate for {est.model} {est.tuner} "
             f"(max_length {est.max_length}, batch {est.batch_size}) is ~{est.per_gpu_gib:.1f} GiB per GPU; "
             f"{gpu} has {have / GIB:.1f} GiB."]
    if scale > 1.0:
        lines.append("The estimate fit, so something used more than it models (long samples, an "
                     "evaluation batch, fragmentation); the suggestion below leaves room for that.")

    def fits_here(changed: Estimate) -> bool:
        return changed.per_gpu_bytes * scale * (1 + headroom) <= have

    candidates = []
    for family, summary, change in variants(est):
        if family not in _SAME_MACHINE_ORDER or "gpus" in change:
            continue
        try:
            changed = est.with_changes(**change)
        except EstimateError:
            continue
        if fits_here(changed):
            candidates.append((_SAME_MACHINE_ORDER.index(family), -changed.max_length, summary, changed))
    if candidates:
        _, _, summary, changed = min(candidates, key=lambda c: c[:2])
        lines.append(f"Cheapest fix on the same GPU: {summary} (~{changed.per_gpu_gib:.1f} GiB).")
        return " ".join(lines)

    pool = list(instances) if instances is not None else load_instances()
    bigger = [i for i in pool if i.gpu_count and i.gpu_memory_mib * MIB > have]
    scaled_headroom = (1 + headroom) * scale - 1
    choice = choose(est, bigger, scaled_headroom)
    if choice is not None:
        i = choice.instance
        lines.append(f"Nothing fits on {gpu}; cheapest machine that fits: {i.cloud} {i.instance_type} "
                     f"({i.gpu_count}x {i.gpu}, {i.gpu_memory_mib / 1024:.0f} GiB each) at "
                     f"${i.price_per_hour:.2f}/h.")
        return " ".join(lines)
    best = None
    for _family, summary, change in variants(est):
        try:
            changed = est.with_changes(**change)
        except EstimateError:
            continue
        c = choose(changed, pool, scaled_headroom)
        if c and (best is None or c.instance.price_per_hour < best[2].instance.price_per_hour):
            best = (summary, changed, c)
    if best:
        summary, changed, c = best
        lines.append(f"Cheapest change that fits: {summary} (~{changed.per_gpu_gib:.1f} GiB/GPU) on "
                     f"{c.instance.cloud} {c.instance.instance_type} at ${c.instance.price_per_hour:.2f}/h.")
    else:
        lines.append("No catalog machine fits it; use a smaller model or QLoRA with a shorter max_length.")
    return " ".join(lines)


def _gpu_memory_mib(gpu_name: str | None) -> int | None:
    """Usable memory of a GPU model the catalog knows (smallest figure across clouds)."""
    if not gpu_name:
        return None
    key = gpu_name.lower().replace("nvidia", "").strip()
    sizes = [i.gpu_memory_mib for i in load_instances() if i.gpu and i.gpu.lower() == key]
    return min(sizes) if sizes else None


def oom_hint_for_job(job: Job) -> str | None:
    """`oom_hint` for a failed job, from its spec (model, task, params, resources) and what the
    runner reported (`error["gpu"]`, `error["gpu_memory_mib"]`, else the spec's GPU type).
    None when the job is not an OOM or cannot be estimated (a model outside the catalog)."""
    error = job.error or {}
    if error.get("kind") != "oom":
        return None
    spec = job.spec
    try:
        est = estimate_from_params(spec.model, spec.params, task=spec.task,
                                   gpus=max(1, spec.resources.gpu_count))
    except (EstimateError, TypeError, ValueError):
        return None
    gpu = error.get("gpu") or spec.resources.gpu_type
    mem = error.get("gpu_memory_mib") or _gpu_memory_mib(gpu)
    if not mem:
        return None
    try:
        return oom_hint(est, gpu, int(mem))
    except (EstimateError, TypeError, ValueError):
        return None
