"""Helpers for the task-plugin tests: a job context (gateway.contracts.JobContext) over a
tmp data dir, earlier jobs as the store holds them (artifact keys, no cloud's disk), and
command building through the real command table, exactly as the gateway does it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.commands import CommandTable
from gateway.config import Settings, parse_settings
from gateway.model import Actor, Conversation, Job, JobSpec, JobState
from plugins import download, export, finetune, infer
from plugins import eval as eval_plugin

PLUGINS = (finetune, infer, export, eval_plugin, download)
ACTOR = Actor("web", "alice", "Alice")
WHERE = Conversation("web", "general")


@dataclass
class Ctx:
    """A gateway.contracts.JobContext over a tmp data dir (the planner's BuildContext shape)."""

    job_id: str
    settings: Settings
    uploads_dir: Path
    actor: Actor = ACTOR
    jobs: dict[str, Job] = field(default_factory=dict)

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def upload(self, name: str) -> Path | None:
        path = self.uploads_dir / name
        return path if path.is_file() else None


def make_ctx(tmp: Path, extra_toml: str = "") -> Ctx:
    settings = parse_settings(f'[gateway]\ndata_dir = "{tmp / "data"}"\n' + extra_toml)
    uploads = tmp / "data" / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / "faq.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, '
                                       '{"role": "assistant", "content": "hello"}]}\n')
    (uploads / "notes.txt").write_text("not jsonl\n")
    return Ctx("job0001", settings, uploads)


def table(settings: Settings | None = None) -> CommandTable:
    specs: list[Any] = []
    for plugin in PLUGINS:
        plugin.hammer_commands(specs.append)
    t = CommandTable(specs)
    if settings is not None:
        from gateway.commands import Param
        for verb, extras in settings.commands.extra.items():
            t.add_extra_params(verb, [Param(n, e.type, e.help, min=e.min, max=e.max, choices=tuple(e.choices),
                                            flag=e.flag) for n, e in extras.items()])
    return t


def build(text: str, ctx: Ctx) -> JobSpec:
    t = table(ctx.settings)
    cmd = t.parse(text, ACTOR, WHERE)
    builder = t.specs[cmd.verb].build_job
    assert builder is not None
    return builder(cmd, ctx)  # type: ignore[return-value]


def make_prior_job(ctx: Ctx, job_id: str, *, model: str = "demo", adapter: bool = True, tuner: str = "lora",
                   state: JobState = JobState.SUCCEEDED) -> Job:
    """A finished job as the store holds it: its spec, and its adapter (or full weights)
    stored in the artifact store under `jobs/<id>/adapter` (or `model`)."""
    spec = JobSpec(id=job_id, task="sft", model=model, params={"tuner": tuner, "hub": "modelscope"})
    name = "adapter" if adapter else "model"
    job = Job(spec=spec, state=state, created_at=1.0, updated_at=2.0)
    if state == JobState.SUCCEEDED:
        job.artifacts = [{"name": name, "path": "output/v0-x/checkpoint-10", "key": f"jobs/{job_id}/{name}"},
                         {"name": "report", "path": "report.json", "key": f"jobs/{job_id}/report.json"}]
    ctx.jobs[job_id] = job
    return job
