"""The one argv-building path every task plugin shares.

A plugin turns a typed `Command` into a `JobSpec` whose `argv` the sandbox runner execs
as is (never through a shell). Three rules keep that argv safe and readable:

* every option is `--flag value`, two elements, with values that came through hammer's
  typed grammar (numbers, enums, presets, hub ids, paths hammer itself chose);
* free text (a system prompt) goes as ONE element `--flag=value`, so argparse can never
  read any part of it as another flag, whatever it contains (`--output_dir=/etc`, too);
* a value that starts with "-" also takes the `--flag=value` form, for the same reason.

Model, dataset and prior-job references resolve here too, so that `demo`, uploads and
`adapter=JOBID` mean the same thing to every verb.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway.commands import CommandError, Param, split_model_ref
from gateway.model import JobSpec, Limits, Mount, Resources
from plugins import presets
from plugins.presets import ModelPreset

OUTPUT_DIR = "/workspace/output"
#: Hub caches on the shared /cache volume: a model downloaded once (by `.download` or by
#: any job) is found by every later job through ms-swift's own cache lookup.
CACHE_ENV = {"MODELSCOPE_CACHE": "/cache/modelscope", "HF_HOME": "/cache/hf"}
HUB_SECRETS = {"modelscope": "MODELSCOPE_API_TOKEN", "hf": "HF_TOKEN"}
_UPLOAD = re.compile(r"upload:([A-Za-z0-9][A-Za-z0-9._-]{0,95})")


class JobContext(Protocol):
    """What the gateway hands to `build_job` (gateway.service.JobContext)."""

    job_id: str
    settings: Any  # gateway.config.Settings
    uploads_dir: Path


# -- argv ---------------------------------------------------------------------------------


def render_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value)) if value != 0 else "0"
    return str(value)


class Argv:
    """An argv list under construction; see the module docstring for its rules."""

    def __init__(self, *program: str) -> None:
        self.items: list[str] = list(program)

    def opt(self, flag: str, value: Any) -> Argv:
        """`--flag value` (a list gives `--flag v1 v2`); None adds nothing."""
        if value is None:
            return self
        items = value if isinstance(value, list | tuple) else [value]
        values = [render_value(v) for v in items]
        if len(values) == 1 and values[0].startswith("-"):
            self.items.append(f"--{flag}={values[0]}")
            return self
        if any(v.startswith("-") for v in values):
            raise ValueError(f"--{flag}: list values may not start with '-': {values!r}")
        self.items.append(f"--{flag}")
        self.items.extend(values)
        return self

    def text(self, flag: str, value: str | None) -> Argv:
        """Free text: always one element `--flag=value`."""
        if value is not None:
            self.items.append(f"--{flag}={value}")
        return self

    def extend(self, pairs: Iterable[tuple[str, Any]]) -> Argv:
        for flag, value in pairs:
            self.opt(flag, value)
        return self

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self.items)


# -- parameters shared by several verbs ------------------------------------------------------

HUB = Param("hub", "enum", "where to download models and datasets from", choices=("modelscope", "hf"),
            default="modelscope")
GPUS = Param("gpus", "int", "how many GPUs (0 runs on the CPU; default 0 for demo, 1 otherwise)",
             min=0, max=64)
SYSTEM = Param("system", "text", "system prompt for the chat template")
ADAPTER = Param("adapter", "job", "a finished fine-tune whose adapter (or weights) to use")


def extra_flags(command: Any, ctx: JobContext) -> list[str]:
    """Operator-approved extra flags (`[commands.extra.<verb>]` in the config): the gateway
    already typed the values; each goes as one `--flag=value` element."""
    commands = getattr(ctx.settings, "commands", None)
    table = (getattr(commands, "extra", None) or {}).get(command.verb, {})
    out = []
    for name, extra in table.items():
        if name in command.args:
            out.append(f"{extra.flag}={render_value(command.args[name])}")
    return out


# -- models ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference made concrete for ms-swift."""

    preset: ModelPreset
    tuner: str | None  # from the `-lora`/`-qlora`/`-full` suffix, if any
    ref: str  # what JobSpec.model records: the preset name or the hub id
    hub: str
    path: str | None = None  # an explicit --model path (a prior job's full weights)

    @property
    def local(self) -> bool:
        return self.preset.local

    @property
    def needs_network(self) -> bool:
        return not self.local and self.path is None

    def flags(self, *, with_type: bool = True) -> list[tuple[str, Any]]:
        p = self.preset
        if self.path is not None:
            model = self.path
        elif p.local:
            model = presets.DEMO_MODEL_PATH
        else:
            model = p.hub_id(self.hub)
            if model is None:
                other = "modelscope" if self.hub == "hf" else "hf"
                raise CommandError("not_on_hub", f"{p.name} has no {self.hub} hub id in the catalog.",
                                   f"Use hub={other}.")
        out: list[tuple[str, Any]] = [("model", model)]
        if with_type and p.model_type:
            out.append(("model_type", p.model_type))
        if with_type and p.template:
            out.append(("template", p.template))
        return out

    def prepare(self) -> list[str]:
        return [f"demo_model:{presets.DEMO_MODEL_PATH}"] if self.local and self.path is None else []


