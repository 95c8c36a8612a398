"""Copying a job's output without ever following a symbolic link out of it.

A job writes its workspace; the gateway copies from it. A job that leaves
`output/leak -> /etc/shadow` (or swaps a file for such a link while the copy runs) must
not get a host file into shared artifacts. So every directory is opened relative to its
parent's descriptor with O_NOFOLLOW and every file is opened with O_NOFOLLOW: a link is
refused at the moment of opening, not checked beforehand. Links, devices, FIFOs and
sockets are skipped and reported by their relative path, for the job's log.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
CHUNK = 1 << 20


@dataclass
class CopyReport:
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


def _copy_fd(src_fd: int, dest: Path, mode: int) -> int:
    written = 0
    tmp = dest.with_name(f".{dest.name}.partial")
    with open(tmp, "wb") as out:
        while chunk := os.read(src_fd, CHUNK):
            out.write(chunk)
            written += len(chunk)
    os.chmod(tmp, mode)
    os.replace(tmp, dest)
    return written


def _open_file(name: str, dir_fd: int | None, rel: str, report: CopyReport) -> int | None:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:  # ELOOP: a symbolic link; ENXIO: a socket; anything else unreadable
        report.skipped.append(rel)
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        report.skipped.append(rel)
        return None
    return fd


def copy_file(src: Path, dest: Path, report: CopyReport | None = None, *, mode: int = 0o644) -> CopyReport:
    """Copy one regular file (never through a link) to `dest`, atomically."""
    report = report or CopyReport()
    fd = _open_file(str(src), None, src.name, report)
    if fd is None:
        return report
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        report.bytes += _copy_fd(fd, dest, mode)
        report.files += 1
    finally:
        os.close(fd)
    return report


def copy_tree(src: Path, dest: Path, report: CopyReport | None = None) -> CopyReport:
    """Copy directory `src` to `dest` (which must not exist); files 0644, dirs 0755."""
    report = report or CopyReport()
    try:
        top = os.open(str(src), _DIR_FLAGS)
    except OSError:
        report.skipped.append(src.name)
        return report
    try:
        dest.mkdir(parents=True, exist_ok=False, mode=0o755)
        _walk(top, dest, "", report)
    finally:
        os.close(top)
    return report


def _walk(dir_fd: int, dest: Path, prefix: str, report: CopyReport) -> None:
    for entry in sorted(os.listdir(dir_fd)):
        rel = f"{prefix}{entry}"
        try:
            st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            report.skipped.append(rel)
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(entry, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:  # swapped for a link since the stat
                report.skipped.append(rel)
                continue
            try:
                (dest / entry).mkdir(mode=0o755)
                _walk(sub, dest / entry, rel + "/", report)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            fd = _open_file(entry, dir_fd, rel, report)
            if fd is None:
                continue
            try:
                report.bytes += _copy_fd(fd, dest / entry, 0o644)
                report.files += 1
            finally:
                os.close(fd)
        else:
            report.skipped.append(rel)


def kind(path: Path) -> str | None:
    """"file" or "dir" for a regular file or a directory that is not a symbolic link; None for
    anything else (a link, a device, a FIFO, nothing). Never follows the last component."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else None


def is_regular_file(path: Path) -> bool:
    """True for a regular file that is not a symbolic link (nor reached through one at its end)."""
    return kind(path) == "file"


def read_regular(path: Path, limit: int | None = None) -> bytes | None:
    """The content (or its first `limit` bytes) of a regular file, opened with O_NOFOLLOW;
    None when it is a link, not a regular file, or unreadable."""
    report = CopyReport()
    fd = _open_file(str(path), None, path.name, report)
    if fd is None:
        return None
    try:
        if limit is not None:
            return os.read(fd, limit)
        chunks = []
        while chunk := os.read(fd, CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def regular_files(root: Path) -> list[tuple[str, int]]:
    """(relative path, size) of every regular file below `root`, never entering or listing
    a symbolic link (os.walk does not follow them; each entry is checked with lstat)."""
    found: list[tuple[str, int]] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if kind(Path(folder) / d) == "dir")
        for name in sorted(files):
            path = Path(folder) / name
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((path.relative_to(root).as_posix(), st.st_size))
    return found


def inside(path: Path, root: Path) -> bool:
    """`path` is `root` or below it, lexically and with no link on the way."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    if ".." in rel.parts:
        return False
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            return False
    return True
