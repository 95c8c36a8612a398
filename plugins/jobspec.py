"""Building a JobSpec: what every task plugin collects (models, datasets, earlier jobs'
outputs, hub tokens) and the shared opening of the verbs that run a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.contracts import JobContext
from gateway.model import Command, JobSpec, Limits, Mount, Resources
from plugins.argv import Argv
from plugins.datasets import ResolvedDataset
from plugins.models import ResolvedModel
from plugins.prior import PriorJob, model_and_adapter

OUTPUT_DIR = "/workspace/output"
#: Hub caches on the shared /cache volume: a model downloaded once (by `.download` or by
#: any job) is found by every later job through ms-swift's own cache lookup.
CACHE_ENV = {"MODELSCOPE_CACHE": "/cache/modelscope", "HF_HOME": "/cache/hf"}
HUB_SECRETS = {"modelscope": "MODELSCOPE_API_TOKEN", "hf": "HF_TOKEN"}


@dataclass
class SpecParts:
    """What a plugin collects while building one job; `build()` makes the JobSpec."""

    task: str
    model_ref: str
    argv: Argv
    datasets: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    prepare: list[str] = field(default_factory=list)
    validate: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    needs_network: bool = False
    gpus: int = 0
    samples: int | None = None
    avg_tokens: int | None = None

    def add_model(self, model: ResolvedModel) -> None:
        self.prepare += [p for p in model.prepare() if p not in self.prepare]
        self.needs_network |= model.needs_network
        if model.needs_network:
            self.add_hub(model.hub)

    def add_dataset(self, ds: ResolvedDataset, hub: str) -> None:
        self.datasets.append(ds.ref)
        self.prepare += [p for p in ds.prepare if p not in self.prepare]
        self.validate += list(ds.validate)
        self.mounts += [m for m in ds.mounts if m not in self.mounts]
        self.needs_network |= ds.needs_network
        if ds.samples is not None:
            self.samples = (self.samples or 0) + ds.samples
        self.avg_tokens = ds.avg_tokens or self.avg_tokens
        if ds.needs_network:
            self.add_hub(hub)

    def add_prior(self, prior: PriorJob) -> None:
        if prior.key not in self.inputs:
            self.inputs.append(prior.key)
        self.params["adapter_job"] = prior.job_id

    def add_hub(self, hub: str) -> None:
        secret = HUB_SECRETS[hub]
        if secret not in self.secrets:
            self.secrets.append(secret)

    def hub_flags(self, hub: str) -> list[tuple[str, Any]]:
        """ms-swift downloads from ModelScope unless told `--use_hf true`."""
        return [("use_hf", True)] if hub == "hf" and self.needs_network else []

    def count_training(self, *, epochs: float, max_length: int, max_steps: int | None, samples_per_step: int) -> None:
        """`params["train_tokens"]`: what the planner turns into hours and dollars (absent when
        the data's size is unknown, so the planner falls back to the max runtime)."""
        per_sample = min(self.avg_tokens or max_length, max_length)
        if max_steps is not None:
            self.params["train_tokens"] = max_steps * samples_per_step * per_sample
        elif self.samples:
            self.params["train_tokens"] = int(self.samples * epochs * per_sample)
        if self.samples:
            self.params["dataset_samples"] = self.samples

    def build(self, ctx: JobContext) -> JobSpec:
        jobs = ctx.settings.jobs
        # The sandbox image runs Hugging Face offline by default; a job that downloads says so.
        env = {**CACHE_ENV, "HF_HUB_OFFLINE": "0" if self.needs_network else "1", **self.env}
        params = {"task": self.task, **self.params, "gpus": self.gpus, "output_dir": OUTPUT_DIR}
        if self.prepare:
            params["prepare"] = list(self.prepare)
        if self.validate:
            params["validate_datasets"] = list(self.validate)
        return JobSpec(
            id=ctx.job_id, task=self.task, model=self.model_ref, datasets=tuple(self.datasets),
            params=params, argv=self.argv.as_tuple(), image=jobs.image,
            resources=Resources(gpu_count=self.gpus, memory_gib=float(jobs.memory_gib),
                                cpus=float(jobs.cpus)),
            limits=Limits(max_runtime_s=float(jobs.max_runtime), idle_timeout_s=float(jobs.idle_timeout)),
            env=env, secrets=tuple(self.secrets), mounts=tuple(self.mounts), inputs=tuple(self.inputs),
            needs_network=self.needs_network,
        )


def multi_gpu_env(gpus: int) -> dict[str, str]:
    """ms-swift starts torchrun itself when NPROC_PER_NODE is set (one process per GPU)."""
    return {"NPROC_PER_NODE": str(gpus)} if gpus > 1 else {}


def model_job(command: Command, ctx: JobContext, verb: str, hub: str, *, with_hub_flags: bool = True
              ) -> tuple[ResolvedModel, Argv, SpecParts, PriorJob | None]:
    """The opening shared by verbs that run a model, optionally with an earlier job's
    adapter (`swift infer`, `swift eval`, `swift export`): model flags, the earlier job's
    output as an input, `--adapters`, hub flags (`with_hub_flags=False`: the verb adds them
    last, after its own downloads). Returns (model, argv, parts, prior) for the verb to add
    its own options."""
    a = command.args
    model, prior = model_and_adapter(command, ctx, hub)
    gpus = int(a["gpus"]) if a.get("gpus") is not None else model.preset.default_gpus
    argv = Argv("swift", verb)
    parts = SpecParts(task=verb, model_ref=model.ref, argv=argv, gpus=gpus)
    parts.add_model(model)
    argv.extend(model.flags())
    if prior is not None:
        parts.add_prior(prior)
        if prior.is_adapter:
            argv.opt("adapters", [prior.checkpoint])
    if with_hub_flags:
        argv.extend(parts.hub_flags(hub))
    return model, argv, parts, prior
