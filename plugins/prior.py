"""Earlier jobs a command builds on (`adapter=JOBID`, `.export JOBID`).

What a finished job produced is in the artifact store, by key (`jobs/<id>/adapter`), as
the orchestrator stored it, whatever cloud ran it. A plugin names that key in the new
job's `inputs`, and the cloud that runs the new job makes it readable at `/inputs/<key>`.
Nothing here reads a cloud's disk or settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gateway.commands import CommandError
from gateway.contracts import JobContext
from gateway.model import Command, Job, JobState, input_path
from plugins.models import ResolvedModel, resolve_model


@dataclass(frozen=True)
class PriorJob:
    """A finished job's adapter (or full weights), as an input of a new job."""

    job_id: str
    key: str  # artifact key
    checkpoint: str  # its path inside the sandbox
    is_adapter: bool  # LoRA/QLoRA adapter (True) or full weights (False)
    job: Job

    def base_model(self, hub: str) -> ResolvedModel | None:
        """The model the job trained (None when it is not one hammer knows)."""
        spec = self.job.spec
        try:
            return resolve_model(spec.model, str(spec.params.get("hub", hub)))
        except CommandError:
            return None


def prior_job(job_id: str, ctx: JobContext) -> PriorJob:
    job = ctx.job(job_id)
    if job is None:
        raise CommandError("job_not_found", f"There is no job {job_id}.", "Use the id of a finished fine-tune "
                           "from .jobs.")
    if job.state != JobState.SUCCEEDED:
        raise CommandError("job_not_finished", f"Job {job_id} is {job.state.value.replace('_', ' ')}; only a "
                           "finished job's output can be used.", "Wait for it to succeed (.status JOB), or use "
                           "another job from .jobs.")
    keys = job.artifact_keys()
    for name, is_adapter in (("adapter", True), ("model", False)):
        if name in keys:
            return PriorJob(job_id, keys[name], input_path(keys[name]), is_adapter, job)
    raise CommandError("no_adapter", f"Job {job_id} left no adapter or model in the artifact store.",
                       "Use a fine-tune that succeeded (its report links an adapter).")


def model_and_adapter(command: Command, ctx: JobContext, hub: str) -> tuple[ResolvedModel, PriorJob | None]:
    """The model a verb runs on: `MODEL`, or the model `adapter=JOBID` was trained from;
    a full fine-tune's weights replace the base model."""
    a = command.args
    prior = prior_job(a["adapter"], ctx) if a.get("adapter") else None
    model = resolve_model(a["model"], hub) if a.get("model") else None
    if model is None and prior is not None:
        model = prior.base_model(hub)
    if model is None:
        what = f"which model job {prior.job_id} trained is unknown" if prior else "no model was given"
        raise CommandError("missing_argument", f".{command.verb} needs a MODEL: {what}.",
                           f"Name it: .{command.verb} qwen-7b ..., or use adapter=JOBID of a finished job.")
    if prior is not None and not prior.is_adapter:
        model = dataclasses.replace(model, path=prior.checkpoint)
    return model, prior
