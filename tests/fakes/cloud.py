"""A test-only cloud adapter, loaded through the real plugin manager
(`plugins.modules = ["tests.fakes.cloud"]`): each job is a separate process
(tests/fakes/fake_job.py) that writes event lines to a file, the way a container writes
its log. Config `[cloud.fake]`: steps, interval, mode, catalog (a list of instance-type
tables, for planner tests); a job's `params["fake_mode"]` overrides the mode.

Like a real cloud it fetches the job's inputs from the artifact store before the job
starts (into `<dir>/inputs/<key>`, the fake's `/inputs`); the fake job lists them in its
log and fails when one is missing. It is registered twice, as `fake` and `fake2`, so a
test can run one job on each of two clouds.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from gateway.contracts import CloudAdapterBase, Services
from gateway.hookspecs import RegisterCloudAdapter, RegisterCommand, hookimpl
from gateway.model import InstanceType, JobSpec, Placement, PlacementStatus, SandboxEvent

ROOT = Path(__file__).resolve().parents[2]


class FakeCloud(CloudAdapterBase):
    name = "fake"

    def __init__(self, config: Mapping[str, Any], services: Services) -> None:
        self.services = services
        self.root = services.data_dir / "fake-cloud" / str(config.get("name", "fake"))
        self.name = str(config.get("name", "fake"))
        self.machines = [InstanceType(**{"cloud": self.name, **m}) for m in config.get("catalog", [])] or \
            [InstanceType(self.name, "fake-cpu", None, 0, 0, 2, 4.0, 0.0)]
        self.steps = int(config.get("steps", 10))
        self.interval = float(config.get("interval", 0.02))
        self.mode = str(config.get("mode", "ok"))
        self.poll = float(config.get("poll", 0.02))
        self.secrets: dict[str, str] = dict(config.get("secrets", {}))  # name -> env:/file: reference
        self.launched: list[str] = []
        self.cancelled: list[str] = []

    def _dir(self, placement: Placement) -> Path:
        return Path(placement.handle["dir"])

    async def launch(self, spec: JobSpec) -> Placement:
        workdir = self.root / spec.id
        workdir.mkdir(parents=True, exist_ok=False)  # launching twice is a bug
        (workdir / "inputs.json").write_text(json.dumps(list(spec.inputs)))
        mode = str(spec.params.get("fake_mode", self.mode))
        for key in spec.inputs:
            if self.services.artifacts is None:
                raise RuntimeError("no artifact store for the inputs")
            source = await self.services.artifacts.get(key)  # FileNotFoundError: a real cloud refuses too
            dest = workdir / "inputs" / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                raise RuntimeError(f"input {key} is a link; a cloud never follows one")
            if source.is_dir():  # links inside stay links (and dangle here), never copies of their targets
                await asyncio.to_thread(shutil.copytree, source, dest, symlinks=True)
            else:
                await asyncio.to_thread(shutil.copyfile, source, dest, follow_symlinks=False)
        # A plain Popen (in a thread), not asyncio's subprocess transport: that one kills
        # its child when the event loop closes, and these jobs must outlive a gateway.
        # Secrets reach the job as environment at creation, as on a real cloud (resolved here,
        # which registers them for redaction).
        env = {**os.environ, **{f"HAMMER_SECRET_{n}": self.services.secret(self.secrets[n])
                                for n in spec.secrets if n in self.secrets}}
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "tests.fakes.fake_job", str(workdir), str(self.steps), str(self.interval), mode],
            cwd=ROOT, start_new_session=True, stdin=subprocess.DEVNULL, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (workdir / "pid").write_text(str(proc.pid))
        self.launched.append(spec.id)
        return Placement(self.name, spec.id, {"dir": str(workdir), "pid": proc.pid})

    async def events(self, placement: Placement, since: int = 0) -> AsyncIterator[SandboxEvent]:
        path = self._dir(placement) / "events.jsonl"
        seq, buf = 0, ""
        pos = 0
        while True:
            done = (self._dir(placement) / "exit_code").exists()
            if path.exists():
                with path.open("r", encoding="utf-8") as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    if seq >= since:
                        yield SandboxEvent.parse(line, seq)
                    seq += 1
            if done and not buf:
                return
            await asyncio.sleep(self.poll)

    async def status(self, placement: Placement) -> PlacementStatus:
        code_file = self._dir(placement) / "exit_code"
        if code_file.exists():
            code = int(code_file.read_text())
            return PlacementStatus(False, code, oom_killed=code == 137)
        return PlacementStatus(True)

    async def cancel(self, placement: Placement) -> None:
        self.cancelled.append(placement.job_id)
        try:
            os.kill(int(placement.handle["pid"]), signal.SIGTERM)
        except ProcessLookupError:
            pass

    async def reattach(self, placement: Placement) -> bool:
        return self._dir(placement).exists()

    async def cleanup(self, placement: Placement) -> None:
        return None

    async def catalog(self) -> list[InstanceType]:
        return list(self.machines)

    async def collect(self, placement: Placement) -> Path | None:
        return self._dir(placement)


def _second(config: Mapping[str, Any], services: Services) -> FakeCloud:
    return FakeCloud({**config, "name": "fake2"}, services)


@hookimpl
def hammer_cloud_adapters(register: RegisterCloudAdapter) -> None:
    register("fake", FakeCloud)
    register("fake2", _second)


def _build_fake_job(command: Any, ctx: Any) -> JobSpec:
    """`.fakejob [mode=ok|fail|oom|hang|crash] [max_runtime=S] [idle_timeout=S]`: a job for the fake cloud."""
    from gateway.model import Limits
    args = command.args
    return JobSpec(
        id=ctx.job_id, task="fake", model="fake-model", datasets=("fake-data",),
        params={"fake_mode": args.get("mode", "ok")}, argv=("fake-runner", "--steps", "10"), cloud="fake",
        secrets=("HF_TOKEN",),
        limits=Limits(max_runtime_s=float(args.get("max_runtime", 3600)),
                      idle_timeout_s=float(args.get("idle_timeout", 900))))


@hookimpl
def hammer_commands(register: RegisterCommand) -> None:
    from gateway.commands import CommandSpec, Param
    register(CommandSpec(
        "fakejob", (Param("mode", "enum", "how the fake job behaves",
                          choices=("ok", "fail", "oom", "hang", "crash", "links", "leak")),
                    Param("max_runtime", "float", "seconds", min=0.1, max=3600),
                    Param("idle_timeout", "float", "seconds", min=0.1, max=3600)),
        help="a job for the test cloud", build_job=_build_fake_job, group="test"))
