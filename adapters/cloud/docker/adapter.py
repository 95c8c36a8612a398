"""DockerAdapter: hammer's `docker` cloud, the local Docker engine (aiodocker).

One job = one container, named `hammer-job-<id>` and labelled `hammer.job_id` /
`hammer.managed`, created from the sandbox image with the hardening of container.py.
The job's workspace is a host directory (`<workspace_root>/<id>/workspace`) holding
job.json, so the runner needs nothing but its mounts; `collect()` names it, and the
orchestrator copies the outputs into the artifact store. A job's inputs (earlier jobs'
artifacts, by key) are fetched from the artifact store and mounted read-only at
`/inputs/<key>`.

Everything the gateway needs after a restart is in the Placement handle (container id
and name) and in the container itself (its labels and its log), so `reattach` and a
resumed `events(since=...)` need no other state. The engine is never asked to pull.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import ValidationError

from gateway import safe_copy
from gateway.contracts import Check, CloudAdapterBase, Services
from gateway.model import InstanceType, JobSpec, Mount, Placement, PlacementStatus, SandboxEvent, input_path
from sandbox.runner.egress import SOCKET_IN_SANDBOX

from .config import DockerConfig
from .container import (
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_MANAGED,
    cache_writable,
    container_body,
    container_name,
    memory_bytes,
)
from .logstream import LineNumberer, oom_event
from .network import EgressServers, isolation_problem, link_shared_cache, proxy_env

try:
    import aiodocker
    from aiodocker.exceptions import DockerError
except ImportError as exc:  # pragma: no cover - aiodocker is a core dependency
    raise ImportError("the docker cloud adapter needs aiodocker: pip install aiodocker") from exc

log = logging.getLogger("hammer.cloud.docker")

ENGINE_FIX = ("install Docker and start it (`scripts/docker-up.sh`, or `systemctl start docker`), "
              "or point [cloud.docker] url at a running engine")
MAX_RECONNECTS = 20
JOB_UID = 1000  # the sandbox image's user (container.UID)


class DockerUnavailable(RuntimeError):
    """The engine cannot be reached; the message says how to fix it."""


class ImageMissing(RuntimeError):
    """The sandbox image is not on this host (hammer never pulls)."""


class DockerAdapter(CloudAdapterBase):
    """Runs jobs as hardened containers on the local Docker engine."""

    name = "docker"
    config_model = DockerConfig

    def __init__(self, config: Mapping[str, Any], services: Services) -> None:
        try:
            self.config = DockerConfig.model_validate(dict(config))
        except ValidationError as exc:
            raise ValueError(f"[cloud.docker]: {exc}") from None
        self.services = services
        data = Path(services.data_dir)
        cfg = self.config
        self.workspace_root = Path(os.path.expanduser(cfg.workspace_root or data / "jobs"))
        # Which gateway made a container: two gateways on one engine never sweep each other's.
        self.instance = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:16]
        self.cache_dir = Path(os.path.expanduser(cfg.cache_dir or data / "cache"))
        self.url = self.config.url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self._docker: aiodocker.Docker | None = None
        self._host_gpus: int | None = None
        self._cancelled: set[str] = set()
        self.egress = EgressServers(self.config)
        #: launch() timings of the last job (seconds): create, start (for benchmarks and logs).
        self.last_launch_timing: dict[str, float] = {}

    # -- the engine ------------------------------------------------------------------------------
    async def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self.url)
        return self._docker

    async def close(self) -> None:
        await self.egress.close()
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    def _unavailable(self, exc: object) -> DockerUnavailable:
        return DockerUnavailable(f"cannot reach the Docker engine at {self.url} ({exc}); {ENGINE_FIX}")

    async def _call(self, coro: Any) -> Any:
        """Await an engine call; connection problems become DockerUnavailable."""
        try:
            return await coro
        except DockerError as exc:
            if exc.status == 900:  # aiodocker's "cannot connect"
                raise self._unavailable(exc.message) from None
            raise
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError) as exc:
            raise self._unavailable(exc) from None

    async def _container(self, placement: Placement) -> tuple[Any, dict[str, Any]] | None:
        """The job's container and its inspect data, by id, else by name + label; None if gone."""
        docker = await self._client()
        handle = placement.handle
        for ref in (handle.get("container_id"), handle.get("name") or container_name(placement.job_id)):
            if not ref:
                continue
            try:
                container = await self._call(docker.containers.get(ref))
            except DockerError as exc:
                if exc.status == 404:
                    continue
                raise
            info = container._container
            if (info.get("Config", {}).get("Labels") or {}).get(LABEL_JOB) == placement.job_id:
                return container, info
        return None

    async def _require_image(self, image: str) -> None:
        docker = await self._client()
        try:
            await self._call(docker.images.inspect(image))
        except DockerError as exc:
            if exc.status == 404:
                raise ImageMissing(f"the sandbox image {image} is not on this Docker host; "
                                   "run `hammer image build` (hammer never pulls images)") from None
            raise

    async def _gpus_on_host(self) -> int:
        if self.config.gpus == "none":
            return 0
        if self._host_gpus is None:
            self._host_gpus = (await asyncio.to_thread(_local_host_instance)).gpu_count
        return self._host_gpus

    # -- CloudAdapter ------------------------------------------------------------------------------
    async def launch(self, spec: JobSpec) -> Placement:
        loop = asyncio.get_running_loop()
        docker = await self._client()
        await self._require_image(spec.image)
        gpus = 0
        if spec.resources.gpu_count > 0:
            have = await self._gpus_on_host()
            if have < spec.resources.gpu_count:
                raise RuntimeError(f"job {spec.id} needs {spec.resources.gpu_count} GPU(s); this Docker host "
                                   f"has {have} (nvidia-smi). Run it on a GPU cloud, or with gpus=0 "
                                   "on the CPU.")
            gpus = spec.resources.gpu_count
        spec, network, extra_env = await self._download_access(spec)
        workspace = self.workspace_root / spec.id / "workspace"
        spec = await self._with_inputs(spec)
        await asyncio.to_thread(self._prepare_dirs, spec, workspace)
        body = container_body(spec, workspace=workspace, cache=self.cache_dir, config=self.config,
                              secrets=self._secrets(spec), gpu_count=gpus,
                              labels={**self.config.labels, LABEL_INSTANCE: self.instance},
                              network=network, extra_env=extra_env)
        name = container_name(spec.id)
        t0 = loop.time()
        try:
            container = await self._call(docker.containers.create(body, name=name))
        except DockerError as exc:
            if exc.status == 409:
                raise RuntimeError(f"a container named {name} already exists: job {spec.id} was launched "
                                   "before; hammer never launches a job twice") from None
            raise RuntimeError(f"Docker refused to create the job container: {exc.message}") from None
        t1 = loop.time()
        try:
            await self._call(container.start())
        except (DockerError, DockerUnavailable) as exc:
            await self._remove(container.id)
            reason = getattr(exc, "message", exc)
            raise RuntimeError(f"Docker could not start the job container: {reason}") from None
        t2 = loop.time()
        self.last_launch_timing = {"create_s": t1 - t0, "start_s": t2 - t1, "total_s": t2 - t0}
        log.info("job %s: container %s started in %.3fs", spec.id, container.id[:12],
                 self.last_launch_timing["total_s"], extra={"job_id": spec.id})
        handle = {"container_id": container.id, "name": name, "workspace": str(workspace),
                  "memory_bytes": memory_bytes(spec, self.config)}
        return Placement("docker", spec.id, handle)

    async def _download_access(self, spec: JobSpec) -> tuple[JobSpec, str | None, dict[str, str]]:
        """How a downloading job gets out: (spec with the proxy's socket mounted, network
        override, environment). Jobs that download nothing get none of it."""
        if not spec.needs_network:
            return spec, None, {}
        if self.config.network == "none":
            raise RuntimeError(f"job {spec.id} must download (a hub model or dataset), but [cloud.docker] network "
                               'is "none"; download it first with .download, or set network = "isolated"')
        if self.config.network == "isolated":
            folder = await self.egress.serve(spec.id, self.workspace_root / spec.id)
            mount = Mount(str(folder), str(Path(SOCKET_IN_SANDBOX).parent), True)
            return dataclasses.replace(spec, mounts=(*spec.mounts, mount)), "none", proxy_env()
        docker = await self._client()
        try:
            await self._call(docker.networks.get(self.config.network))
        except DockerError as exc:
            if exc.status != 404:
                raise
            raise RuntimeError(f"job {spec.id} must download, but the Docker network {self.config.network!r} "
                               'does not exist; set [cloud.docker] network = "isolated"') from None
        return spec, self.config.network, {}

    async def _with_inputs(self, spec: JobSpec) -> JobSpec:
        """Each input key, fetched from the artifact store, as a read-only mount."""
        if not spec.inputs:
            return spec
        store = self.services.artifacts
        if store is None:
            raise RuntimeError(f"job {spec.id} needs earlier jobs' outputs, but no artifact store is configured")
        mounts = list(spec.mounts)
        for key in spec.inputs:
            try:
                path = await store.get(key)
            except (FileNotFoundError, ValueError):
                raise RuntimeError(f"job {spec.id}: its input {key} is not in the artifact store "
                                   "(removed, or the earlier job never stored it)") from None
            mounts.append(Mount(str(path), input_path(key), True))
        return dataclasses.replace(spec, mounts=tuple(mounts))

    def _prepare_dirs(self, spec: JobSpec, workspace: Path) -> None:
        """Host side of the mounts. The container runs as uid 1000: its workspace belongs to
        uid 1000 with mode 0700 and the shared cache to uid 1000 with 0755 (a gateway that is
        not root cannot hand them over, and falls back to 0777/0755 with a warning)."""
        workspace.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for d, mode in ((workspace, 0o700), (self.cache_dir, 0o755)):
            try:
                os.chown(d, JOB_UID, JOB_UID)
                d.chmod(mode)
            except PermissionError:
                log.warning("cannot give %s to uid %d (hammer is not root); it stays world-writable", d, JOB_UID)
                d.chmod(0o777)
        for m in spec.mounts:
            if not Path(m.source).exists():
                raise RuntimeError(f"job {spec.id}: {m.source} (for {m.target}) does not exist on this host")
        if not cache_writable(spec, self.cache_dir):
            link_shared_cache(self.cache_dir, workspace)
        tmp = workspace / ".job.json.tmp"
        tmp.write_text(json.dumps(spec.to_dict(), indent=1, sort_keys=True), encoding="utf-8")
        tmp.chmod(0o644)
        tmp.replace(workspace / "job.json")

    def _secrets(self, spec: JobSpec) -> dict[str, str]:
        """Secret names -> values, from [cloud.docker] secrets. A name the operator has not
        configured is left out (public hub models need no token)."""
        out: dict[str, str] = {}
        for name in spec.secrets:
            ref = self.config.secrets.get(name)
            if ref is None:
                log.debug("job %s: secret %s is not configured; not set", spec.id, name)
                continue
            out[name] = self.services.secret(ref)
        return out

    async def events(self, placement: Placement, since: int = 0) -> AsyncIterator[SandboxEvent]:
        """The container's output as events with seq >= since, until it exits.

        The log is read from its first line on every (re)connection and numbered; lines
        before `since` are counted and skipped. After the last line, a container killed
        for memory whose runner sent no error gets one synthetic `oom` error event.
        """
        loop = asyncio.get_running_loop()
        next_seq = since
        for attempt in range(MAX_RECONNECTS):
            found = await self._container(placement)
            if found is None:
                return
            container, _ = found
            numberer = LineNumberer(since=next_seq)
            complete = True
            try:
                async for chunk in container.log(stdout=True, stderr=True, follow=True):
                    for event in numberer.feed(chunk):
                        next_seq = event.seq + 1
                        yield event
            except (TimeoutError, aiohttp.ClientError, ConnectionError, DockerError) as exc:
                log.warning("job %s: log stream broke (%s); reconnecting", placement.job_id, exc)
                complete = False
            state = await self._wait_exited(placement, loop.time() + 5.0) if complete else None
            if state is not None:
                # A follower can stop before the engine flushed the last (partial) line;
                # one plain read of the finished log delivers whatever it missed.
                final = LineNumberer(since=next_seq)
                try:
                    chunks = await self._call(container.log(stdout=True, stderr=True))
                except DockerError:  # removed meanwhile (cancelled): what we have is all
                    chunks, final = [], numberer
                for chunk in chunks:
                    for event in final.feed(chunk):
                        next_seq = event.seq + 1
                        yield event
                for event in final.close():
                    next_seq = event.seq + 1
                    yield event
                exit_code, oom = state.get("ExitCode"), bool(state.get("OOMKilled"))
                cancelled = placement.job_id in self._cancelled
                if (oom or exit_code == 137) and not cancelled and not final.saw_error \
                        and final.count >= next_seq:
                    yield oom_event(final.count, exit_code, placement.handle.get("memory_bytes"),
                                    str(state.get("FinishedAt", "")))
                return
            if await self._container(placement) is None:
                return
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
        raise RuntimeError(f"job {placement.job_id}: lost the container's log {MAX_RECONNECTS} times")

    async def _wait_exited(self, placement: Placement, deadline: float) -> dict[str, Any] | None:
        """The container's State once it is not running (the log of a running container
        can only end because the connection dropped); None if it still runs at `deadline`."""
        loop = asyncio.get_running_loop()
        while True:
            found = await self._container(placement)
            if found is None:
                return {"ExitCode": None, "OOMKilled": False}
            state = found[1].get("State", {})
            if not state.get("Running"):
                return state  # type: ignore[no-any-return]
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(0.05)

    async def status(self, placement: Placement) -> PlacementStatus:
        found = await self._container(placement)
        if found is None:
            return PlacementStatus(False, None, False, "the container is gone")
        state = found[1].get("State", {})
        if state.get("Running"):
            return PlacementStatus(True)
        return PlacementStatus(False, state.get("ExitCode"), bool(state.get("OOMKilled")),
                               state.get("Error") or state.get("Status", ""))

    async def cancel(self, placement: Placement) -> None:
        """SIGTERM (the runner stops ms-swift and reports), SIGKILL after the grace
        period (the engine's own stop), then cleanup."""
        self._cancelled.add(placement.job_id)
        found = await self._container(placement)
        if found is not None:
            container, _ = found
            grace = int(self.config.grace_period_s)
            try:
                await self._call(container.stop(t=grace, timeout=aiohttp.ClientTimeout(total=grace + 30)))
            except DockerError as exc:
                if exc.status not in (304, 404):
                    raise
        await self.cleanup(placement)

    async def reattach(self, placement: Placement) -> bool:
        found = await self._container(placement) is not None
        if found and safe_copy.kind(self.workspace_root / placement.job_id / "egress") == "dir":
            await self.egress.serve(placement.job_id, self.workspace_root / placement.job_id)  # its way out again
        return found

    async def cleanup(self, placement: Placement) -> None:
        """Remove the container (and its anonymous volumes) unless keep_containers. The
        workspace stays: it is the job's output, which later commands use (adapter=JOBID)."""
        if not self.config.keep_containers:
            found = await self._container(placement)
            if found is not None:
                await self._remove(found[0].id)
        await self.egress.release(placement.job_id, self.workspace_root / placement.job_id)

    async def _remove(self, container_id: str) -> None:
        docker = await self._client()
        try:
            await self._call(docker.containers.container(container_id).delete(force=True, v=True))
        except DockerError as exc:
            if exc.status not in (404, 409):  # gone, or removal already in progress
                raise

    async def catalog(self) -> list[InstanceType]:
        host = await asyncio.to_thread(_local_host_instance)
        if self.config.gpus == "none" and host.gpu_count:
            host = InstanceType(**{**host.to_dict(), "gpu": None, "gpu_count": 0, "gpu_memory_mib": 0})
        return [host]

    async def collect(self, placement: Placement) -> Path | None:
        workspace = placement.handle.get("workspace")
        return Path(workspace) if workspace else self.workspace_root / placement.job_id / "workspace"

    # -- hammer doctor -------------------------------------------------------------------------------
    async def check(self) -> list[Check]:
        checks: list[Check] = []
        docker = await self._client()
        try:
            version = await self._call(docker.version())
        except (DockerUnavailable, DockerError) as exc:
            fix = str(exc) if isinstance(exc, DockerUnavailable) else \
                f"the engine answered {exc.status}: {exc.message}; {ENGINE_FIX}"
            return [Check(False, f"Docker engine at {self.url}", fix)]
        checks.append(Check(True, f"Docker engine {version.get('Version', '?')} at {self.url}"))
        image = self.services.settings.jobs.image
        try:
            await self._require_image(image)
            checks.append(Check(True, f"sandbox image {image}"))
        except ImageMissing as exc:
            checks.append(Check(False, f"sandbox image {image}", str(exc)))
        if self.config.network == "isolated":
            checks.append(Check(True, "downloads: jobs have no network; HTTPS to "
                                      f"{', '.join(self.egress.allow)} only, through hammer's proxy"))
        elif self.config.network != "none":
            problem = await isolation_problem(docker, self.config.network)
            checks.append(Check(problem is None, f"download network {self.config.network} is isolated",
                                problem or ""))
        gpus = await self._gpus_on_host()
        checks.append(Check(True, f"{gpus} GPU(s) for jobs" if gpus else "no GPU: jobs run on the CPU"))
        return checks

    async def placements(self) -> list[Placement]:
        """Every job container hammer left on this engine, as placements (the orchestrator
        removes those whose job is no longer active: nothing stays behind a crash)."""
        found = []
        for info in await self.managed_containers():
            labels = info.get("Labels") or {}
            job_id = labels.get(LABEL_JOB)
            if job_id and labels.get(LABEL_INSTANCE) == self.instance:
                found.append(Placement(self.name, job_id, {"container_id": info.get("Id", "")}))
        return found

    async def managed_containers(self) -> list[dict[str, Any]]:
        """Every container hammer made on this engine (for tests and `hammer doctor`)."""
        docker = await self._client()
        listing = docker.containers.list(all=True, filters={"label": [f"{LABEL_MANAGED}=true"]})
        items = await self._call(listing)
        return [c._container for c in items]


def _local_host_instance() -> InstanceType:
    """This host as an instance type (GPUs from nvidia-smi), via the estimator's helper."""
    try:
        from gateway.estimate.hints import local_host_instance
    except ImportError:  # an older gateway: a CPU host
        return InstanceType("docker", "local", None, 0, 0, os.cpu_count() or 1, 0.0, 0.0, region="local")
    return local_host_instance()
