"""The runner with real ms-swift on this CPU: the demo model, a LoRA fine-tune, a sample.

This is the same job the sandbox image runs for `.finetune demo-lora demo`, run on the
host (`python -m sandbox.runner` with HAMMER_JOB_FILE), so a broken runner or a changed
ms-swift shows up here without Docker. About a minute on two cores.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.demo_argv import demo_lora_argv

pytestmark = pytest.mark.swift
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("swift") is None,
    reason="ms-swift is not installed here (pip install -e '.[swift]')",
)
def test_demo_lora_on_cpu(tmp_path: Path) -> None:
    ws, cache = tmp_path / "ws", tmp_path / "cache"
    ws.mkdir()
    spec = {
        "id": "swift-1",
        "task": "sft",
        "model": "demo",
        "datasets": ["demo"],
        "argv": demo_lora_argv(cache, ws / "output"),
        "params": {
            "prepare": [f"demo_model:{cache}/models/demo", f"demo_dataset:{cache}/datasets/demo.jsonl"],
            "validate_datasets": [f"{cache}/datasets/demo.jsonl"],
            "sample_prompts": ["Say hello."],
        },
        "limits": {"max_runtime_s": 900},
    }
    (ws / "job.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "HAMMER_JOB_FILE": str(ws / "job.json"),
        "HAMMER_CACHE": str(cache),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "sandbox.runner"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, (
        "\n".join(e.get("line", str(e)) for e in events[-30:]) + result.stderr[-2000:]
    )
    assert all(e["v"] == 1 and isinstance(e["ts"], float) for e in events)

    progress = [e for e in events if e["type"] == "progress"]
    assert len(progress) == 6 and progress[-1]["step"] == progress[-1]["max_steps"] == 6
    losses = [p["loss"] for p in progress]
    assert all(isinstance(v, float) and math.isfinite(v) and 0 < v < 20 for v in losses)
    assert len(set(losses)) > 1  # real numbers from training, not a constant
    assert progress[-1]["epoch"] == 2.0

    samples = [e for e in events if e["type"] == "sample"]
    assert [s["prompt"] for s in samples] == ["Say hello."] and isinstance(samples[0]["response"], str)

    artifacts = {e["name"]: ws / e["path"] for e in events if e["type"] == "artifact"}
    adapter = artifacts["adapter"]
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert artifacts["loss_curve"].read_bytes()[:4] == b"\x89PNG"
    report = json.loads(artifacts["report"].read_text())
    assert report["ok"] is True and report["final_loss"] == losses[-1] and report["steps"] == 6
    assert report["samples"] == [{"prompt": s["prompt"], "response": s["response"]} for s in samples]
    assert report["swift_final"]["last_model_checkpoint"] == str(adapter)
    assert events[-1] == {**events[-1], "type": "result", "ok": True}
    assert (cache / "models" / "demo" / "config.json").is_file()
