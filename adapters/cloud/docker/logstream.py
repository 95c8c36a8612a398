"""Container output -> numbered lines -> SandboxEvents, resumable.

`seq` is a line's position in the container's whole output (DESIGN.md: seq counts every
line the container printed). The Docker log replays from the start on every read, so a
resumed stream (after a gateway restart) re-reads, counts, and skips what the store
already has: nothing is lost and nothing is doubled, without any extra state on disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.model import SandboxEvent

OOM_HINT = "lower batch_size or max_length, use qlora, or a bigger GPU"


@dataclass
class LineNumberer:
    """Splits text chunks into lines across chunk boundaries and numbers them."""

    since: int = 0
    count: int = 0  # lines seen so far (the next line's seq)
    saw_error: bool = False
    saw_result: bool = False
    _buf: list[str] = field(default_factory=list)

    def feed(self, chunk: str) -> Iterator[SandboxEvent]:
        if not chunk:
            return
        parts = chunk.split("\n")
        if len(parts) == 1:
            self._buf.append(chunk)
            return
        first = "".join(self._buf) + parts[0]
        self._buf = [parts[-1]] if parts[-1] else []
        for line in (first, *parts[1:-1]):
            yield from self._line(line)

    def close(self) -> Iterator[SandboxEvent]:
        """End of the output: a last line without a newline still counts."""
        rest = "".join(self._buf)
        self._buf = []
        if rest:
            yield from self._line(rest)

    def reset_partial(self) -> None:
        """A dropped connection: the partial line will be read again from the start."""
        self._buf = []

    def _line(self, line: str) -> Iterator[SandboxEvent]:
        seq = self.count
        self.count += 1
        event = SandboxEvent.parse(line, seq)
        self.saw_error |= event.type == "error"
        self.saw_result |= event.type == "result"
        if seq >= self.since:
            yield event


def oom_event(seq: int, exit_code: int | None, memory_bytes: int | None,
              finished_at: str = "") -> SandboxEvent:
    """The error a runner that was OOM-killed could not send itself. Its seq is the one
    after the container's last line and its time the container's end, so every replay
    produces the very same event."""
    limit = f" (limit {memory_bytes / 2**30:.2f} GiB)" if memory_bytes else ""
    data = {"kind": "oom", "message": f"the job ran out of memory and was killed{limit}",
            "hint": OOM_HINT, "exit_code": exit_code, "synthetic": True}
    ts = docker_time(finished_at)
    return SandboxEvent(seq, "error", data, ts) if ts is not None else SandboxEvent(seq, "error", data)


def docker_time(value: str) -> float | None:
    """Docker's RFC 3339 times with nanoseconds ("2024-05-01T10:00:00.123456789Z")."""
    if not value or value.startswith("0001-"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    try:
        moment = datetime.fromisoformat(head).replace(tzinfo=UTC)
    except ValueError:
        return None
    digits = "".join(ch for ch in frac if ch.isdigit())[:6]
    return moment.timestamp() + (int(digits.ljust(6, "0")) / 1e6 if digits else 0.0)
