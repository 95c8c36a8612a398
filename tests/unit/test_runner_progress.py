"""ms-swift's logging.jsonl (recorded from a real CPU run) -> progress and metric events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.runner.swift_progress import (
    LogTail,
    ProgressTracker,
    find_logging_files,
    parse_duration,
    translate,
)

RECORDED = Path(__file__).parent / "data" / "runner_swift_logging.jsonl"


def _records() -> list[dict]:
    return [json.loads(line) for line in RECORDED.read_text().splitlines()]


def test_recorded_run_becomes_six_progress_events_and_two_metrics() -> None:
    tracker = ProgressTracker()
    events = [e for e in (tracker.feed(r) for r in _records()) if e is not None]
    kinds = [kind for kind, _ in events]
    assert kinds == ["progress"] * 6 + ["metric", "metric"]
    first = events[0][1]
    assert first["step"] == 1 and first["max_steps"] == 6
    assert first["loss"] == pytest.approx(6.9733305)
    assert first["lr"] == pytest.approx(0.00093301) and first["grad_norm"] == pytest.approx(0.89174068)
    assert first["epoch"] == pytest.approx(0.44444444)
    assert first["elapsed_s"] == 2.0 and first["eta_s"] == 12.0
    assert first["memory_gib"] is None  # CPU: ms-swift reports no memory
    assert events[6][1]["split"] == "eval" and events[6][1]["eval_loss"] == pytest.approx(6.83265686)
    assert events[7][1]["split"] == "train" and events[7][1]["train_loss"] == pytest.approx(6.91205692)
    assert [s for s, _ in tracker.losses] == [1, 2, 3, 4, 5, 6]
    assert tracker.last_checkpoint and tracker.last_checkpoint.endswith("checkpoint-6")
    assert "log_history" not in tracker.final


def test_gpu_memory_is_read_from_swift_key() -> None:
    kind, fields = translate(
        {
            "loss": 1.0,
            "memory(GiB)": 13.5,
            "global_step/max_steps": "10/100",
            "elapsed_time": "1h 2m 3s",
            "remaining_time": "2d 0h 0m 1s",
        }
    )  # type: ignore[misc]
    assert kind == "progress"
    assert fields["memory_gib"] == 13.5 and fields["step"] == 10 and fields["max_steps"] == 100
    assert fields["elapsed_s"] == 3723 and fields["eta_s"] == 172801


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("1m 3s", 63), ("2h 0m 0s", 7200), (12.5, 12.5), ("", None), ("soon", None)],
)
def test_durations(text: object, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_tail_reads_only_complete_lines_as_they_are_appended(tmp_path: Path) -> None:
    path = tmp_path / "v0-1" / "logging.jsonl"
    path.parent.mkdir()
    lines = RECORDED.read_text().splitlines()
    tail = LogTail(path)
    assert tail.read_new() == []
    with open(path, "w") as out:
        out.write(lines[0] + "\n" + lines[1][:20])
        out.flush()
        assert len(tail.read_new()) == 1
        out.write(lines[1][20:] + "\n")
        out.flush()
        second = tail.read_new()
    assert len(second) == 1 and second[0]["loss"] == pytest.approx(6.95487928)
    assert tail.read_new() == []
    assert find_logging_files(tmp_path) == [path]
    assert find_logging_files(tmp_path / "missing") == []
