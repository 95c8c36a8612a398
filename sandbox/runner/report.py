"""report.json and loss_curve.png: what the chat shows when a job ends.

The report is plain JSON the gateway can render without ms-swift (final loss, steps,
duration, samples, artifacts) and keeps ms-swift's own final logging line for whoever
needs more. The loss curve is drawn with matplotlib's Agg backend (no display, no font
cache outside MPLCONFIGDIR).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_report(
    *,
    job_id: str,
    task: str,
    ok: bool,
    duration_s: float,
    tracker: Any,
    samples: Sequence[dict[str, str]],
    artifacts: Sequence[dict[str, str]],
    environment: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    losses = list(tracker.losses)
    last = tracker.last_progress
    summary = tracker.train_summary
    return {
        "job_id": job_id,
        "task": task,
        "ok": ok,
        "final_loss": losses[-1][1] if losses else None,
        "train_loss": summary.get("train_loss"),
        "steps": last.get("step"),
        "max_steps": last.get("max_steps"),
        "epoch": last.get("epoch"),
        "duration_s": round(duration_s, 2),
        "train_runtime_s": summary.get("train_runtime"),
        "loss_history": [[step, loss] for step, loss in losses],
        "evals": list(tracker.evals),
        "samples": list(samples),
        "artifacts": list(artifacts),
        "last_checkpoint": tracker.last_checkpoint,
        "swift_final": dict(tracker.final),
        "environment": environment or {},
        "error": error,
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def smooth(values: Sequence[float], weight: float = 0.8) -> list[float]:
    """TensorBoard-style exponential moving average, debiased so the start is not pulled to 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def plot_loss_curve(
    path: Path,
    losses: Sequence[tuple[int, float]],
    evals: Sequence[dict[str, Any]] = (),
    title: str = "training loss",
) -> bool:
    """Draw loss per step (and eval loss points); False when there is nothing to draw."""
    points = [(s, v) for s, v in losses if v is not None]
    if not points:
        return False
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/mpl")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    try:
        steps, values = zip(*points, strict=True)
        noisy = len(points) >= 10
        ax.plot(
            steps,
            values,
            marker="o" if len(points) <= 30 else None,
            markersize=3,
            linewidth=1.0 if noisy else 1.5,
            alpha=0.35 if noisy else 1.0,
            label="train loss",
        )
        if noisy:
            # Per-batch loss is noisy on small batches; the trend is what people read.
            ax.plot(steps, smooth(values), linewidth=2.0, color="C0", label="smoothed")
        eval_points = [
            (e.get("step"), e.get("eval_loss"))
            for e in evals
            if e.get("step") is not None and e.get("eval_loss") is not None
        ]
        if eval_points:
            es, ev = zip(*eval_points, strict=True)
            ax.plot(es, ev, marker="s", linestyle="--", linewidth=1, label="eval loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right")
        fig.tight_layout()
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return True
