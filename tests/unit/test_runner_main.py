"""The runner's whole flow with a stand-in `swift` program (fast, no ms-swift needed).

The stand-in writes a logging.jsonl recorded from a real ms-swift run, a checkpoint and
infer results, or fails the way ms-swift fails; the real thing runs in test_runner_swift.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.runner import main as runner_main
from sandbox.runner.events import Emitter

RECORDED = Path(__file__).parent / "data" / "runner_swift_logging.jsonl"
ROOT = Path(__file__).resolve().parents[2]

FAKE_SWIFT = r"""#!{python}
import json, os, sys, time
from pathlib import Path
argv = sys.argv[1:]
mode = os.environ.get("FAKE_SWIFT_MODE", "ok")
def flag(name, default=None):
    return argv[argv.index(name) + 1] if name in argv else default
if argv[0] == "infer":
    prompts = [json.loads(l)["messages"][0]["content"] for l in open(flag("--val_dataset"))]
    Path(flag("--result_path")).parent.mkdir(parents=True, exist_ok=True)
    with open(flag("--result_path"), "w") as out:
        for p in prompts:
            row = {{"response": " echo: " + p + " ", "messages": [{{"role": "user", "content": p}}]}}
            out.write(json.dumps(row) + "\n")
    sys.exit(0)
print("[INFO:swift] starting " + argv[0], flush=True)
if mode == "oom":
    print("Traceback (most recent call last):", file=sys.stderr)
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
    sys.exit(1)
run = Path(flag("--output_dir", "output")) / "v0-20260101-000000"
run.mkdir(parents=True)
lines = open({recorded!r}).read().splitlines()
with open(run / "logging.jsonl", "w") as log:
    for i, line in enumerate(lines[:-1]):
        log.write(line + "\n"); log.flush()
        sys.stderr.write("Train:  %d%%|###   | %d/6 [00:01<00:02]\r" % (i * 16, i)); sys.stderr.flush()
        if mode == "sleep" and i == 1:
            print("sleeping", flush=True)
            time.sleep(120)
    ckpt = run / "checkpoint-6"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text("{{}}")
    final = json.loads(lines[-1]); final["last_model_checkpoint"] = str(ckpt.resolve())
    log.write(json.dumps(final) + "\n")
