"""Pick the cheapest machine that holds a job, and the changes that would make it fit.

A machine fits when each GPU the job uses holds the per-GPU estimate plus `headroom`
(default 10%: the estimate's error, the eval pass, the odd long sample). A job asks for
`est.gpus` GPUs; machines with more GPUs qualify (the job uses some of them). A CPU-only
host qualifies only for models up to 1B parameters (bigger ones would train for days),
with 80% of its RAM as the budget.

Ranking: by price per hour, or by estimated job cost when the number of tokens to process
is known (a faster, dearer GPU can finish cheaper). Alternatives are the same job changed
in one respect (QLoRA, LoRA, more GPUs with ZeRO-3, Megatron TP/PP for 30B+ models,
shorter max_length, smaller batch, gradient checkpointing), each on its cheapest machine;
when the job already fits, only alternatives that are cheaper are shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.catalog import load_instances
from gateway.estimate.memory import GIB, Estimate, EstimateError
from gateway.estimate.throughput import gpu_spec, tokens_per_second, usd_per_million_tokens
from gateway.model import InstanceType

MIB = 1024**2
DEFAULT_HEADROOM = 0.10
CPU_MAX_PARAMS = 1_000_000_000
CPU_RAM_FRACTION = 0.8
MAX_ALTERNATIVES = 5
MIN_SAVING = 0.95  # an alternative to a job that fits must cost at most 95% of it


def available_bytes(est: Estimate, instance: InstanceType) -> int:
    """Memory one of the job's GPUs offers on `instance`; 0 when it cannot run there."""
    if instance.gpu_count == 0:
        cpu_ok = est.gpus == 1 and est.backend == "single" and est.arch.params <= CPU_MAX_PARAMS
        return int(instance.ram_gib * GIB * CPU_RAM_FRACTION) if cpu_ok else 0
    return instance.gpu_memory_mib * MIB if instance.gpu_count >= est.gpus else 0


def fits(est: Estimate, instance: InstanceType, headroom: float = DEFAULT_HEADROOM) -> bool:
    return est.per_gpu_bytes * (1 + headroom) <= available_bytes(est, instance)


@dataclass(frozen=True)
class InstanceChoice:
    """A machine for a job, with what it leaves free and what the job will cost there."""

    instance: InstanceType
    need_gib: float
    available_gib: float
    tokens_per_second: float
    usd_per_million_tokens: float
    est_hours: float | None = None
    est_cost_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        i = self.instance
        return {
            "cloud": i.cloud, "instance_type": i.instance_type, "gpu": i.gpu, "gpu_count": i.gpu_count,
            "price_per_hour": i.price_per_hour, "spot_price_per_hour": i.spot_price_per_hour,
            "region": i.region, "gpu_memory_gib": round(self.available_gib, 2),
            "need_gib": round(self.need_gib, 2),
            "tokens_per_second": round(self.tokens_per_second, 1),
            "usd_per_million_tokens": (round(self.usd_per_million_tokens, 4)
                                       if math.isfinite(self.usd_per_million_tokens) else None),
            "est_hours": None if self.est_hours is None else round(self.est_hours, 2),
            "est_cost_usd": None if self.est_cost_usd is None else round(self.est_cost_usd, 2),
        }


@dataclass(frozen=True)
class Alternative:
    """The job changed in one respect (`change`: the estimate() arguments that differ)."""

    summary: str
    change: dict[str, Any]
    estimate: Estimate
    choice: InstanceChoice

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "change": dict(self.change),
                "per_gpu_gib": round(self.estimate.per_gpu_gib, 2), **self.choice.to_dict()}


