"""The runner's event lines are exactly what the gateway's parser expects (protocol v1)."""

from __future__ import annotations

import io
import json
import threading

import pytest

from gateway.model import SandboxEvent
from sandbox.runner.events import Emitter, format_event


def test_event_line_has_version_type_and_time() -> None:
    line = format_event("progress", {"step": 3, "loss": 1.25}, ts=1700000000.123456)
    assert json.loads(line) == {"v": 1, "type": "progress", "ts": 1700000000.123, "step": 3, "loss": 1.25}


def test_gateway_parses_every_runner_event_as_that_event() -> None:
    buffer = io.StringIO()
    emitter = Emitter(buffer)
    emitter.status("checking", torch="2.13.0", cuda=False)
    emitter.log("stderr", "[INFO:swift] hello")
    emitter.error("oom", "ran out of memory", "lower the batch size")
    emitter.artifact("adapter", "output/v0/checkpoint-6")
    emitter.emit("result", ok=True, summary={"steps": 6})
    lines = buffer.getvalue().splitlines()
    parsed = [SandboxEvent.parse(line, i) for i, line in enumerate(lines)]
    assert [e.type for e in parsed] == ["status", "log", "error", "artifact", "result"]
    assert parsed[0].data == {"phase": "checking", "torch": "2.13.0", "cuda": False}
    assert parsed[2].data == {"kind": "oom", "message": "ran out of memory", "hint": "lower the batch size"}
    assert parsed[3].data == {"name": "adapter", "path": "output/v0/checkpoint-6"}


def test_diverged_loss_is_null_not_invalid_json() -> None:
    line = format_event("progress", {"loss": float("nan"), "grad_norm": float("inf")})
    assert json.loads(line)["loss"] is None and json.loads(line)["grad_norm"] is None


def test_unknown_event_type_and_error_kind() -> None:
    with pytest.raises(ValueError):
        format_event("chatter", {})
    buffer = io.StringIO()
    Emitter(buffer).error("cosmic-rays", "m", "h")
    assert json.loads(buffer.getvalue())["kind"] == "internal"


def test_long_log_lines_are_cut_and_lines_never_interleave() -> None:
    buffer = io.StringIO()
    emitter = Emitter(buffer)
    threads = [
        threading.Thread(target=lambda: [emitter.log("stdout", "x" * 10_000) for _ in range(50)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 200
    assert all(len(json.loads(line)["line"]) == 4000 for line in lines)
