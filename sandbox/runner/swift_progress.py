"""ms-swift's `logging.jsonl` -> `progress` and `metric` events.

ms-swift appends one JSON dict per logging step to `<output_dir>/v<N>-<timestamp>/logging.jsonl`:
training dicts (`loss`, `grad_norm`, `learning_rate`, `epoch`, `global_step/max_steps`
"3/6", `elapsed_time`/`remaining_time` like "1m 3s", `memory(GiB)` on GPUs), eval dicts
(`eval_*`), the trainer's summary (`train_runtime`, `train_loss`) and, last, a final
dict with `last_model_checkpoint`. Reading that file (not the tqdm-ridden stdout) gives
the real numbers, in order, exactly once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(value: Any) -> float | None:
    """ "1h 2m 3s" / "45s" / 12.5 -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    match = _DURATION.fullmatch(value.strip())
    if not match or not any(match.groups()):
        return None
    d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return d * 86400 + h * 3600 + m * 60 + s


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _steps(record: dict[str, Any]) -> tuple[int | None, int | None]:
    value = record.get("global_step/max_steps")
    if isinstance(value, str) and "/" in value:
        left, right = value.split("/", 1)
        if left.strip().isdigit() and right.strip().isdigit():
            return int(left), int(right)
    step = record.get("step", record.get("global_step"))
    return (int(step) if isinstance(step, int | float) else None), None


def translate(record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """One logging.jsonl dict -> (event type, fields), or None for bookkeeping lines."""
    step, max_steps = _steps(record)
    timing = {
        "elapsed_s": parse_duration(record.get("elapsed_time")),
        "eta_s": parse_duration(record.get("remaining_time")),
    }
    if "loss" in record and "train_runtime" not in record:
        fields: dict[str, Any] = {
            "step": step,
            "max_steps": max_steps,
            "epoch": _number(record.get("epoch")),
            "loss": _number(record.get("loss")),
            "lr": _number(record.get("learning_rate")),
            "grad_norm": _number(record.get("grad_norm")),
            "memory_gib": _number(record.get("memory(GiB)", record.get("memory_gib"))),
            **timing,
        }
        for extra in ("token_acc", "train_speed(s/it)"):
            if (value := _number(record.get(extra))) is not None:
                fields[extra.replace("(s/it)", "_s_per_it")] = value
        return "progress", fields
    if any(k.startswith("eval_") for k in record) or "train_runtime" in record:
        values = {
            k: v
            for k, v in record.items()
            if (k.startswith(("eval_", "train_")) or k == "total_flos")
            and _number(v) is not None
            and k != "train_speed(s/it)"
        }
        return "metric", {
            "split": "eval" if "train_runtime" not in record else "train",
            "step": step,
            "max_steps": max_steps,
            "epoch": _number(record.get("epoch")),
            **{k: _number(v) for k, v in values.items()},
        }
    return None


def find_logging_files(output_dir: Path, since: float = 0.0) -> list[Path]:
    """The run dirs' logging.jsonl files written since `since`, oldest first."""
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.glob("v*-*/logging.jsonl") if p.stat().st_mtime >= since - 1]
    return sorted(found, key=lambda p: p.stat().st_mtime)


class LogTail:
    """Follows one JSONL file that another process appends to; yields complete lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


class ProgressTracker:
    """Collects what the report needs while events are emitted: loss per step, evals, the end."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []
        self.evals: list[dict[str, Any]] = []
        self.train_summary: dict[str, Any] = {}
        self.final: dict[str, Any] = {}
        self.last_progress: dict[str, Any] = {}

    def feed(self, record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if "last_model_checkpoint" in record:
            self.final = {k: v for k, v in record.items() if k != "log_history"}
            return None
        event = translate(record)
        if event is None:
            return None
        kind, fields = event
        if kind == "progress":
            self.last_progress = fields
            if fields["loss"] is not None and fields["step"] is not None:
                self.losses.append((int(fields["step"]), float(fields["loss"])))
        elif fields.get("split") == "train":
            self.train_summary = fields
        else:
            self.evals.append(fields)
        return event

    @property
    def last_checkpoint(self) -> str | None:
        value = self.final.get("last_model_checkpoint")
        return value if isinstance(value, str) and value else None
