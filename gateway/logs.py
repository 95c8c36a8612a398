"""JSON logging, secret redaction, the per-job event archive and the audit log.

One JSON object per line (ts, level, logger, msg, and context such as job_id, actor,
platform). Every resolved secret value is registered with `redact_value` and replaced by
`***` in every sink: the gateway log, the audit log and the job archives.
"""

from __future__ import annotations

import gzip
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

REDACTED = "***"
_secrets: set[str] = set()
_lock = threading.Lock()
_CONTEXT_KEYS = ("job_id", "actor", "platform", "verb", "plugin", "adapter", "cloud", "state", "code")


def redact_value(value: str) -> None:
    """Register a secret value; short values (< 6 chars) are too ambiguous to redact."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    if not _secrets:
        return text
    for s in sorted(_secrets, key=len, reverse=True):
        if s in text:
            text = text.replace(s, REDACTED)
    return text


def redact_obj(obj: Any) -> Any:
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, Mapping):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, ensure_ascii=False))


def setup_logging(level: str = "info", stream: TextIO | None = None, file: str | Path | None = None) -> None:
    """Route every `hammer.*` logger (and library warnings) through the JSON formatter."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_hammer", False):
            root.removeHandler(h)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(JsonFormatter())
        h._hammer = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.WARNING)
    logging.getLogger("hammer").setLevel(level.upper())


class AuditLog:
    """Append-only JSON lines: every command and every policy decision."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, kind: str, **fields: Any) -> None:
        line = redact(json.dumps({"ts": round(time.time(), 3), "kind": kind, **fields},
                                 default=str, ensure_ascii=False))
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]


def archive_key(job_id: str, created_at: float) -> str:
    """`archive/YYYY/MM/<job_id>.jsonl.gz`, dated by the job's creation."""
    t = time.gmtime(created_at)
    return f"archive/{t.tm_year:04d}/{t.tm_mon:02d}/{job_id}.jsonl.gz"


def write_archive(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write redacted JSON lines, gzip-compressed, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for rec in records:
            f.write(redact(json.dumps(rec, default=str, ensure_ascii=False)) + "\n")
    tmp.replace(path)
    return path
