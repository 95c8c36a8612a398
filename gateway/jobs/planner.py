"""The planner: a parsed Command becomes a JobSpec, with everything decided before launch.

One pass, in this order, each step once:

1. the task plugin's `build_job(command, ctx)` makes the spec (ctx: gateway.contracts.JobContext,
   with the earlier jobs the command names already looked up);
2. the cloud: `cloud=NAME` from the command, else the plugin's, else `gateway.default_cloud`;
3. the GPU memory estimate, the cheapest machine in the whole catalog (what the job needs),
   and the cheapest machine *of the target cloud* that holds it (what it will get);
4. the estimated cost: that machine's $/h x estimated hours, from the training tokens the
   plugin counted (presets know their size, uploads are counted) and the estimator's
   throughput, else the job's max runtime as a ceiling (the basis says which);
5. the policy decision (roles, quotas, allowlists, plugin vetoes, cost approval).

`.plan`, `hammer plan` and launches all read the same `Planned`, so what a plan shows is
what a launch does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import estimate as estimate_mod
from gateway import policy
from gateway.commands import CommandError, CommandTable
from gateway.config import Settings
from gateway.contracts import CloudAdapter
from gateway.messages import duration
from gateway.model import Actor, Command, InstanceType, Job, JobSpec
from gateway.plugins import Plugins
from gateway.store import Store
from gateway.uploads import UploadSpace

log = logging.getLogger("hammer.planner")

#: Fixed time on top of the training itself: machine start, image pull, model load, report.
SETUP_HOURS = 0.1


@dataclass(frozen=True)
class Cost:
    """What a job is expected to cost, and how that was worked out."""

    estimated_usd: float | None
    basis: str
    price_per_hour: float = 0.0
    hours: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"estimated_cost_usd": None if self.estimated_usd is None else round(self.estimated_usd, 4),
                "cost_basis": self.basis, "price_per_hour": self.price_per_hour,
                "estimated_hours": None if self.hours is None else round(self.hours, 3)}


@dataclass
class Planned:
    """A command turned into a job without running it (`.plan`, `hammer plan`, launches)."""

    command: Command
    spec: JobSpec
    estimate: dict[str, Any] | None = None
    machine: InstanceType | None = None  # what the target cloud gives the job
    fit_error: CommandError | None = None
    cost: Cost = Cost(None, "no estimate")
    decision: policy.Decision = dataclasses.field(default_factory=policy.Decision)

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        job = {"id": s.id, "task": s.task, "model": s.model, "datasets": list(s.datasets), "argv": list(s.argv),
               "image": s.image, "cloud": s.cloud, "resources": s.resources.to_dict(), "limits": s.limits.to_dict(),
               "needs_network": s.needs_network, "inputs": list(s.inputs), "price_per_hour": s.price_per_hour}
        cmd = {"verb": self.command.verb, "args": _jsonable(self.command.args), "raw": self.command.raw}
        out: dict[str, Any] = {"ok": True, "command": cmd, "job": job}
        if self.estimate is not None:
            out["estimate"] = self.estimate
        out["fits_target"] = self.fit_error is None
        if self.fit_error is not None:
            out["target_problem"] = self.fit_error.message
        out["policy"] = {**self.cost.to_dict(), "needs_approval": self.decision.needs_approval,
                         "allowed": self.decision.allowed, "reasons": list(self.decision.reasons)}
        return out


@dataclass(frozen=True)
class BuildContext:
    """The JobContext handed to `build_job` (gateway.contracts.JobContext)."""

    job_id: str
    settings: Settings
    actor: Actor
    jobs: Mapping[str, Job]
    upload_space: UploadSpace

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def upload(self, name: str) -> Path | None:
        return self.upload_space.path(self.actor, name)


class Planner:
    def __init__(self, settings: Settings, commands: CommandTable, clouds: Mapping[str, CloudAdapter],
                 store: Store, plugins: Plugins, uploads: UploadSpace) -> None:
        self.settings, self.commands, self.clouds = settings, commands, clouds
        self.store, self.plugins, self.uploads = store, plugins, uploads

    async def plan(self, cmd: Command) -> Planned:
        """Plan a job command; raises CommandError for anything the user got wrong."""
        spec = await self.build(cmd)
        planned = Planned(cmd, spec)
        est = await asyncio.to_thread(_estimate, spec)
        if est is not None:
            try:
                pick = await asyncio.to_thread(estimate_mod.pick, est, headroom=self.settings.jobs.headroom,
                                               auto_gpus="gpus" not in cmd.args)
                planned.estimate = pick.to_dict()
            except estimate_mod.EstimateError as exc:
                planned.estimate = {**est.to_dict(), "recommendation": None, "reason": exc.message}
        planned.machine, planned.fit_error = await self._target_machine(spec, est)
        planned.cost = _cost(spec, est, planned.machine)
        limits = spec.limits
        if limits.max_cost_usd is None and self.settings.jobs.max_cost_usd:
            limits = dataclasses.replace(limits, max_cost_usd=float(self.settings.jobs.max_cost_usd))
        price = planned.machine.price_per_hour if planned.machine is not None else 0.0
        planned.spec = dataclasses.replace(spec, price_per_hour=price, limits=limits,
                                           estimated_cost_usd=planned.cost.estimated_usd)
        planned.decision = await policy.evaluate(cmd.actor, cmd, planned.spec, settings=self.settings,
                                                 store=self.store, plugins=self.plugins,
                                                 estimated_cost_usd=planned.cost.estimated_usd)
        return planned

    async def build(self, cmd: Command) -> JobSpec:
        spec_def = self.commands.specs[cmd.verb]
        if spec_def.build_job is None:
            raise CommandError("not_a_job", f".{cmd.verb} starts no job.", "Plan a job command such as .finetune.")
        jobs: dict[str, Job] = {}
        for param in spec_def.params:
            value = cmd.args.get(param.name)
            if param.kind == "job" and isinstance(value, str):
                found = await self.store.get_job(value)
                if found is not None:
                    jobs[value] = found
        ctx = BuildContext(secrets.token_hex(4), self.settings, cmd.actor, jobs, self.uploads)
        builder = spec_def.build_job
        if asyncio.iscoroutinefunction(builder):
            spec: JobSpec = await builder(cmd, ctx)
        else:  # builders may read a file (an upload's size): off the event loop
            spec = await asyncio.to_thread(builder, cmd, ctx)
        cloud = str(cmd.args.get("cloud") or spec.cloud or self.settings.gateway.default_cloud)
        if cloud not in self.clouds:
            enabled = ", ".join(sorted(self.clouds)) or "none"
            raise CommandError("no_cloud", f"There is no cloud {cloud!r} to run on (enabled: {enabled}).",
                               "Use cloud=NAME with one of those, or ask an admin to enable it ([cloud.NAME]).")
        return dataclasses.replace(spec, cloud=cloud, requester=cmd.actor, reply_to=cmd.conversation)

    async def _target_machine(self, spec: JobSpec, est: estimate_mod.Estimate | None
                              ) -> tuple[InstanceType | None, CommandError | None]:
        """The cheapest machine of the job's cloud that holds it; a CommandError when none does."""
        cloud = self.clouds[spec.cloud]
        try:
            machines = await cloud.catalog()
        except Exception as exc:
            log.warning("catalog of %s failed: %s", cloud.name, exc)
            return None, None
        if est is None or not machines:
            return (min(machines, key=lambda m: m.price_per_hour) if machines else None), None
        headroom = self.settings.jobs.headroom
        # Pick with headroom; refuse only what does not fit even without it (ms-swift's own
        # examples run a 7B full fine-tune measured at 76 GiB on an 80 GiB card).
        for margin in (headroom, 0.0):
            fitting = [m for m in machines if estimate_mod.fits(est, m, margin)]
            if fitting:
                return min(fitting, key=lambda m: (m.price_per_hour, m.gpu_count, m.instance_type)), None
        try:
            estimate_mod.require_fit(est, max(machines, key=lambda m: (m.gpu_count, m.gpu_memory_mib, m.ram_gib)),
                                     headroom=0.0)
        except estimate_mod.EstimateError as exc:
            return None, CommandError("does_not_fit", exc.message, exc.hint or "Try a smaller model or qlora.")
        return None, None


