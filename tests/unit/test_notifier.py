"""Progress coalescing: a flood of events never edits faster than the adapter allows,
and the final state always reaches the chat."""

from __future__ import annotations

import asyncio
import time

from gateway import messages
from gateway.jobs import ProgressNotifier
from gateway.model import (
    Actor,
    ChatMessage,
    Conversation,
    Job,
    JobSpec,
    JobState,
    MessageRef,
    OutboundMessage,
    RateLimits,
)


class RecordingAdapter:
    name = "rec"

    def __init__(self, interval: float) -> None:
        self.rate_limits = RateLimits(min_edit_interval_s=interval)
        self.edits: list[tuple[float, OutboundMessage]] = []
        self.sent: list[OutboundMessage] = []

    async def edit(self, ref: MessageRef, msg: OutboundMessage) -> None:
        await asyncio.sleep(0.001)  # a network round trip
        self.edits.append((time.monotonic(), msg))

    async def send(self, conversation: Conversation, msg: OutboundMessage) -> MessageRef:
        self.sent.append(msg)
        return MessageRef("rec", conversation, "report")


def make_job() -> Job:
    spec = JobSpec(id="j1", task="sft", model="demo", datasets=("demo",), requester=Actor("rec", "u"))
    job = Job(spec=spec, state=JobState.RUNNING, created_at=time.time(), updated_at=time.time(), started_at=time.time())
    job.progress_ref = MessageRef("rec", Conversation("rec", "c"), "m1")
    return job


async def test_a_thousand_events_in_a_second_are_coalesced_to_the_rate_limit() -> None:
    adapter = RecordingAdapter(interval=0.2)
    notifier = ProgressNotifier({"rec": adapter})
    job = make_job()
    start = time.monotonic()
    for step in range(1, 1001):
        job.progress.update(step=step, max_steps=1000, loss=1.0 / step)
        job.loss_history.append(1.0 / step)
        notifier.update(job, messages.progress_message(job, time.time()))
        if step % 10 == 0:
            await asyncio.sleep(0.01)  # ~1,000 events over ~1 s
    elapsed = time.monotonic() - start
    await notifier.flush(job.id, timeout=5)
    allowed = int(elapsed / 0.2) + 2  # one edit per interval, plus the first and the final one
    assert 1 <= len(adapter.edits) <= allowed, (len(adapter.edits), elapsed)
    gaps = [b[0] - a[0] for a, b in zip(adapter.edits, adapter.edits[1:], strict=False)]
    assert all(g >= 0.2 - 0.01 for g in gaps), gaps
    assert dict(adapter.edits[-1][1].fields)["Step"] == "1000/1000"  # the newest state won


async def test_final_state_and_report_are_always_delivered() -> None:
    adapter = RecordingAdapter(interval=10.0)  # a very strict platform
    notifier = ProgressNotifier({"rec": adapter})
    job = make_job()
    notifier.update(job, messages.progress_message(job, time.time()))
    await asyncio.sleep(0.05)
    job.progress.update(step=5, max_steps=5)
    job.state = JobState.SUCCEEDED
    final = messages.progress_message(job, time.time())
    notifier.clock = lambda: time.monotonic() + 10.0  # the next slot opens
    await notifier.finish(job, {"adapter": "http://127.0.0.1:1/artifacts/jobs/j1/adapter/"})
    assert adapter.edits[-1][1] == final and adapter.edits[-1][1].buttons == ()
    assert [m.title for m in adapter.sent] == ["Job j1 finished"]  # the notifier renders the report itself
    assert ("Adapter", "http://127.0.0.1:1/artifacts/jobs/j1/adapter/") in adapter.sent[0].fields


async def test_open_posts_the_first_progress_message_as_the_answer() -> None:
    class Replying(RecordingAdapter):
        async def reply(self, message: ChatMessage, msg: OutboundMessage) -> MessageRef:
            self.sent.append(msg)
            return MessageRef("rec", message.conversation.in_thread("t1"), "p1")

    adapter = Replying(interval=0.01)
    notifier = ProgressNotifier({"rec": adapter})
    job = make_job()
    job.progress_ref = None
    origin = ChatMessage(Actor("rec", "u"), Conversation("rec", "c"), ".finetune demo-lora demo", message_id="m0")
    ref = await notifier.open(job, origin)
    assert ref is not None and job.progress_ref == ref and ref.conversation.thread == "t1"
    assert adapter.sent[0].title.startswith("Job j1") and adapter.sent[0].buttons[0].action_id == "cancel"
    job.progress.update(step=1, max_steps=2)
    notifier.update(job)  # later edits go to the same message
    await notifier.flush(job.id, timeout=5)
    assert dict(adapter.edits[-1][1].fields)["Step"] == "1/2"


async def test_a_failing_edit_is_retried_with_the_newest_state() -> None:
    adapter = RecordingAdapter(interval=0.01)
    calls = {"n": 0}
    real_edit = adapter.edit

    async def flaky(ref: MessageRef, msg: OutboundMessage) -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("429 or network")
        await real_edit(ref, msg)

    adapter.edit = flaky  # type: ignore[method-assign]
    notifier = ProgressNotifier({"rec": adapter})
    job = make_job()
    job.progress.update(step=7, max_steps=10)
    notifier.update(job, messages.progress_message(job, time.time()))
    await notifier.flush(job.id, timeout=5)
    assert dict(adapter.edits[-1][1].fields)["Step"] == "7/10"


def test_sparkline_tracks_the_loss() -> None:
    assert messages.sparkline([3.0, 2.0, 1.0]) == "█▅▁"
    assert messages.sparkline([]) == ""
    assert len(messages.sparkline([float(i) for i in range(100)], width=16)) == 16
