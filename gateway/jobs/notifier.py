"""ProgressNotifier: one progress message per job, edited in place, latest state wins.

Events can arrive far faster than a chat platform accepts edits (a thousand a second
from a chatty trainer; Discord allows about five edits per five seconds). The notifier
keeps only the newest rendering per job and edits at most once per the adapter's
`min_edit_interval_s`; whatever arrives in between is coalesced. The final state is
always delivered: `finish()` waits for the last edit and then posts the report.

The notifier owns the message from first to last: `open()` posts it (as the answer to
the command, or into `JobSpec.reply_to`), `update()` edits it, `finish()` closes it and
posts the report. It renders every one of them itself (gateway/messages.py); the
orchestrator only hands it jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway import messages
from gateway.contracts import ChatAdapter
from gateway.model import ChatMessage, Job, MessageRef, OutboundMessage

log = logging.getLogger("hammer.notify")

MAX_EDIT_ATTEMPTS = 5


@dataclass
class _Slot:
    ref: MessageRef
    latest: OutboundMessage | None = None
    shown: OutboundMessage | None = None
    last_edit: float = 0.0
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    edits: int = 0


class ProgressNotifier:
    def __init__(self, adapters: Mapping[str, ChatAdapter], clock: Callable[[], float] = time.monotonic,
                 min_interval_s: float = 0.0) -> None:
        self.adapters = adapters
        self.clock = clock
        self.min_interval_s = min_interval_s
        self._slots: dict[str, _Slot] = {}

    def _adapter(self, ref: MessageRef) -> ChatAdapter | None:
        return self.adapters.get(ref.platform)

    def edits(self, job_id: str) -> int:
        slot = self._slots.get(job_id)
        return slot.edits if slot else 0

    async def open(self, job: Job, origin: ChatMessage | None = None) -> MessageRef | None:
        """Post the job's progress message: the answer to `origin` (the command), else a new
        message in `job.spec.reply_to`. Sets `job.progress_ref` (the caller persists it);
        None when there is nowhere to post (an API job) or the post failed (logged)."""
        conversation = origin.conversation if origin is not None else job.spec.reply_to
        adapter = self.adapters.get(conversation.platform) if conversation is not None else None
        if adapter is None or conversation is None:
            return None
        msg = messages.progress_message(job, time.time())
        try:
            ref = await (adapter.reply(origin, msg) if origin is not None else adapter.send(conversation, msg))
        except Exception as exc:
            log.error("job %s: posting the progress message failed: %s", job.id, exc, extra={"job_id": job.id})
            return None
        job.progress_ref = ref
        self._slots[job.id] = _Slot(ref, latest=msg, shown=msg, last_edit=self.clock())
        return ref

    def update(self, job: Job, msg: OutboundMessage | None = None) -> None:
        """Record the newest rendering; an edit follows as soon as the rate limit allows."""
        if job.progress_ref is None or self._adapter(job.progress_ref) is None:
            return
        msg = msg or messages.progress_message(job, time.time())
        slot = self._slots.get(job.id)
        if slot is None or slot.ref != job.progress_ref:
            slot = self._slots[job.id] = _Slot(job.progress_ref)
        slot.latest = msg
        slot.wake.set()
        if slot.task is None or slot.task.done():
            slot.task = asyncio.create_task(self._pump(job.id, slot), name=f"notify-{job.id}")

    async def _pump(self, job_id: str, slot: _Slot) -> None:
        adapter = self._adapter(slot.ref)
        assert adapter is not None
        interval = max(adapter.rate_limits.min_edit_interval_s, self.min_interval_s)
        failures = 0
        while slot.latest is not None and slot.latest != slot.shown:
            wait = slot.last_edit + interval - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            msg = slot.latest
            slot.wake.clear()
            try:
                await adapter.edit(slot.ref, msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the newest state; try again a little later
                failures += 1
                log.warning("editing progress of job %s failed (%s), attempt %d", job_id, exc, failures,
                            extra={"job_id": job_id, "adapter": slot.ref.platform})
                slot.last_edit = self.clock()
                if failures >= MAX_EDIT_ATTEMPTS:
                    return
                continue
            failures = 0
            slot.shown, slot.last_edit = msg, self.clock()
            slot.edits += 1

    async def flush(self, job_id: str, timeout: float = 60.0) -> None:
        """Wait until the newest rendering of `job_id` is on screen (or timeout)."""
        slot = self._slots.get(job_id)
        if slot is None:
            return
        deadline = self.clock() + timeout
        while slot.task is not None and not slot.task.done() and self.clock() < deadline:
            await asyncio.wait({slot.task}, timeout=max(0.05, deadline - self.clock()))
        if slot.latest is not None and slot.latest != slot.shown and self.clock() < deadline:
            slot.task = asyncio.create_task(self._pump(job_id, slot))
            await asyncio.wait({slot.task}, timeout=max(0.05, deadline - self.clock()))

    async def finish(self, job: Job, links: Mapping[str, str], image: Path | None = None) -> None:
        """Deliver the final state of the progress message, then the report in the thread."""
        if job.progress_ref is None:
            return
        adapter = self._adapter(job.progress_ref)
        if adapter is None:
            log.warning("job %s: chat adapter %s is not running; report not delivered",
                        job.id, job.progress_ref.platform, extra={"job_id": job.id})
            return
        self.update(job, messages.progress_message(job, time.time()))
        await self.flush(job.id)
        report = messages.report_message(job, dict(links), image)
        for attempt in range(MAX_EDIT_ATTEMPTS):
            try:
                await adapter.send(job.progress_ref.conversation, report)
                break
            except Exception as exc:
                log.warning("job %s: sending the report failed (%s)", job.id, exc, extra={"job_id": job.id})
                await asyncio.sleep(min(30.0, 0.5 * 2 ** attempt))
        self._slots.pop(job.id, None)

    async def close(self) -> None:
        tasks = [s.task for s in self._slots.values() if s.task and not s.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
