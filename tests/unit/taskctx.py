"""Helpers for the task-plugin tests: a gateway-like job context over a tmp data dir,
prior jobs on disk (what the Docker adapter leaves behind), and command building through
the real command table, exactly as the gateway does it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.commands import CommandTable
from gateway.config import Settings, parse_settings
from gateway.model import Actor, Conversation, JobSpec
from plugins import download, export, finetune, infer
from plugins import eval as eval_plugin

PLUGINS = (finetune, infer, export, eval_plugin, download)
ACTOR = Actor("web", "alice", "Alice")
WHERE = Conversation("web", "general")


@dataclass
class Ctx:
    job_id: str
    settings: Settings
    uploads_dir: Path


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
    return builder(cmd, ctx)  # type: ignore[no-any-return]


def make_prior_job(ctx: Ctx, job_id: str, *, model: str = "demo", adapter: bool = True,
                   steps: tuple[int, ...] = (5, 10), tuner: str = "lora") -> Path:
    """A finished job's workspace as the Docker adapter leaves it: job.json plus
    ms-swift's output dir with checkpoint-<step> folders."""
    ws = ctx.settings.data_dir / "jobs" / job_id / "workspace"
    (ws / "output").mkdir(parents=True, exist_ok=True)
    for step in steps:
        ckpt = ws / "output" / f"checkpoint-{step}"
        ckpt.mkdir(parents=True, exist_ok=True)
        if adapter:
            (ckpt / "adapter_config.json").write_text("{}")
        else:
            (ckpt / "config.json").write_text("{}")
    spec = JobSpec(id=job_id, task="sft", model=model, params={"tuner": tuner, "hub": "modelscope"})
    (ws / "job.json").write_text(json.dumps(spec.to_dict()))
    return ws
