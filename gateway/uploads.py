"""Datasets people attach in chat, kept under `<data_dir>/uploads/` and used as `upload:NAME`.

Every chat adapter saves attachments through here, so the rules are the same everywhere:
a plain file name ending in .jsonl or .json, at most `MAX_UPLOAD_BYTES`, written to a
temporary file and renamed into place (never a half-written dataset), readable by the
job container's user.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import tempfile
from collections.abc import AsyncIterable
from pathlib import Path, PurePath

from gateway import safe_copy
from gateway.model import Actor

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}\.jsonl?")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class UploadError(Exception):
    """An attachment hammer will not keep; the message says why and what to do.
    `status` is the HTTP status a web upload answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_name(filename: str) -> str:
    """The bare file name if it is acceptable, else UploadError."""
    if "\x00" in filename:
        raise UploadError("a file name cannot contain a NUL byte")
    name = PurePath(filename.replace("\\", "/")).name
    if not _NAME.fullmatch(name) or name != filename:  # a path ("../x.jsonl") is refused, not shortened
        raise UploadError(f"{filename[:100]!r}: name a dataset with letters, digits, '.', '_' or '-', "
                          "ending in .jsonl (or .json)")
    return name


def is_dataset_name(filename: str) -> bool:
    try:
        check_name(filename)
        return True
    except UploadError:
        return False


#: Uploads being received at once, gateway-wide; more are refused with "try again" (429).
MAX_IN_FLIGHT = 4
_in_flight = 0


def user_dir(root: Path, actor: Actor) -> Path:
    """Each person's own upload folder: `upload:NAME` is the requester's own file."""
    return root / _SAFE.sub("_", f"{actor.platform}-{actor.user_id}")[:120]


async def save_upload(folder: Path, filename: str, chunks: AsyncIterable[bytes]) -> tuple[str, int]:
    """Stream an attachment to a temporary file of its own, then rename it into place
    (never a half-written or mixed dataset); returns (name, size). At most
    `MAX_UPLOAD_BYTES`, and at most `MAX_IN_FLIGHT` uploads at a time."""
    global _in_flight
    name = check_name(filename)
    if _in_flight >= MAX_IN_FLIGHT:
        raise UploadError(f"{MAX_IN_FLIGHT} uploads are already being received; send {name} again in a moment",
                          status=429)
    _in_flight += 1
    tmp: Path | None = None
    try:
        tmp = await asyncio.to_thread(_open_temp, folder, name)
        size = 0
        with tmp.open("r+b") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise UploadError(f"{name} is larger than {MAX_UPLOAD_BYTES >> 20} MiB; use a hub dataset id "
                                      "for big data", status=413)
                await asyncio.to_thread(out.write, chunk)
        if size == 0:
            raise UploadError(f"{name} is empty")
        await asyncio.to_thread(os.replace, tmp, folder / name)
        tmp = None
        return name, size
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UploadError(f"the gateway's disk is full, so {name} was not kept; ask an admin to free space",
                              status=507) from None
        raise
    finally:
        _in_flight -= 1
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _open_temp(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    os.fchmod(fd, 0o644)  # the job container's user reads it
    os.close(fd)
    return Path(path)


def announcement(who: str, name: str, size: int) -> tuple[str, str]:
    """(title, text) of the chat message that confirms an upload."""
    return (f"{who} uploaded {name} ({size:,} bytes)",
            f"Train on it with: .finetune demo-lora upload:{name} (or any model preset)")


class UploadSpace:
    """Where `upload:NAME` datasets live, as job builders see them (JobContext.upload):
    each person's own folder, so nobody's `upload:faq.jsonl` is anyone else's."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, actor: Actor, name: str) -> Path | None:
        """The stored file for `upload:NAME`, or None (also for names that are not dataset names)."""
        if not is_dataset_name(name):
            return None
        path = user_dir(self.root, actor) / name
        return path if safe_copy.is_regular_file(path) else None

    def names(self, actor: Actor) -> list[str]:
        folder = user_dir(self.root, actor)
        if safe_copy.kind(folder) != "dir":
            return []
        return sorted(p.name for p in folder.iterdir() if is_dataset_name(p.name) and safe_copy.is_regular_file(p))


def count_rows(path: Path) -> int:
    """Lines with content in a JSONL file (blocking: call it in a thread)."""
    rows, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    return rows + (0 if last == b"\n" else 1)
