"""The event protocol the runner speaks on stdout: one JSON object per line.

`{"v": 1, "type": ..., "ts": <unix float>, ...fields}`. This is a deliberately tiny copy
of gateway.model.SandboxEvent's wire format: the runner lives in the image and imports
nothing from the gateway. Only the runner writes to stdout, and it flushes every line,
so the cloud adapter sees each event as it happens.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import Any, TextIO

VERSION = 1
TYPES = frozenset({"status", "progress", "log", "metric", "artifact", "sample", "result", "error"})
ERROR_KINDS = frozenset({"oom", "dataset", "args", "model", "auth", "timeout", "internal"})
MAX_LOG_LINE = 4000


def _clean(value: Any) -> Any:
    """NaN and infinities are not JSON; a diverged loss becomes null rather than a broken line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def format_event(type_: str, fields: dict[str, Any], ts: float | None = None) -> str:
    if type_ not in TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    body = {"v": VERSION, "type": type_, "ts": round(time.time() if ts is None else ts, 3)}
    body.update(_clean({k: v for k, v in fields.items() if k not in ("v", "type", "ts")}))
    return json.dumps(body, ensure_ascii=False, default=str)


class Emitter:
    """Writes events to one stream from any thread, one whole line at a time."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def emit(self, type_: str, **fields: Any) -> None:
        line = format_event(type_, fields)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
            self.counts[type_] = self.counts.get(type_, 0) + 1

    def status(self, phase: str, **fields: Any) -> None:
        self.emit("status", phase=phase, **fields)

    def log(self, stream: str, line: str) -> None:
        self.emit("log", stream=stream, line=line[:MAX_LOG_LINE])

    def error(self, kind: str, message: str, hint: str, **fields: Any) -> None:
        self.emit(
            "error", kind=kind if kind in ERROR_KINDS else "internal", message=message, hint=hint, **fields
        )

    def artifact(self, name: str, path: str, **fields: Any) -> None:
        self.emit("artifact", name=name, path=path, **fields)