@dataclass(frozen=True)
class Plan:
    """An estimate, the machine it gets (None: nothing fits) and the alternatives."""

    estimate: Estimate
    recommendation: InstanceChoice | None
    alternatives: tuple[Alternative, ...] = ()
    headroom: float = DEFAULT_HEADROOM
    reason: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def fits(self) -> bool:
        return self.recommendation is not None

    def to_dict(self) -> dict[str, Any]:
        est = self.estimate.to_dict()
        return {
            "model": est.pop("model"), "per_gpu_gib": est.pop("per_gpu_gib"),
            "total_gib": est.pop("total_gib"), "breakdown": est.pop("breakdown"),
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
            "alternatives": [a.to_dict() for a in self.alternatives],
            "fits": self.fits, "reason": self.reason, "headroom": self.headroom,
            **est, "notes": [*est["notes"], *self.notes],
        }

    def summary(self) -> str:
        """A few plain lines for chat (`.estimate`, `.plan`) and refusals."""
        est = self.estimate
        lines = [f"{est.model} {est.tuner} {est.task}: ~{est.per_gpu_gib:.1f} GiB per GPU "
                 f"x {est.gpus} GPU(s) (max_length {est.max_length}, batch {est.batch_size})"]
        if self.recommendation:
            r = self.recommendation
            cost = f", ~${r.est_cost_usd:.2f} for this job" if r.est_cost_usd is not None else ""
            lines.append(f"cheapest fit: {_machine(r)} at ${r.instance.price_per_hour:.2f}/h, "
                         f"~{r.tokens_per_second:,.0f} tokens/s, "
                         f"${r.usd_per_million_tokens:.2f} per 1M tokens{cost}")
        else:
            lines.append(f"does not fit: {self.reason}")
        for alt in self.alternatives:
            lines.append(f"• {alt.summary}: ~{alt.estimate.per_gpu_gib:.1f} GiB/GPU on "
                         f"{_machine(alt.choice)} at ${alt.choice.instance.price_per_hour:.2f}/h")
        return "\n".join(lines)


def _machine(choice: InstanceChoice) -> str:
    i = choice.instance
    hw = f"{i.gpu_count}x {i.gpu}" if i.gpu_count else "CPU only"
    return f"{i.cloud} {i.instance_type} ({hw})"


def choose(est: Estimate, instances: Iterable[InstanceType], headroom: float = DEFAULT_HEADROOM,
           train_tokens: float | None = None) -> InstanceChoice | None:
    """The cheapest instance that fits `est`, or None."""
    choices = []
    for inst in instances:
        if not fits(est, inst, headroom):
            continue
        tps = tokens_per_second(est, inst)
        hours = train_tokens / tps / 3600 if train_tokens and tps > 0 else None
        choices.append(InstanceChoice(
            instance=inst, need_gib=est.per_gpu_gib * (1 + headroom),
            available_gib=available_bytes(est, inst) / GIB, tokens_per_second=tps,
            usd_per_million_tokens=usd_per_million_tokens(tps, inst.price_per_hour), est_hours=hours,
            est_cost_usd=None if hours is None else hours * inst.price_per_hour))
    if not choices:
        return None

    def rank(c: InstanceChoice) -> tuple[float, float, int, str]:
        cost = c.est_cost_usd if c.est_cost_usd is not None else c.instance.price_per_hour
        return (cost, c.instance.price_per_hour, c.instance.gpu_count, c.instance.instance_type)

    return min(choices, key=rank)


