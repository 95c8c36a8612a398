"""Running one program (ms-swift) from an argv list and turning its output into `log` events.

The child gets its own session (process group) because `swift sft` itself starts a
Python (or torchrun) child: a cancel must reach all of them. Output is split on "\n"
and "\r" (tqdm redraws its bar with "\r"); bars are dropped since `progress` events carry
the same information from logging.jsonl, everything else becomes a `log` event and the
last lines are kept for failure classification.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.runner.events import Emitter

_TQDM_BAR = re.compile(r"^[^|{}]{0,60}?\d{1,3}%\|")
_MAX_PARTIAL = 64 * 1024
TAIL_LINES = 300
DRAIN_S = 5.0


@dataclass
class ChildResult:
    returncode: int | None
    tail: list[str]
    duration_s: float
    timed_out: bool = False
    cancelled: bool = False


class Child:
    """One child process; `terminate()` may be called from a signal handler at any time."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        emitter: Emitter,
        grace_s: float = 10.0,
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.emitter = emitter
        self.grace_s = grace_s
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._proc: asyncio.subprocess.Process | None = None
        self._cancelled = False
        self._killer: asyncio.Task[None] | None = None

    async def run(
        self,
        *,
        poll: Callable[[], None] | None = None,
        poll_interval: float = 0.5,
        limit_s: float | None = None,
    ) -> ChildResult:
        started = time.monotonic()
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=str(self.cwd),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        if self._cancelled:  # SIGTERM arrived while the process was being created
            self.terminate()
        pumps = asyncio.gather(
            self._pump(self._proc.stdout, "stdout"), self._pump(self._proc.stderr, "stderr")
        )
        poller = asyncio.create_task(self._poll(poll, poll_interval)) if poll else None
        waiter = asyncio.ensure_future(self._exited())
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(waiter), limit_s)
        except TimeoutError:
            timed_out = True
            self.terminate()
        returncode = await waiter
        await self._drain(pumps)
        if poller:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            poll()  # type: ignore[misc]  # what the child wrote last
        if self._killer:
            self._killer.cancel()
        return ChildResult(
            returncode, list(self.tail), time.monotonic() - started, timed_out, self._cancelled
        )

    async def _exited(self) -> int:
        """The child's exit status. Not `Process.wait()`: that also waits for every pipe
        to close, which a grandchild holding stdout can postpone forever."""
        assert self._proc is not None
        while self._proc.returncode is None:  # noqa: ASYNC110 - asyncio offers no exit-only event
            await asyncio.sleep(0.2)
        return self._proc.returncode

    async def _drain(self, pumps: asyncio.Future[Any]) -> None:
        """Read what is left in the pipes; then end whatever the child left behind.

        A grandchild (a dataloader worker, a stray server) can hold the pipes open after
        ms-swift itself exited: it is killed rather than waited for forever.
        """
        assert self._proc is not None
        try:
            await asyncio.wait_for(asyncio.shield(pumps), DRAIN_S)
        except TimeoutError:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(pumps, DRAIN_S)
        except TimeoutError:
            pumps.cancel()

    def terminate(self) -> None:
        """SIGTERM to the child's whole process group, SIGKILL after the grace period."""
        self._cancelled = True
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        if self._killer is None:
            self._killer = asyncio.get_running_loop().create_task(self._kill_later(proc))

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    async def _kill_later(self, proc: asyncio.subprocess.Process) -> None:
        await asyncio.sleep(self.grace_s)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def _poll(self, poll: Callable[[], None] | None, interval: float) -> None:
        while poll is not None:
            await asyncio.sleep(interval)
            poll()

    async def _pump(self, stream: asyncio.StreamReader | None, name: str) -> None:
        assert stream is not None
        pending = b""
        while chunk := await stream.read(65536):
            pending += chunk
            *lines, pending = re.split(rb"\r\n|\r|\n", pending)
            if len(pending) > _MAX_PARTIAL:
                lines.append(pending)
                pending = b""
            for raw in lines:
                self._line(name, raw)
        if pending:
            self._line(name, pending)

    def _line(self, stream: str, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").strip()
        if not line or _TQDM_BAR.match(line):
            return
        self.tail.append(line)
        self.emitter.log(stream, line)
