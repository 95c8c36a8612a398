"""The Orchestrator: drives each job through its states on a cloud adapter.

Order of work for every job: persist, then act. A transition is stored before anyone is
told; an event is stored (with the job's updated view, in one transaction) before the
progress message changes. On start the orchestrator re-attaches to every job that was
provisioning, running or uploading and resumes its event stream after the last stored
sequence number, so a gateway restart loses nothing and launches nothing twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway import logs, render
from gateway.contracts import ArtifactStore, CloudAdapter
from gateway.jobs.notifier import ProgressNotifier
from gateway.model import ErrorKind, Job, JobSpec, JobState, Placement, SandboxEvent
from gateway.store import Store

log = logging.getLogger("hammer.jobs")

#: A job is in one of these when a gateway restart finds it mid-flight.
IN_FLIGHT = (JobState.PROVISIONING, JobState.RUNNING, JobState.UPLOADING)


class Orchestrator:
    def __init__(self, store: Store, clouds: Mapping[str, CloudAdapter], notifier: ProgressNotifier,
                 *, artifacts: ArtifactStore | None = None, on_event: Callable[[Job, SandboxEvent], None] | None = None,
                 default_cloud: str = "docker", watchdog_interval_s: float = 5.0,
                 hints: Callable[[Job], str | None] | None = None) -> None:
        self.store, self.clouds, self.notifier = store, clouds, notifier
        self.artifacts = artifacts
        self.on_event = on_event
        self.default_cloud = default_cloud
        self.watchdog_interval_s = watchdog_interval_s
        self.hints = hints
        self.jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self.launches = 0  # counted for tests and metrics

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        for job in await self.store.list_jobs(states=(JobState.QUEUED, *IN_FLIGHT), limit=10_000):
            self.jobs[job.id] = job
            await self._resume(job)
        await self._sweep()
        self._watchdog = asyncio.create_task(self._watch(), name="watchdog")

    async def _sweep(self) -> None:
        """Remove what a cloud still holds for jobs that are no longer active (a crash
        between launch and bookkeeping, a cleanup that failed). Adapters opt in with
        `async def placements() -> list[Placement]`."""
        for cloud in self.clouds.values():
            listing = getattr(cloud, "placements", None)
            if listing is None:
                continue
            try:
                leftovers = await listing()
            except Exception as exc:
                log.warning("listing %s placements failed: %s", cloud.name, exc)
                continue
            for placement in leftovers:
                job = self.jobs.get(placement.job_id)
                if job is not None and not job.state.terminal:
                    continue
                try:
                    await cloud.cleanup(placement)
                    log.info("removed a leftover of job %s on %s", placement.job_id, cloud.name,
                             extra={"job_id": placement.job_id})
                except Exception as exc:
                    log.warning("removing a leftover of job %s failed: %s", placement.job_id, exc)

    async def stop(self) -> None:
        """Detach from running jobs (they keep running remotely) and stop our tasks."""
        tasks = list(self._tasks.values()) + ([self._watchdog] if self._watchdog else [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _resume(self, job: Job) -> None:
        cloud = self.clouds.get(job.spec.cloud)
        if job.state == JobState.QUEUED:
            self._spawn(job)
            return
        if cloud is None:
            await self._fail(job, ErrorKind.INTERNAL, f"cloud adapter {job.spec.cloud!r} is not enabled any more",
                             "Enable it again in the config and restart, or cancel the job.")
            return
        if job.placement is None:
            # We crashed between asking for a machine and recording where it is: remove
            # whatever the adapter can find by the job's id, then say so.
            try:
                await cloud.cleanup(Placement(job.spec.cloud, job.id, {}))
            except Exception as exc:
                log.warning("job %s: cleaning up a half-launched job: %s", job.id, exc, extra={"job_id": job.id})
            await self._fail(job, ErrorKind.INTERNAL, "the gateway stopped while launching this job",
                             "Run the command again; nothing of this job was left running.")
            return
        try:
            alive = await cloud.reattach(job.placement)
        except Exception as exc:
            log.error("job %s: re-attach failed: %s", job.id, exc, extra={"job_id": job.id})
            alive = False
        if not alive:
            await self._fail(job, ErrorKind.INTERNAL, "the job's machine disappeared while the gateway was down",
                             "Run the command again.")
            return
        log.info("job %s: re-attached, resuming after event %d", job.id, job.last_seq, extra={"job_id": job.id})
        self._spawn(job)

    # -- submitting and cancelling -------------------------------------------------------------
    async def submit(self, spec: JobSpec, *, pending_approval: bool = False,
                     before_start: Callable[[Job], Any] | None = None) -> Job:
        """Persist a new job and start it (unless it waits for approval).

        `before_start(job)` runs after the job is stored and before it is launched: the
        service uses it to post the progress message, so its reference is persisted first.
        """
        if not spec.cloud:
            spec = dataclasses.replace(spec, cloud=self.default_cloud)
        if spec.cloud not in self.clouds:
            raise ValueError(f"cloud {spec.cloud!r} is not enabled (enabled: {', '.join(self.clouds) or 'none'})")
        state = JobState.PENDING_APPROVAL if pending_approval else JobState.QUEUED
        job = await self.store.create_job(spec, state)
        self.jobs[job.id] = job
        if before_start is not None:
            result = before_start(job)
            if asyncio.iscoroutine(result):
                await result
        if state == JobState.QUEUED:
            self._spawn(job)
        return job

    async def approve(self, job_id: str) -> Job:
        job = await self._get(job_id)
        async with self._lock(job_id):
            if job.state != JobState.PENDING_APPROVAL:
                return job
            await self.store.transition(job, JobState.QUEUED, "approved")
        self._notify(job)
        self._spawn(job)
        return job

    async def cancel(self, job_id: str, reason: str = "cancelled by user") -> Job:
        job = await self._get(job_id)
        async with self._lock(job_id):
            if job.state.terminal:
                return job
            if job.placement is not None:
                cloud = self.clouds.get(job.placement.cloud)
                if cloud is not None:
                    try:
                        await cloud.cancel(job.placement)
                    except Exception as exc:
                        log.error("job %s: cancel on %s failed: %s", job_id, job.placement.cloud, exc,
                                  extra={"job_id": job_id})
            image = await self._collect(job)
            await self.store.transition(job, JobState.CANCELLED, reason)
        task = self._tasks.pop(job_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        await self._finalize(job, image)
        return job

    async def _get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id) or await self.store.get_job(job_id)
        if job is None:
            raise KeyError(job_id)
        self.jobs.setdefault(job_id, job)
        return self.jobs[job_id]

    def _lock(self, job_id: str) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    def _spawn(self, job: Job) -> None:
        if job.id not in self._tasks or self._tasks[job.id].done():
            self._tasks[job.id] = asyncio.create_task(self._drive(job), name=f"job-{job.id}")

    # -- driving one job ------------------------------------------------------------------------
    async def _drive(self, job: Job) -> None:
        try:
            cloud = self.clouds[job.spec.cloud]
            if job.state == JobState.QUEUED:
                async with self._lock(job.id):
                    if job.state != JobState.QUEUED:
                        return
                    await self.store.transition(job, JobState.PROVISIONING, f"launching on {cloud.name}")
                self._notify(job)
                try:
                    placement = await cloud.launch(job.spec)
                    self.launches += 1
                except Exception as exc:
                    await self._fail(job, ErrorKind.INTERNAL, f"could not start the job on {cloud.name}: {exc}",
                                     "Check `hammer doctor`; the message above says what the machine refused.")
                    return
                job.placement = placement
                await self.store.save(job)
            assert job.placement is not None
            async for event in cloud.events(job.placement, since=job.last_seq + 1):
                if job.state.terminal:
                    return
                await self._record(job, event)
            await self._stream_ended(job, cloud)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %s: orchestrator error", job.id, extra={"job_id": job.id})
            if not job.state.terminal:
                await self._fail(job, ErrorKind.INTERNAL, f"hammer lost track of the job: {exc}",
                                 "Check the gateway log (`hammer logs`) and run the command again.")

    async def _record(self, job: Job, event: SandboxEvent) -> None:
        if event.seq <= job.last_seq:
            return
        _apply(job, event)
        if not await self.store.add_event(job, event, view_changed=event.type != "log"):
            return
        if job.state == JobState.PROVISIONING and event.type in ("progress", "status", "log"):
            async with self._lock(job.id):
                if job.state == JobState.PROVISIONING:
                    job.started_at = job.started_at or time.time()
                    await self.store.transition(job, JobState.RUNNING, "first event from the runner")
        if self.on_event is not None:
            self.on_event(job, event)
        if event.type in ("progress", "status", "error"):
            self._notify(job)

    async def _stream_ended(self, job: Job, cloud: CloudAdapter) -> None:
        if job.state.terminal:
            return
        assert job.placement is not None
        status = await cloud.status(job.placement)
        if job.result and job.result.get("ok"):
            await self._succeed(job)
        elif job.error:
            await self._end(job, JobState.FAILED, "runner reported an error")
        elif status.oom_killed or status.exit_code == 137:
            await self._fail(job, ErrorKind.OOM, "the job ran out of memory and was killed",
                             "Lower batch_size or max_length, use the qlora tuner, or pick a bigger GPU.")
        else:
            await self._fail(job, ErrorKind.INTERNAL,
                             f"the job stopped without a result (exit code {status.exit_code}) {status.detail}".strip(),
                             "See `hammer logs JOB` for its last lines.")

    # -- ending ----------------------------------------------------------------------------------
    async def _succeed(self, job: Job) -> None:
        async with self._lock(job.id):
            if job.state.terminal:
                return
            await self.store.transition(job, JobState.UPLOADING, "collecting artifacts")
        self._notify(job)
        await self._end(job, JobState.SUCCEEDED, "runner reported success")

    async def _fail(self, job: Job, kind: ErrorKind, message: str, hint: str) -> None:
        job.error = {"kind": kind.value, "message": message, "hint": hint}
        await self._end(job, JobState.FAILED, message)

    async def time_out(self, job: Job, message: str, hint: str) -> None:
        job.error = {"kind": ErrorKind.TIMEOUT.value, "message": message, "hint": hint}
        if job.placement is not None and job.placement.cloud in self.clouds:
            try:
                await self.clouds[job.placement.cloud].cancel(job.placement)
            except Exception as exc:
                log.error("job %s: stopping after timeout failed: %s", job.id, exc, extra={"job_id": job.id})
        task = self._tasks.pop(job.id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        await self._end(job, JobState.TIMED_OUT, message)

    async def _end(self, job: Job, state: JobState, reason: str) -> None:
        async with self._lock(job.id):
            if job.state.terminal:
                return
            if state == JobState.FAILED and job.error and self.hints is not None:
                extra = self.hints(job)
                if extra:
                    job.error["hint"] = extra
            image = await self._collect(job)
            await self.store.transition(job, state, reason)
        log.info("job %s %s: %s", job.id, state.value, reason, extra={"job_id": job.id, "state": state.value})
        await self._finalize(job, image)

    async def _collect(self, job: Job) -> Path | None:
        """Copy the job's artifacts into the artifact store; links go into job.result."""
        links: dict[str, str] = {}
        image: Path | None = None
        cloud = self.clouds.get(job.placement.cloud) if job.placement else None
        workdir = cloud.collect(job.placement) if cloud and job.placement else None
        for art in job.artifacts:
            if art.get("uri"):
                links[str(art["name"])] = str(art["uri"])
            if workdir is None or self.artifacts is None or not art.get("path"):
                continue
            path = workdir / str(art["path"])
            if not path.exists() or not _inside(path, workdir):
                continue
            key = f"jobs/{job.id}/{art['name'] if path.is_dir() else path.name}"
            try:
                await self.artifacts.put(path, key)
                links[str(art["name"])] = await self.artifacts.url(key)
            except Exception as exc:
                log.error("job %s: storing %s failed: %s", job.id, art["name"], exc, extra={"job_id": job.id})
        if workdir is not None and (workdir / "loss_curve.png").is_file():
            image = workdir / "loss_curve.png"
        job.result = {**(job.result or {}), "links": links}
        return image

    async def _finalize(self, job: Job, image: Path | None = None) -> None:
        """The event archive, the final progress state and the report; then clean up."""
        if self.artifacts is not None:
            await self._archive(job)
        links = dict((job.result or {}).get("links", {}))
        final = render.progress_message(job, time.time())
        report = render.report_message(job, {k: v for k, v in links.items() if k != "loss_curve"}, image)
        await self.notifier.finish(job, final, report)
        cloud = self.clouds.get(job.placement.cloud) if job.placement else None
        if cloud is not None and job.placement is not None:
            try:
                await cloud.cleanup(job.placement)
            except Exception as exc:
                log.error("job %s: cleanup failed: %s", job.id, exc, extra={"job_id": job.id})
        self._tasks.pop(job.id, None)

    async def _archive(self, job: Job) -> None:
        assert self.artifacts is not None
        events = await self.store.events(job.id)
        records: list[dict[str, Any]] = [{"type": "job", "spec": job.spec.to_dict(), "state": job.state.value,
                                          "transitions": await self.store.transitions(job.id)}]
        records += [{"seq": e.seq, "ts": e.ts, "type": e.type, **e.data} for e in events]
        with tempfile.TemporaryDirectory() as tmp:
            path = logs.write_archive(Path(tmp) / f"{job.id}.jsonl.gz", records)
            try:
                await self.artifacts.put(path, logs.archive_key(job.id, job.created_at))
            except Exception as exc:
                log.error("job %s: archiving the log failed: %s", job.id, exc, extra={"job_id": job.id})

    # -- watchdogs ------------------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watchdog_interval_s)
            try:
                await self.check_watchdogs(time.time())
            except Exception:
                log.exception("watchdog pass failed")

    async def check_watchdogs(self, now: float) -> None:
        for job in list(self.jobs.values()):
            if not job.state.active or job.state == JobState.QUEUED:
                continue
            limits = job.spec.limits
            started = job.started_at or job.created_at
            if now - started > limits.max_runtime_s:
                limit = render.duration(limits.max_runtime_s)
                await self.time_out(job, f"the job ran longer than its limit of {limit}",
                                    "Train for fewer epochs or steps, or ask an admin to raise jobs.max_runtime.")
            elif job.state == JobState.RUNNING and now - (job.last_progress_at or started) > limits.idle_timeout_s:
                await self.time_out(job, f"no progress for {render.duration(limits.idle_timeout_s)}",
                                    "The job may be stuck (a hung download, a deadlock); run it again, "
                                    "or ask an admin to raise jobs.idle_timeout.")

    def _notify(self, job: Job) -> None:
        if not job.state.terminal:
            self.notifier.update(job, render.progress_message(job, time.time()))


def _apply(job: Job, event: SandboxEvent) -> None:
    """Fold an event into the job's view (done before the event is persisted with it)."""
    data = event.data
    if event.type == "progress":
        job.progress.update({k: v for k, v in data.items() if v is not None})
        job.last_progress_at = time.time()
        if isinstance(data.get("loss"), int | float):
            job.loss_history.append(float(data["loss"]))
            del job.loss_history[:-200]
    elif event.type == "status":
        job.progress["phase"] = data.get("phase")
        job.last_progress_at = time.time()
    elif event.type == "sample":
        job.samples.append({"prompt": data.get("prompt"), "response": data.get("response")})
    elif event.type == "artifact":
        job.artifacts.append(dict(data))
    elif event.type == "error":
        job.error = {"kind": data.get("kind", "internal"), "message": data.get("message", ""),
                     "hint": data.get("hint", "")}
    elif event.type == "result":
        job.result = dict(data)
    elif event.type == "metric":
        job.progress.setdefault("metrics", {}).update({k: v for k, v in data.items() if k != "step"})


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False