"""


@pytest.fixture
def fake_swift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "swift"
    script.write_text(FAKE_SWIFT.format(python=sys.executable, recorded=str(RECORDED)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HAMMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))

    async def no_probe(workspace: Path, cache: Path) -> dict[str, Any]:
        return {"torch": "test", "device": "cpu"}

    monkeypatch.setattr(runner_main, "check_environment", no_probe)
    return tmp_path


def _job(workspace: Path, argv: list[str], **params: Any) -> Path:
    workspace.mkdir(exist_ok=True)
    path = workspace / "job.json"
    path.write_text(
        json.dumps({"id": "job-1", "task": "sft", "model": "demo", "argv": argv, "params": params})
    )
    return path


async def _run(job_file: Path) -> tuple[int, list[dict[str, Any]]]:
    buffer = io.StringIO()
    code = await runner_main.amain(Emitter(buffer), job_file)
    return code, [json.loads(line) for line in buffer.getvalue().splitlines()]


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events if e["type"] != "log"]


async def test_training_job_reports_progress_sample_artifacts_and_result(fake_swift: Path) -> None:
    ws = fake_swift / "ws"
    data = ws / "data.jsonl"
    job_file = _job(
        ws,
        ["swift", "sft", "--dataset", "data.jsonl", "--output_dir", "output"],
        prepare=[f"demo_dataset:{data}"],
        validate_datasets=[str(data)],
    )
    code, events = await _run(job_file)
    assert code == 0
    phases = [e["phase"] for e in events if e["type"] == "status"]
    assert phases == ["starting", "checking", "preparing", "validating", "running", "sampling", "reporting"]
    progress = [e for e in events if e["type"] == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 3, 4, 5, 6] and progress[0]["loss"] == 6.9733305
    samples = [e for e in events if e["type"] == "sample"]
    assert samples == [
        {**s, "prompt": p, "response": f"echo: {p}"}
        for s, p in zip(samples, ["What is hammer?", "What does one strike of the hammer do?"], strict=True)
    ]
    artifacts = {e["name"]: e["path"] for e in events if e["type"] == "artifact"}
    assert artifacts == {
        "adapter": "output/v0-20260101-000000/checkpoint-6",
        "logs": "output/v0-20260101-000000/logging.jsonl",
        "loss_curve": "loss_curve.png",
        "report": "report.json",
    }
    result = events[-1]
    assert result["type"] == "result" and result["ok"] is True
    assert result["summary"]["final_loss"] == 6.84377241 and result["summary"]["samples"] == 2
    report = json.loads((ws / "report.json").read_text())
    assert report["samples"][0]["response"] == "echo: What is hammer?" and report["steps"] == 6
    assert (ws / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    logs = [e["line"] for e in events if e["type"] == "log"]
    assert "[INFO:swift] starting sft" in logs
    assert not any("Train:" in line for line in logs)  # tqdm bars are dropped


async def test_infer_job_writes_the_prompts_and_reports_answers(fake_swift: Path) -> None:
    ws = fake_swift / "ws"
    argv = [
        "swift",
        "infer",
        "--model",
        "/cache/models/demo",
        "--val_dataset",
        str(ws / "prompts.jsonl"),
        "--result_path",
        str(ws / "output" / "infer_result.jsonl"),
    ]
    code, events = await _run(
        _job(ws, argv, prompts=["Who are you?"], prepare=[f"prompts:{ws}/prompts.jsonl"])
    )
    assert code == 0
    assert [(e["prompt"], e["response"]) for e in events if e["type"] == "sample"] == [
        ("Who are you?", "echo: Who are you?")
    ]
    artifacts = {e["name"]: e["path"] for e in events if e["type"] == "artifact"}
    assert artifacts == {"results": "output/infer_result.jsonl", "report": "report.json"}
    assert "sampling" not in [e.get("phase") for e in events]
    assert events[-1]["ok"] is True and events[-1]["summary"]["samples"] == 1


async def test_inputs_must_be_in_the_sandbox_before_ms_swift_starts(
        fake_swift: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = fake_swift / "inputs"
    monkeypatch.setenv("HAMMER_INPUTS", str(inputs))
    ws = fake_swift / "ws"
    argv = ["swift", "infer", "--model", "/cache/models/demo", "--adapters", "/inputs/jobs/ab12/adapter"]
    job_file = _job(ws, argv)
    spec = json.loads(job_file.read_text())
    job_file.write_text(json.dumps({**spec, "inputs": ["jobs/ab12/adapter"]}))
    code, events = await _run(job_file)
    error = next(e for e in events if e["type"] == "error")
    assert code == 1 and "jobs/ab12/adapter" in error["message"] and "running" not in [e.get("phase") for e in events]
    (inputs / "jobs" / "ab12" / "adapter").mkdir(parents=True)
    (inputs / "jobs" / "ab12" / "adapter" / "adapter_config.json").write_text("{}")
    code, events = await _run(job_file)
    assert any(e.get("line") == "hammer: input jobs/ab12/adapter: 1 file(s), 2 bytes" for e in events)
    assert "running" in [e.get("phase") for e in events]  # now ms-swift starts


async def test_bad_dataset_fails_fast_with_the_line(fake_swift: Path) -> None:
    ws = fake_swift / "ws"
    ws.mkdir()
    (ws / "mine.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\nnot json\n'
    )
    code, events = await _run(_job(ws, ["swift", "sft", "--dataset", "mine.jsonl"]))
    assert code == 2
    error = next(e for e in events if e["type"] == "error")
    assert error["kind"] == "dataset" and error["line"] == 2 and error["file"] == "mine.jsonl"
    assert "mine.jsonl, line 2" in error["message"] and error["hint"]
    assert events[-1]["type"] == "result" and events[-1]["ok"] is False
    assert "running" not in [e.get("phase") for e in events]


async def test_oom_is_classified_with_a_hint(fake_swift: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SWIFT_MODE", "oom")
    code, events = await _run(_job(fake_swift / "ws", ["swift", "sft", "--output_dir", "output"]))
    assert code == 1
    error = next(e for e in events if e["type"] == "error")
    assert error["kind"] == "oom" and "batch size" in error["hint"] and error["exit_code"] == 1
    assert _types(events)[-3:] == ["artifact", "error", "result"]  # the report still comes
    assert events[-1]["ok"] is False


async def test_missing_program_and_unreadable_job(fake_swift: Path) -> None:
    code, events = await _run(_job(fake_swift / "ws", ["no-such-program-xyz", "sft"]))
    assert code == 1 and next(e for e in events if e["type"] == "error")["kind"] == "internal"
    broken = fake_swift / "broken.json"
    broken.write_text("{not json")
    code, events = await _run(broken)
    assert code == 1 and _types(events) == ["error", "result"]


async def test_runtime_limit_ends_with_timeout(fake_swift: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SWIFT_MODE", "sleep")
    ws = fake_swift / "ws"
    ws.mkdir()
    (ws / "job.json").write_text(
        json.dumps({"id": "j", "argv": ["swift", "sft"], "limits": {"max_runtime_s": 3}})
    )
    started = time.monotonic()
    code, events = await _run(ws / "job.json")
    assert code == 124 and time.monotonic() - started < 60
    assert next(e for e in events if e["type"] == "error")["kind"] == "timeout"


def test_sigterm_cancels_the_child_and_exits_143(fake_swift: Path) -> None:
    """A real process and a real signal, as `docker stop` sends it."""
    ws = fake_swift / "ws"
    job_file = _job(ws, ["swift", "sft", "--output_dir", "output"])
    env = {
        **os.environ,
        "FAKE_SWIFT_MODE": "sleep",
        "HAMMER_JOB_FILE": str(job_file),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.runner"], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # bounded: the fake sleeps after two steps and we stop it then
        lines.append(json.loads(line))
        if lines[-1].get("line") == "sleeping" or time.monotonic() > deadline:
            break
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    lines += [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 143 and time.monotonic() - started < 30
    assert lines[-1]["type"] == "status" and lines[-1]["phase"] == "cancelled"
    assert [e["step"] for e in lines if e["type"] == "progress"][:1] == [1]
    assert not any(e["type"] == "result" for e in lines)


def test_runner_imports_nothing_from_the_gateway() -> None:
    code = (
        "import sys, sandbox.runner.main, sandbox.runner.demo; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('gateway', 'adapters', 'plugins', 'torch', "
        "'transformers', 'matplotlib', 'swift')]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_jobs_stay_offline_unless_given_a_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as the image sets it
    assert runner_main.runner_env(False)["HF_HUB_OFFLINE"] == "1"
    assert runner_main.runner_env(True)["HF_HUB_OFFLINE"] == "0"
    assert runner_main.runner_env(True, {"HF_HUB_OFFLINE": "1"})["HF_HUB_OFFLINE"] == "1"
    env = runner_main.runner_env(False)
    assert env["HF_HOME"].startswith(os.environ.get("HF_HOME", str(tmp_path / "cache")))
    assert str(ROOT) in env["PYTHONPATH"].split(os.pathsep)


async def test_a_process_left_behind_does_not_hang_the_runner(tmp_path: Path) -> None:
    from sandbox.runner.child import Child

    buffer = io.StringIO()
    child = Child(
        ["sh", "-c", "sleep 120 & echo parent-done; printf 'Train:  50%%|###  | 1/2\\rreal line\\n'"],
        cwd=tmp_path,
        env=dict(os.environ),
        emitter=Emitter(buffer),
    )
    started = time.monotonic()
    result = await child.run()
    assert result.returncode == 0 and time.monotonic() - started < 30
    assert result.tail == ["parent-done", "real line"]
