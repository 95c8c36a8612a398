"""Finding what a job produced: the adapter, the logs, result files, the report.

Paths in `artifact` events are relative to the workspace (the gateway knows where the
workspace lives and hands the files to the artifact store). ms-swift puts a training run
in `<output_dir>/v<N>-<timestamp>/` with one `checkpoint-<step>` per save; the last one
(ms-swift's `last_model_checkpoint`) is the adapter the user gets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sandbox.runner.job import Job

_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
#: Artifact name for the output dir of tasks that are not training.
OUTPUT_NAMES = {"export": "model", "download": "model", "eval": "eval", "infer": "results"}
_NOT_RESULTS = frozenset({"logging.jsonl", "val_dataset.jsonl", "train_dataset.jsonl"})


def last_checkpoint(job: Job, tracker: Any) -> Path | None:
    if not job.is_training:
        return None
    named = tracker.last_checkpoint
    if named:
        path = Path(named) if Path(named).is_absolute() else job.workspace / named
        if path.is_dir():
            return path
    found = [p for p in job.output_dir.glob("v*-*/checkpoint-*") if p.is_dir() and _CHECKPOINT.search(p.name)]
    if not found:
        return None
    return max(found, key=lambda p: (p.parent.stat().st_mtime, int(_CHECKPOINT.search(p.name).group(1))))  # type: ignore[union-attr]


def run_dir(job: Job, checkpoint: Path | None, started: float) -> Path | None:
    if checkpoint is not None:
        return checkpoint.parent
    runs = [p for p in job.output_dir.glob("v*-*") if p.is_dir() and p.stat().st_mtime >= started - 1]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def result_files(job: Job, started: float) -> list[Path]:
    """JSONL results written during the job (swift infer's --result_path, eval outputs)."""
    roots = [job.output_dir]
    for flag in ("--result_path",):
        if flag in job.argv:
            index = job.argv.index(flag)
            if index + 1 < len(job.argv):
                path = Path(job.argv[index + 1])
                return [path if path.is_absolute() else job.workspace / path]
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found += [
                p
                for p in root.rglob("*.jsonl")
                if p.name not in _NOT_RESULTS and p.stat().st_mtime >= started - 1
            ]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def collect(
    job: Job, tracker: Any, checkpoint: Path | None, *, started: float, loss_curve: bool
) -> list[dict[str, str]]:
    """The artifact list, in the order the chat should show it; report.json is always last."""
    found: list[dict[str, str]] = []

    def add(name: str, path: Path) -> None:
        if path.exists() and all(item["name"] != name for item in found):
            found.append({"name": name, "path": job.relative(path)})

    if job.is_training:
        checkpoint = checkpoint or last_checkpoint(job, tracker)
        if checkpoint is not None:
            add("adapter" if (checkpoint / "adapter_config.json").is_file() else "model", checkpoint)
        run = run_dir(job, checkpoint, started)
        if run is not None:
            add("logs", run / "logging.jsonl")
            add("tensorboard", run / "runs")
    else:
        results = [p for p in result_files(job, started) if p.is_file()]
        if results:
            add("results", results[-1])
        name = OUTPUT_NAMES.get(job.command, "output")
        if job.output_dir.is_dir() and any(job.output_dir.iterdir()):
            add(name, job.output_dir)
    if loss_curve:
        add("loss_curve", job.workspace / "loss_curve.png")
    found.append({"name": "report", "path": "report.json"})
    return found
