"""Host-side subprocess plumbing shared by the image build steps (never used in the image).

Every external program runs from an argv list through asyncio (no shell, nothing blocks
the event loop); its output is streamed line by line to a `progress` callback and the
last lines are kept, because the reason a build fails is almost always near the end.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Progress = Callable[[str], None]

#: Messages of docker/pip/debootstrap that mean the disk is full, whatever the step.
_NO_SPACE = ("no space left on device", "not enough free space", "errno 28")


class ImageError(Exception):
    """A build step failed for a reason the operator can fix; `hint` says how."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    tail: tuple[str, ...]
    stdout: str = ""

    @property
    def tail_text(self) -> str:
        return "\n".join(self.tail)


def no_space_error(where: str) -> ImageError:
    return ImageError(
        f"the disk is full while {where}",
        "free some space: `docker system prune` removes stopped containers and unused images, "
        "and old wheelhouses under the hammer data dir (wheelhouse/) can be deleted",
    )


async def run(
    argv: Sequence[str],
    *,
    progress: Progress | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
    capture: bool = False,
    tail: int = 60,
    limit_s: float | None = None,
) -> Completed:
    """Run argv to completion; stream merged output to `progress` unless `capture`.

    With `capture`, stdout is returned whole (stderr still goes to the tail) so callers can
    parse it (`docker image inspect`).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if capture else asyncio.subprocess.STDOUT,
        env={**os.environ, **env} if env else None,
    )
    last: collections.deque[str] = collections.deque(maxlen=tail)

    async def pump(stream: asyncio.StreamReader | None, sink: list[str] | None) -> None:
        assert stream is not None
        while raw := await stream.readline():
            line = raw.decode("utf-8", "replace").rstrip()
            if sink is not None:
                sink.append(line)
                continue
            last.append(line)
            if progress is not None and line:
                progress(line)

    out: list[str] = []
    pumps = [pump(proc.stdout, out if capture else None)]
    if capture:
        pumps.append(pump(proc.stderr, None))
    try:
        await asyncio.wait_for(asyncio.gather(*pumps, proc.wait()), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ImageError(
            f"`{' '.join(argv[:3])}` took longer than {limit_s:.0f} s and was stopped",
            "check the machine's load and network, then run the command again",
        ) from None
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    assert proc.returncode is not None
    return Completed(tuple(argv), proc.returncode, tuple(last), "\n".join(out))


def fail(result: Completed, what: str, hint: str) -> ImageError:
    """The ImageError for a failed step: disk-full wins over the generic message."""
    text = result.tail_text.lower()
    if any(marker in text for marker in _NO_SPACE):
        return no_space_error(what)
    detail = "\n".join(result.tail[-8:])
    return ImageError(f"{what} failed (exit {result.returncode}):\n{detail}", hint)


def require_program(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ImageError(f"`{name}` is not installed on this machine", hint)
    return path


def require_free_space(path: Path, need_gib: float, what: str) -> None:
    """Refuse to start a step that would fill the disk halfway through."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**30
    if free < need_gib:
        raise ImageError(
            f"only {free:.1f} GiB free at {probe}, {what} needs about {need_gib:.0f} GiB",
            "free some space: `docker system prune` removes stopped containers and unused images, "
            "and old wheelhouses under the hammer data dir (wheelhouse/) can be deleted",
        )


async def docker_ready() -> None:
    """Fail early and clearly when there is no docker CLI or no engine behind it."""
    require_program(
        "docker", "install Docker (Debian: `apt-get install docker.io`) or run scripts/docker-up.sh"
    )
    result = await run(["docker", "version", "--format", "{{.Server.Version}}"], capture=True, limit_s=60)
    if result.returncode != 0:
        raise ImageError(
            "no Docker engine is reachable: " + (result.tail[-1] if result.tail else "docker version failed"),
            "start it (`sudo scripts/docker-up.sh`, or `systemctl start docker`) and make sure this user "
            "may use /var/run/docker.sock (root or the docker group)",
        )


async def image_labels(name: str) -> tuple[str, dict[str, str], int] | None:
    """(id, labels, size in bytes) of a local image, or None when it is not there."""
    result = await run(
        ["docker", "image", "inspect", "--format", "{{json .}}", name], capture=True, limit_s=60
    )
    if result.returncode != 0:
        return None
    info = json.loads(result.stdout.splitlines()[0])
    labels = (info.get("Config") or {}).get("Labels") or {}
    return info["Id"], dict(labels), int(info.get("Size") or 0)