def variants(est: Estimate) -> list[tuple[str, str, dict[str, Any]]]:
    """(family, summary, change) for every one-step change worth trying."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    arch = est.arch
    more_gpus = [g for g in (2, 4, 8) if g > est.gpus]
    if est.training:
        if est.tuner == "lora":
            out.append(("qlora", "QLoRA (4-bit base weights) instead of LoRA", {"tuner": "qlora"}))
        if est.tuner == "full":
            out.append(("lora", "LoRA instead of full tuning", {"tuner": "lora"}))
            out.append(("qlora", "QLoRA instead of full tuning", {"tuner": "qlora"}))
        for g in more_gpus:
            out.append(("zero3", f"{g} GPUs with DeepSpeed ZeRO-3", {"gpus": g, "zero": 3, "tp": 1, "pp": 1}))
            if est.tuner == "full":
                out.append(("lora-zero3", f"LoRA on {g} GPUs with ZeRO-3",
                            {"tuner": "lora", "gpus": g, "zero": 3, "tp": 1, "pp": 1}))
        if arch.params >= 30e9 and est.tuner != "qlora":
            for g in (4, 8):
                for tp in (2, 4, 8):
                    pp = g // tp
                    if tp <= g and (tp, pp, g) != (est.tp, est.pp, est.gpus):
                        out.append(("megatron", f"Megatron TP={tp} PP={pp} on {g} GPUs",
                                    {"gpus": g, "tp": tp, "pp": pp, "zero": None}))
        if not est.gradient_checkpointing:
            out.append(("ckpt", "gradient checkpointing on", {"gradient_checkpointing": True}))
    else:
        if est.tuner != "qlora":
            out.append(("qlora", "4-bit weights (bitsandbytes)", {"tuner": "qlora"}))
        for g in more_gpus:
            out.append(("tp", f"tensor parallel over {g} GPUs", {"gpus": g, "tp": g, "pp": 1}))
    if est.batch_size > 1:
        keep = " (raise gradient accumulation to keep the effective batch)" if est.training else ""
        out.append(("batch", f"batch size 1{keep}", {"batch_size": 1}))
    length = est.max_length // 2
    while length >= 256 and length >= est.max_length // 8:
        out.append(("max_length", f"max_length {length} instead of {est.max_length}", {"max_length": length}))
        length //= 2
    return out


def alternatives(est: Estimate, instances: Sequence[InstanceType], headroom: float = DEFAULT_HEADROOM,
                 train_tokens: float | None = None, cheaper_than: float | None = None) -> list[Alternative]:
    best: dict[str, Alternative] = {}
    for family, summary, change in variants(est):
        try:
            changed = est.with_changes(**change)
        except EstimateError:
            continue
        choice = choose(changed, instances, headroom, train_tokens)
        if choice is None:
            continue
        alt = Alternative(summary, change, changed, choice)
        # Variants come least disruptive first (longest max_length, fewest GPUs): a later one
        # of the same family replaces an earlier one only when it saves real money.
        if family not in best or _cost(alt.choice) < _cost(best[family].choice) * MIN_SAVING:
            best[family] = alt
    alts = sorted(best.values(), key=lambda a: (_cost(a.choice), a.estimate.per_gpu_bytes))
    if cheaper_than is not None:  # the job fits: only changes that save real money
        alts = [a for a in alts if _cost(a.choice) < cheaper_than * MIN_SAVING]
    return alts[:MAX_ALTERNATIVES]


def _cost(c: InstanceChoice) -> float:
    return c.est_cost_usd if c.est_cost_usd is not None else c.instance.price_per_hour


#: GPU counts `pick(auto_gpus=True)` tries when the job does not fix its own.
AUTO_GPU_COUNTS = (2, 4, 8)


def scale_out(est: Estimate) -> list[tuple[str, Estimate]]:
    """The same job on 2, 4 and 8 GPUs, with each strategy that applies: DeepSpeed ZeRO-3
    (training), Megatron TP x PP (training, 30B+ models, not QLoRA), tensor parallel
    (inference). Invalid combinations are left out."""
    out: list[tuple[str, Estimate]] = []
    for family, summary, change in variants(est):
        if family not in ("zero3", "megatron", "tp") or change.get("gpus") not in AUTO_GPU_COUNTS:
            continue
        try:
            out.append((summary, est.with_changes(**change)))
        except EstimateError:
            continue
    return out


def pick(est: Estimate, *, instances: Sequence[InstanceType] | None = None,
         clouds: Iterable[str] | None = None, headroom: float = DEFAULT_HEADROOM,
         train_tokens: float | None = None, auto_gpus: bool = False) -> Plan:
    """The cheapest machine for `est` among `instances` (default: the catalog, limited to
    `clouds`), plus alternatives. `train_tokens` (tokens to process, all epochs) turns
    prices into a job cost. Pure: add `local_host_instance()` to `instances` yourself.

    `auto_gpus` (the user did not fix a GPU count): a one-GPU job is also tried on 2, 4
    and 8 GPUs with the strategies that apply (`scale_out`), and the cheapest fit of all
    wins; the plan's estimate is then the one for the machine it recommends."""
    if headroom < 0:
        raise EstimateError(f"headroom must be 0 or more, not {headroom}")
    pool = list(instances) if instances is not None else load_instances(clouds)
    if not pool:
        raise EstimateError("no machines to choose from",
                            "enable a cloud with a catalog (aws, gcp) or the local Docker host")
    rec = choose(est, pool, headroom, train_tokens)
    notes: tuple[str, ...] = ()
    if auto_gpus and est.gpus == 1:
        # Sharding one model over PCIe-only cards (L4, A10G, L40S) is slow enough that
        # hammer never picks it by itself; `gpus=N` still asks for it explicitly.
        linked = [m for m in pool if gpu_spec(m.gpu).nvlink]
        for summary, scaled in scale_out(est):
            choice = choose(scaled, linked, headroom, train_tokens)
            if choice is not None and (rec is None or _cost(choice) < _cost(rec) * MIN_SAVING):
                est, rec = scaled, choice
                notes = (f"no GPU count was given: {summary} is the cheapest machine that holds the job",)
    if notes:
        alts = alternatives(est, pool, headroom, train_tokens, cheaper_than=_cost(rec) if rec else None)
        return Plan(estimate=est, recommendation=rec, alternatives=tuple(alts), headroom=headroom, notes=notes)
    alts = alternatives(est, pool, headroom, train_tokens, cheaper_than=_cost(rec) if rec else None)
    reason = "" if rec else _no_fit_reason(est, pool, headroom)
    return Plan(estimate=est, recommendation=rec, alternatives=tuple(alts), headroom=headroom, reason=reason)


