"""report.json, loss_curve.png and the artifact list a finished job hands to the gateway."""

from __future__ import annotations

import json
from pathlib import Path

from sandbox.runner.artifacts import collect, last_checkpoint
from sandbox.runner.job import Job, flag_values, load_job, parse_prepare
from sandbox.runner.report import build_report, plot_loss_curve, write_report
from sandbox.runner.swift_progress import ProgressTracker

RECORDED = Path(__file__).parent / "data" / "runner_swift_logging.jsonl"


def _job(workspace: Path, *argv: str) -> Job:
    (workspace / "job.json").write_text(json.dumps({"id": "j1", "argv": list(argv), "params": {}}))
    return load_job(workspace / "job.json")


def _tracked() -> ProgressTracker:
    tracker = ProgressTracker()
    for line in RECORDED.read_text().splitlines():
        tracker.feed(json.loads(line))
    return tracker


def test_loss_curve_is_a_png_with_the_steps(tmp_path: Path) -> None:
    path = tmp_path / "loss_curve.png"
    tracker = _tracked()
    assert plot_loss_curve(path, tracker.losses, tracker.evals) is True
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert plot_loss_curve(tmp_path / "none.png", []) is False
    assert not (tmp_path / "none.png").exists()


def test_report_carries_loss_steps_samples_and_swift_final_line(tmp_path: Path) -> None:
    tracker = _tracked()
    report = build_report(
        job_id="j1",
        task="sft",
        ok=True,
        duration_s=12.345,
        tracker=tracker,
        samples=[{"prompt": "Hi", "response": "Hello"}],
        artifacts=[{"name": "report", "path": "report.json"}],
    )
    write_report(tmp_path / "report.json", report)
    loaded = json.loads((tmp_path / "report.json").read_text())
    assert loaded["final_loss"] == 6.84377241 and loaded["steps"] == 6 and loaded["max_steps"] == 6
    assert loaded["duration_s"] == 12.35 and loaded["train_loss"] == 6.91205692
    assert loaded["samples"] == [{"prompt": "Hi", "response": "Hello"}]
    assert loaded["swift_final"]["last_model_checkpoint"].endswith("checkpoint-6")
    assert len(loaded["loss_history"]) == 6 and loaded["evals"][0]["eval_loss"] == 6.83265686


def test_artifacts_of_a_training_run(tmp_path: Path) -> None:
    job = _job(tmp_path, "swift", "sft", "--output_dir", "output")
    run = tmp_path / "output" / "v0-20260101-000000"
    for step in (5, 10):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
    (run / "logging.jsonl").write_text("{}\n")
    (tmp_path / "loss_curve.png").write_bytes(b"png")
    tracker = ProgressTracker()  # no final line: the newest checkpoint is found on disk
    checkpoint = last_checkpoint(job, tracker)
    assert checkpoint == run / "checkpoint-10"
    found = collect(job, tracker, checkpoint, started=0.0, loss_curve=True)
    assert found == [
        {"name": "adapter", "path": "output/v0-20260101-000000/checkpoint-10"},
        {"name": "logs", "path": "output/v0-20260101-000000/logging.jsonl"},
        {"name": "loss_curve", "path": "loss_curve.png"},
        {"name": "report", "path": "report.json"},
    ]


def test_artifacts_of_an_export(tmp_path: Path) -> None:
    job = _job(tmp_path, "swift", "export", "--adapters", "a", "--merge_lora", "true", "--output_dir", "/x")
    assert not job.is_training and job.output_dir == Path("/x")
    job = _job(tmp_path, "swift", "export", "--merge_lora", "true", "--output_dir", "merged")
    (tmp_path / "merged").mkdir()
    (tmp_path / "merged" / "config.json").write_text("{}")
    found = collect(job, ProgressTracker(), None, started=0.0, loss_curve=False)
    assert found == [{"name": "model", "path": "merged"}, {"name": "report", "path": "report.json"}]


def test_argv_helpers(tmp_path: Path) -> None:
    argv = ["swift", "rlhf", "--rlhf_type", "kto", "--dataset", "a.jsonl", "b#100", "--output_dir=out"]
    assert flag_values(argv, "--dataset") == ["a.jsonl", "b#100"]
    assert flag_values(argv, "--output_dir") == ["out"]
    job = _job(tmp_path, *argv)
    assert job.dataset_kind == "kto" and job.is_training and job.output_dir == tmp_path / "out"
    assert job.local_datasets() == []  # a.jsonl does not exist, b is a hub id
    (tmp_path / "a.jsonl").write_text("{}\n")
    assert job.local_datasets() == [tmp_path / "a.jsonl"]
    assert _job(tmp_path, "swift", "pt").dataset_kind == "pt"
    assert _job(tmp_path, "swift", "sft").output_dir == tmp_path / "output"
    assert parse_prepare("demo_model:/cache/models/demo") == ("demo_model", Path("/cache/models/demo"))
    for bad in ("demo_model", "rm:/x", "demo_dataset:relative/path"):
        try:
            parse_prepare(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