def resolve_model(ref: str, hub: str = "modelscope") -> ResolvedModel:
    base, tuner = split_model_ref(ref)
    preset = presets.hub_model(base) if "/" in base else presets.model_preset(base)
    return ResolvedModel(preset, tuner, preset.name if preset.arch else base, hub)


# -- datasets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedDataset:
    ref: str
    value: str  # what --dataset gets
    needs_network: bool
    kind: str | None = None  # the preset's kind; None for hub ids and uploads (unknown)
    mounts: tuple[Mount, ...] = ()
    prepare: tuple[str, ...] = ()
    validate: tuple[str, ...] = ()


def resolve_dataset(ref: str, ctx: JobContext, *, hub: str = "modelscope", want: str | None = None,
                    ) -> ResolvedDataset:
    """`want` is the kind a task needs (preference, kto); a preset of another kind is
    refused, and the `demo` preset becomes the demo of that kind."""
    name, _, count = ref.partition("#")
    suffix = f"#{count}" if count else ""
    upload = _UPLOAD.fullmatch(name)
    if upload:
        return _upload(ref, upload.group(1), suffix, ctx)
    if "/" in name:
        return ResolvedDataset(ref, name + suffix, True)
    preset = presets.dataset_preset(name)
    if want and preset.local_kind and preset.kind != want:
        preset = presets.demo_dataset_for(want)
    if want and preset.kind != want:
        fits = ", ".join(d.name for d in presets.DATASETS.values() if d.kind == want)
        raise CommandError("dataset_kind",
                           f"{preset.name} is a {preset.kind} dataset; this needs {want} data.",
                           f"Use one of: {fits}, or a hub id / upload in that format.")
    if preset.local_kind:
        kind, path = presets.DEMO_DATASETS[preset.local_kind]
        return ResolvedDataset(ref, path + suffix, False, preset.kind, prepare=(f"{kind}:{path}",))
    hub_id = preset.hub_id(hub)
    if hub_id is None:
        raise CommandError("not_on_hub", f"Dataset {preset.name} has no {hub} hub id.",
                           f"Use hub={'modelscope' if hub == 'hf' else 'hf'}.")
    return ResolvedDataset(ref, hub_id + suffix, True, preset.kind)


def _upload(ref: str, filename: str, suffix: str, ctx: JobContext) -> ResolvedDataset:
    if not filename.lower().endswith(".jsonl"):
        raise CommandError("bad_dataset_file", f"{filename} is not a JSONL file.",
                           "Upload the dataset as .jsonl: one JSON object per line, e.g. "
                           '{"messages": [{"role": "user", "content": "..."}, '
                           '{"role": "assistant", "content": "..."}]}')
    host = Path(ctx.uploads_dir) / filename
    if not host.is_file():
        raise CommandError("upload_missing", f"There is no uploaded file named {filename}.",
                           "Attach the .jsonl file in the chat first, then use upload:" + filename)
    target = f"/data/{filename}"
    return ResolvedDataset(ref, target + suffix, False, mounts=(Mount(str(host), target, True),),
                           validate=(target,))


# -- prior jobs (adapter=JOBID) ----------------------------------------------------------------