def _estimate(spec: JobSpec) -> estimate_mod.Estimate | None:
    """The memory estimate of a job, or None for models outside the catalog."""
    try:
        return estimate_mod.estimate_from_params(spec.model, spec.params, task=spec.task,
                                                 gpus=max(1, spec.resources.gpu_count))
    except (estimate_mod.EstimateError, TypeError, ValueError):
        return None


def _cost(spec: JobSpec, est: estimate_mod.Estimate | None, machine: InstanceType | None) -> Cost:
    if machine is None:
        return Cost(None, "no machine of this cloud was picked")
    price = machine.price_per_hour
    where = f"{machine.cloud} {machine.instance_type} at ${price:.2f}/h"
    if price <= 0:
        return Cost(0.0, f"{where}: free", 0.0, None)
    tokens = spec.params.get("train_tokens")
    if est is not None and isinstance(tokens, int | float) and tokens > 0:
        tps = estimate_mod.tokens_per_second(est, machine)
        if tps > 0 and math.isfinite(tps):
            hours = float(tokens) / tps / 3600 + SETUP_HOURS
            return Cost(price * hours, f"{where} x ~{duration(hours * 3600)} ({float(tokens):,.0f} tokens "
                        f"at ~{tps:,.0f} tokens/s, plus {duration(SETUP_HOURS * 3600)} set-up)", price, hours)
    hours = spec.limits.max_runtime_s / 3600
    return Cost(price * hours, f"{where} x the job's max runtime of {duration(spec.limits.max_runtime_s)} "
                "(a ceiling: the dataset's size is not known)", price, hours)


def _jsonable(args: Any) -> Any:
    if isinstance(args, Command):
        return {"verb": args.verb, "args": _jsonable(args.args)}
    if isinstance(args, Mapping):
        return {k: _jsonable(v) for k, v in args.items()}
    if isinstance(args, Sequence) and not isinstance(args, str):
        return [_jsonable(v) for v in args]
    return args


__all__ = ["BuildContext", "Cost", "Planned", "Planner"]
