"""Datasets people attach in chat, kept under `<data_dir>/uploads/` and used as `upload:NAME`.

Every chat adapter saves attachments through here, so the rules are the same everywhere:
a plain file name ending in .jsonl or .json, at most `MAX_UPLOAD_BYTES`, written to a
temporary file and renamed into place (never a half-written dataset), readable by the
job container's user.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable
from pathlib import Path, PurePath

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}\.jsonl?")


class UploadError(Exception):
    """An attachment hammer will not keep; the message says why and what to do."""


def check_name(filename: str) -> str:
    """The bare file name if it is acceptable, else UploadError."""
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


async def save_upload(uploads_dir: Path, filename: str, chunks: AsyncIterable[bytes]) -> tuple[str, int]:
    """Store an attachment atomically; returns (name, size). The caller announces
    `upload:NAME` in chat. The file (at most 64 MiB) is gathered, then written in a thread."""
    name = check_name(filename)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise UploadError(f"{name} is larger than {MAX_UPLOAD_BYTES >> 20} MiB; use a hub dataset id for big data")
        parts.append(chunk)
    if size == 0:
        raise UploadError(f"{name} is empty")
    await asyncio.to_thread(_write, uploads_dir, name, parts)
    return name, size


def _write(uploads_dir: Path, name: str, parts: list[bytes]) -> None:
    uploads_dir.mkdir(parents=True, exist_ok=True)
    tmp = uploads_dir / f".{name}.partial"
    try:
        with tmp.open("wb") as f:
            for p in parts:
                f.write(p)
        tmp.chmod(0o644)
        tmp.replace(uploads_dir / name)
    finally:
        tmp.unlink(missing_ok=True)


def announcement(who: str, name: str, size: int) -> tuple[str, str]:
    """(title, text) of the chat message that confirms an upload."""
    return (f"{who} uploaded {name} ({size:,} bytes)",
            f"Train on it with: .finetune demo-lora upload:{name} (or any model preset)")


class UploadSpace:
    """Where `upload:NAME` datasets live, as job builders see them (JobContext.upload)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, actor: object, name: str) -> Path | None:
        """The stored file for `upload:NAME`, or None (also for names that are not dataset names)."""
        if not is_dataset_name(name):
            return None
        path = self.root / name
        return path if path.is_file() and not path.is_symlink() else None

    def names(self, actor: object) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if is_dataset_name(p.name) and p.is_file())


def count_rows(path: Path) -> int:
    """Lines with content in a JSONL file (blocking: call it in a thread)."""
    rows, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    return rows + (0 if last == b"\n" else 1)