@dataclass(frozen=True)
class PriorJob:
    """A finished job's output, mounted read-only at /jobs/<id>/output."""

    job_id: str
    mount: Mount
    checkpoint: str  # path inside the sandbox
    is_adapter: bool  # LoRA/QLoRA adapter (True) or full weights (False)
    spec: JobSpec | None

    def base_model(self, hub: str) -> ResolvedModel | None:
        """The model the job trained, from its job.json (None when unknown)."""
        if self.spec is None or not self.spec.model:
            return None
        try:
            return resolve_model(self.spec.model, str(self.spec.params.get("hub", hub)))
        except CommandError:
            return None


def workspace_root(settings: Any) -> Path:
    """Where the local Docker adapter keeps job workspaces (its `workspace_root`)."""
    docker = (getattr(settings, "cloud", {}) or {}).get("docker", {})
    root = docker.get("workspace_root") if isinstance(docker, Mapping) else None
    return Path(root).expanduser() if root else Path(settings.data_dir) / "jobs"


def prior_job(job_id: str, ctx: JobContext) -> PriorJob:
    workspace = workspace_root(ctx.settings) / job_id / "workspace"
    output = workspace / "output"
    missing = CommandError("job_not_found", f"Job {job_id} not found or has no adapter.",
                           "Use the id of a finished fine-tune from .jobs (its output must be on this host).")
    if not output.is_dir():
        raise missing
    checkpoint = _latest_checkpoint(output)
    if checkpoint is None:
        raise missing
    spec = None
    try:
        spec = JobSpec.from_dict(json.loads((workspace / "job.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        spec = None
    target = f"/jobs/{job_id}/output"
    rel = checkpoint.relative_to(output).as_posix()
    return PriorJob(job_id, Mount(str(output), target, True), f"{target}/{rel}",
                    (checkpoint / "adapter_config.json").is_file(), spec)


def model_and_adapter(command: Any, ctx: JobContext, hub: str) -> tuple[ResolvedModel, PriorJob | None]:
    """The model a verb runs on: `MODEL`, or the model `adapter=JOBID` was trained from
    (from that job's job.json); a full fine-tune's weights replace the base model."""
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


def _latest_checkpoint(output: Path) -> Path | None:
    """ms-swift saves `checkpoint-<step>` under the output dir (or under `v<N>-<time>/`
    when versioned); the newest run's highest step is the final model."""
    found: list[tuple[float, int, Path]] = []
    for parent in (output, *sorted(p for p in output.iterdir() if p.is_dir() and p.name.startswith("v"))):
        for ckpt in parent.glob("checkpoint-*"):
            step = ckpt.name.removeprefix("checkpoint-")
            if ckpt.is_dir() and step.isdigit():
                found.append((parent.stat().st_mtime if parent != output else 0.0, int(step), ckpt))
    return max(found, key=lambda t: (t[0], t[1]))[2] if found else None


# -- the spec -----------------------------------------------------------------------------------


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
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    needs_network: bool = False
    gpus: int = 0

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
        if ds.needs_network:
            self.add_hub(hub)

    def add_prior(self, prior: PriorJob) -> None:
        if prior.mount not in self.mounts:
            self.mounts.append(prior.mount)
        self.params["adapter_job"] = prior.job_id

    def add_hub(self, hub: str) -> None:
        secret = HUB_SECRETS[hub]
        if secret not in self.secrets:
            self.secrets.append(secret)

    def hub_flags(self, hub: str) -> list[tuple[str, Any]]:
        """ms-swift downloads from ModelScope unless told `--use_hf true`."""
        return [("use_hf", True)] if hub == "hf" and self.needs_network else []

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
            env=env, secrets=tuple(self.secrets), mounts=tuple(self.mounts), needs_network=self.needs_network,
        )


def gpu_count(command: Any, model: ResolvedModel) -> int:
    gpus = command.args.get("gpus")
    return int(gpus) if gpus is not None else model.preset.default_gpus


def multi_gpu_env(gpus: int) -> dict[str, str]:
    """ms-swift starts torchrun itself when NPROC_PER_NODE is set (one process per GPU)."""
    return {"NPROC_PER_NODE": str(gpus)} if gpus > 1 else {}


def model_job(command: Any, ctx: JobContext, verb: str, hub: str) -> tuple[Any, Argv, SpecParts]:
    """The opening shared by verbs that run a model, optionally with an earlier job's
    adapter (`swift infer`, `swift eval`): model flags, the prior job's mount and adapter,
    hub flags. Returns (model, argv, parts) for the verb to add its own options."""
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
    argv.extend(parts.hub_flags(hub))
    return model, argv, parts
