"""The Orchestrator: drives each job through its states on a cloud adapter.

Order of work for every job: persist, then act. A transition is stored before anyone is
told; an event is stored (with the job's updated view, in one transaction) before the
progress message changes. On start the orchestrator re-attaches to every job that was
provisioning, running or uploading and resumes its event stream after the last stored
sequence number, so a gateway restart loses nothing and launches nothing twice.

Outputs are the orchestrator's business, not the cloud's: when a job ends, every
artifact it announced is put in the ArtifactStore under `jobs/<job_id>/<name>` (never
through a symbolic link), its key recorded on the job, and the chat gets links from the
store. A later job names those keys in `JobSpec.inputs`, on whichever cloud it runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway import logs, safe_copy
from gateway.contracts import ArtifactStore, CloudAdapter
from gateway.jobs.notifier import ProgressNotifier
from gateway.messages import duration
from gateway.model import ChatMessage, ErrorKind, Job, JobSpec, JobState, Placement, SandboxEvent
from gateway.store import Store

log = logging.getLogger("hammer.jobs")

#: A job is in one of these when a gateway restart finds it mid-flight.
IN_FLIGHT = (JobState.PROVISIONING, JobState.RUNNING, JobState.UPLOADING)


class Orchestrator:
    def __init__(self, store: Store, clouds: Mapping[str, CloudAdapter], notifier: ProgressNotifier,
                 *, artifacts: ArtifactStore | None = None, on_event: Callable[[Job, SandboxEvent], None] | None = None,
                 default_cloud: str = "docker", watchdog_interval_s: float = 5.0,
                 hints: Callable[[Job], str | None] | None = None, link_ttl_s: float = 7 * 86400) -> None:
        self.store, self.clouds, self.notifier = store, clouds, notifier
        self.artifacts = artifacts
        self.link_ttl_s = link_ttl_s
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
        between launch and bookkeeping, a cleanup that failed), as each adapter's
        `placements()` lists them."""
        for cloud in self.clouds.values():
            try:
                leftovers = await cloud.placements()
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
                     origin: ChatMessage | None = None) -> Job:
        """Persist a new job, open its progress message, and start it (unless it waits for
        approval). The message's reference is stored before the job launches, so a restart
        keeps editing the same message."""
        if not spec.cloud:
            spec = dataclasses.replace(spec, cloud=self.default_cloud)
        if spec.cloud not in self.clouds:
            raise ValueError(f"cloud {spec.cloud!r} is not enabled (enabled: {', '.join(self.clouds) or 'none'})")
        state = JobState.PENDING_APPROVAL if pending_approval else JobState.QUEUED
        job = await self.store.create_job(spec, state)
        self.jobs[job.id] = job
        if await self.notifier.open(job, origin) is not None:
            await self.store.save(job)
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
        # Redacted at ingestion: the job's view, the chat, the store and plugins see no secret.
        event = dataclasses.replace(event, data=logs.redact_obj(dict(event.data)))
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
        job.error = {"kind": kind.value, "message": logs.redact(message), "hint": logs.redact(hint)}
        await self._end(job, JobState.FAILED, message)

    async def time_out(self, job: Job, message: str, hint: str, *, kind: ErrorKind = ErrorKind.TIMEOUT,
                       state: JobState = JobState.TIMED_OUT) -> None:
        """Stop a job a watchdog caught (time, idleness, cost) and end it in `state`."""
        job.error = {"kind": kind.value, "message": message, "hint": hint}
        if job.placement is not None and job.placement.cloud in self.clouds:
            try:
                await self.clouds[job.placement.cloud].cancel(job.placement)
            except Exception as exc:
                log.error("job %s: stopping after timeout failed: %s", job.id, exc, extra={"job_id": job.id})
        task = self._tasks.pop(job.id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        await self._end(job, state, message)

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
        """Put the job's artifacts into the artifact store (keys on `job.artifacts`, links
        in `job.result["links"]`); returns a local copy of the loss curve, if any."""
        links: dict[str, str] = {}
        cloud = self.clouds.get(job.placement.cloud) if job.placement else None
        workdir: Path | None = None
        if cloud is not None and job.placement is not None:
            try:
                workdir = await cloud.collect(job.placement)
            except Exception as exc:
                log.error("job %s: finding its outputs on %s failed: %s", job.id, cloud.name, exc,
                          extra={"job_id": job.id})
        skipped: list[str] = []
        for art in job.artifacts:
            name = str(art.get("name", ""))
            if art.get("uri"):
                links[name] = str(art["uri"])
            if self.artifacts is None or not name:
                continue
            if not art.get("key") and workdir is not None and art.get("path"):
                key = await self._store_artifact(job, workdir, name, str(art["path"]), skipped)
                if key is not None:
                    art["key"] = key
            if art.get("key"):
                try:
                    links[name] = await self.artifacts.url(str(art["key"]), self.link_ttl_s)
                except Exception as exc:
                    log.error("job %s: no link for %s: %s", job.id, name, exc, extra={"job_id": job.id})
        if skipped:
            await self._note(job, "hammer: left out of the artifacts (symbolic links and special files are "
                                  "never copied): " + ", ".join(sorted(set(skipped))[:20]))
        image: Path | None = None
        keys = job.artifact_keys()
        if self.artifacts is not None and "loss_curve" in keys:
            try:
                stored = await self.artifacts.get(keys["loss_curve"])
                image = stored if safe_copy.is_regular_file(stored) else None
            except (OSError, ValueError) as exc:
                log.warning("job %s: loss curve unavailable: %s", job.id, exc, extra={"job_id": job.id})
        job.result = {**(job.result or {}), "links": links}
        return image

    async def _store_artifact(self, job: Job, workdir: Path, name: str, rel: str, skipped: list[str]) -> str | None:
        """Copy one artifact (file or directory) from the workspace into the store."""
        assert self.artifacts is not None
        path = workdir / rel
        if not safe_copy.inside(path, workdir):  # a link on the way, or `..`
            skipped.append(rel)
            return None
        found = safe_copy.kind(path)  # lstat: a link, a device or nothing is not stored
        if found is None:
            if await asyncio.to_thread(os.path.lexists, path):  # a link or a special file: say so in the log
                skipped.append(rel)
            return None
        key = f"jobs/{job.id}/{name if found == 'dir' else path.name}"
        try:
            result = await self.artifacts.put(path, key)
        except Exception as exc:
            log.error("job %s: storing %s failed: %s", job.id, name, exc, extra={"job_id": job.id})
            return None
        skipped += [f"{rel}/{p}" if found == "dir" else rel for p in result.skipped_links]
        return None if result.skipped_links and found == "file" else key

    async def _note(self, job: Job, line: str) -> None:
        """A line of hammer's own in the job's log (after the runner's last one)."""
        event = SandboxEvent(job.last_seq + 1, "log", {"stream": "hammer", "line": line})
        if await self.store.add_event(job, event, view_changed=False) and self.on_event is not None:
            self.on_event(job, event)

    async def _finalize(self, job: Job, image: Path | None = None) -> None:
        """Release the machine first (nothing stays billed while chat messages go out), then
        the event archive, the final progress state and the report."""
        cloud = self.clouds.get(job.placement.cloud) if job.placement else None
        if cloud is not None and job.placement is not None:
            try:
                await cloud.cleanup(job.placement)
            except Exception as exc:
                log.error("job %s: cleanup failed: %s", job.id, exc, extra={"job_id": job.id})
        if self.artifacts is not None:
            await self._archive(job)
        links = dict((job.result or {}).get("links", {}))
        await self.notifier.finish(job, {k: v for k, v in links.items() if k != "loss_curve"}, image)
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
            cost = job.cost_usd(now)
            if limits.max_cost_usd is not None and cost > limits.max_cost_usd:  # money first
                await self.time_out(job, f"the job cost ${cost:.2f}, over its limit of ${limits.max_cost_usd:.2f} "
                                    f"(${job.price_per_hour:.2f}/h for {duration(job.running_s(now))})",
                                    "Train fewer steps, pick a cheaper machine, or ask an admin to raise "
                                    "jobs.max_cost_usd.", kind=ErrorKind.COST, state=JobState.FAILED)
            elif now - started > limits.max_runtime_s:
                limit = duration(limits.max_runtime_s)
                await self.time_out(job, f"the job ran longer than its limit of {limit}",
                                    "Train for fewer epochs or steps, or ask an admin to raise jobs.max_runtime.")
            elif job.state == JobState.RUNNING and now - (job.last_progress_at or started) > limits.idle_timeout_s:
                await self.time_out(job, f"no progress for {duration(limits.idle_timeout_s)}",
                                    "The job may be stuck (a hung download, a deadlock); run it again, "
                                    "or ask an admin to raise jobs.idle_timeout.")

    def _notify(self, job: Job) -> None:
        if not job.state.terminal:
            self.notifier.update(job)


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
