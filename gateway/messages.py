"""Platform-neutral messages about jobs: progress, reports, errors, lists.

Everything users read about a job is built here as an `OutboundMessage`, so Slack,
Discord and the web chat show the same facts; each adapter only decides the look.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.commands import CommandError
from gateway.model import Button, Job, JobState, OutboundMessage

_BARS = "▁▂▃▄▅▆▇█"
_LEVEL = {JobState.SUCCEEDED: "success", JobState.FAILED: "error", JobState.TIMED_OUT: "error",
          JobState.CANCELLED: "warning", JobState.PENDING_APPROVAL: "warning"}


def sparkline(values: Sequence[float], width: int = 16) -> str:
    """A small text chart of the last `width` values (the loss trend at a glance)."""
    vals = [v for v in values if v == v][-width:]  # drop NaN
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return "".join(_BARS[min(len(_BARS) - 1, int((v - lo) / span * (len(_BARS) - 1) + 0.5))] for v in vals)


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "–"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def describe(job: Job) -> str:
    spec = job.spec
    data = ", ".join(spec.datasets)
    return f"{spec.task} {spec.model}" + (f" on {data}" if data else "")


def progress_message(job: Job, now: float) -> OutboundMessage:
    """The one message per job that is edited in place while it runs."""
    p = job.progress
    fields: list[tuple[str, str]] = [("Phase", job.state.value.replace("_", " "))]
    fraction = None
    if p.get("max_steps"):
        fields.append(("Step", f"{p.get('step', 0)}/{p['max_steps']}"))
        fraction = min(1.0, float(p.get("step", 0)) / float(p["max_steps"]))
    if p.get("epoch") is not None:
        epochs = job.spec.params.get("epochs")
        fields.append(("Epoch", f"{float(p['epoch']):.2f}" + (f"/{epochs}" if epochs else "")))
    if p.get("loss") is not None:
        fields.append(("Loss", f"{float(p['loss']):.4f} {sparkline(job.loss_history)}".rstrip()))
    if p.get("eta_s") is not None and not job.state.terminal:
        fields.append(("ETA", duration(float(p["eta_s"]))))
    if job.started_at:
        fields.append(("Elapsed", duration((job.finished_at or now) - job.started_at)))
    if p.get("memory_gib") is not None:
        fields.append(("Memory", f"{float(p['memory_gib']):.1f} GiB"))
    if job.state == JobState.SUCCEEDED:
        fraction = 1.0
    buttons: tuple[Button, ...] = ()
    if job.state == JobState.PENDING_APPROVAL:
        buttons = (Button("approve", "Approve", job.id, "primary"), Button("deny", "Deny", job.id, "danger"))
    elif not job.state.terminal:
        buttons = (Button("cancel", "Cancel", job.id, "danger"),)
    text = ""
    cost = job.spec.estimated_cost_usd
    if job.state == JobState.PENDING_APPROVAL:
        text = "Waits for a hammer admin's approval" + (f": estimated ${cost:.2f}." if cost is not None else ".")
    elif cost and not job.state.terminal:
        fields.append(("Cost", f"${job.cost_usd(now):.2f} of ~${cost:.2f} estimated"))
    if job.error:
        text = f"{job.error.get('message', '')}\n{job.error.get('hint', '')}".strip()
    who = job.spec.requester.display_name or job.spec.requester.user_id if job.spec.requester else ""
    return OutboundMessage(
        title=f"Job {job.id} · {describe(job)}", text=text, fields=tuple(fields), progress=fraction,
        buttons=buttons, level=_LEVEL.get(job.state, "info"),
        footer=f"requested by {who}" if who else "")


def report_message(job: Job, links: dict[str, str], image: Path | None) -> OutboundMessage:
    """The final answer in the job's thread: outcome, figures, samples, links."""
    result = job.result or {}
    summary = result.get("summary") or {}
    fields: list[tuple[str, str]] = [("Result", job.state.value.replace("_", " "))]
    loss = summary.get("final_loss", job.progress.get("loss"))
    if loss is not None:
        fields.append(("Final loss", f"{float(loss):.4f}"))
    steps = summary.get("steps", job.progress.get("step"))
    if steps is not None:
        fields.append(("Steps", str(steps)))
    if job.started_at:
        fields.append(("Duration", duration((job.finished_at or job.updated_at) - job.started_at)))
    fields += [(name.replace("_", " ").capitalize(), url) for name, url in links.items()]
    lines = []
    if job.error:
        lines.append(f"{job.error.get('kind', 'error')}: {job.error.get('message', '')}")
        if job.error.get("hint"):
            lines.append(f"What to do: {job.error['hint']}")
    for s in job.samples[:3]:
        lines.append(f"Prompt: {s.get('prompt', '')}\nAnswer: {s.get('response', '')}")
    verb = {JobState.SUCCEEDED: "finished", JobState.FAILED: "failed", JobState.CANCELLED: "was cancelled",
            JobState.TIMED_OUT: "timed out"}.get(job.state, job.state.value)
    return OutboundMessage(
        title=f"Job {job.id} {verb}", text="\n\n".join(lines), fields=tuple(fields),
        image=image, image_title="Loss curve" if image else "", level=_LEVEL.get(job.state, "info"))


def error_message(err: CommandError) -> OutboundMessage:
    return OutboundMessage(title=err.message, text=err.hint, level="error", footer=f"error: {err.code}")


def text_message(text: str, title: str = "", level: str = "info") -> OutboundMessage:
    return OutboundMessage(title=title, text=text, level=level)


def job_list(jobs: Sequence[Job], now: float) -> OutboundMessage:
    if not jobs:
        return text_message("No jobs yet. Start one with .finetune demo-lora demo", "Jobs")
    lines = []
    for j in jobs:
        step = f" step {j.progress.get('step')}/{j.progress.get('max_steps')}" if j.progress.get("max_steps") else ""
        lines.append(f"{j.id}  {j.state.value:<16} {describe(j)}{step}  ({duration(now - j.created_at)} ago)")
    return OutboundMessage(title="Jobs", text="\n".join(lines))