def _no_fit_reason(est: Estimate, pool: Sequence[InstanceType], headroom: float) -> str:
    need = est.per_gpu_gib * (1 + headroom)
    gpu_pool = [i for i in pool if i.gpu_count >= est.gpus]
    if not gpu_pool:
        most = max((i.gpu_count for i in pool), default=0)
        return f"it asks for {est.gpus} GPUs; the largest machine offered has {most}"
    biggest = max(gpu_pool, key=lambda i: i.gpu_memory_mib)
    return (f"it needs ~{need:.1f} GiB per GPU ({est.per_gpu_gib:.1f} + {headroom:.0%} headroom); "
            f"the largest GPU offered for {est.gpus} GPU(s) is {biggest.gpu} with "
            f"{biggest.gpu_memory_mib / 1024:.1f} GiB")


def require_fit(est: Estimate, instance: InstanceType, *, headroom: float = DEFAULT_HEADROOM,
                instances: Sequence[InstanceType] | None = None, clouds: Iterable[str] | None = None) -> None:
    """The orchestrator's gate: raise EstimateError, with alternatives that fit, when `est`
    does not fit `instance` (the machine the job would get). Call it before launching."""
    if fits(est, instance, headroom):
        return
    have = available_bytes(est, instance) / GIB
    gpu = f"{instance.gpu_count}x {instance.gpu}" if instance.gpu_count else "no GPU"
    if instance.gpu_count and instance.gpu_count < est.gpus:
        why = f"it asks for {est.gpus} GPUs; {instance.instance_type} has {instance.gpu_count}"
    else:
        why = (f"it needs ~{est.per_gpu_gib:.1f} GiB per GPU plus {headroom:.0%} headroom; "
               f"{instance.instance_type} ({gpu}) offers {have:.1f} GiB")
    pool = list(instances) if instances is not None else [*load_instances(clouds), instance]
    alts = alternatives(est, pool, headroom)
    hint = "; ".join(f"{a.summary} (~{a.estimate.per_gpu_gib:.1f} GiB/GPU, {_machine(a.choice)}, "
                     f"${a.choice.instance.price_per_hour:.2f}/h)" for a in alts[:3])
    raise EstimateError(f"{est.model} {est.tuner} does not fit: {why}",
                        f"try: {hint}" if hint else "try a smaller model, QLoRA or a shorter max_length")
