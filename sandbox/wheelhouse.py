"""The offline wheelhouse the sandbox image installs from.

The image build itself runs with `--network none`: every Python package comes from a
directory of wheels made here on the host, where pip already works (a proxy, a private
index, a TLS-intercepting gateway: whatever pip is configured with). `pip wheel` is used
rather than `pip download` so packages published only as sdists arrive as wheels too and
the image needs no build tools. The lock files list the whole closure, so `--no-deps`
keeps pip from resolving anything on its own (an unpinned torch would be a CUDA build).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from sandbox.hostcmd import ImageError, Progress, fail, require_free_space, run

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
REQUIREMENTS_TORCH = HERE / "requirements-torch.txt"
COMPLETE_MARKER = ".hammer-complete"
#: Roughly what the wheels take (torch CPU ~0.2 GiB, the rest ~0.6 GiB) with a margin.
WHEELHOUSE_GIB = 3.0


def default_data_dir() -> Path:
    """hammer's data dir, as the gateway config defaults it; HAMMER_DATA_DIR overrides."""
    return Path(os.path.expanduser(os.environ.get("HAMMER_DATA_DIR", "~/.local/share/hammer")))


def requirement_files(install_torch: bool) -> list[Path]:
    return [REQUIREMENTS, REQUIREMENTS_TORCH] if install_torch else [REQUIREMENTS]


def wheelhouse_key(python: str, install_torch: bool) -> str:
    """Name of the cached wheelhouse: changes with the pins, the Python and the torch mode."""
    digest = hashlib.sha256(f"py{python}|torch={install_torch}".encode())
    for path in requirement_files(install_torch):
        digest.update(path.read_bytes())
    return f"py{python}-{'torch' if install_torch else 'notorch'}-{digest.hexdigest()[:12]}"


def is_complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


def host_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


async def ensure_wheelhouse(
    path: Path,
    *,
    python: str,
    install_torch: bool,
    allow_cuda_torch: bool = False,
    progress: Progress = print,
) -> Path:
    """Return `path` holding every wheel of the lock files, building it if needed.

    The wheels are made in a sibling temp dir and renamed into place, so an interrupted
    download never leaves a half wheelhouse that a later build would trust.
    """
    if is_complete(path):
        progress(f"wheelhouse: reusing {path}")
        return path
    if python != host_python():
        raise ImageError(
            f"the base image has Python {python} but this host runs Python {host_python()}; "
            "the wheelhouse is made with the host's pip, so the two must match",
            f"use a base image with Python {host_python()} (e.g. pytorch/pytorch images with Python 3.11), "
            f"or run `hammer image build` on a host with Python {python}",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    require_free_space(path.parent, WHEELHOUSE_GIB, "the wheelhouse")
    tmp = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=path.parent))
    try:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--progress-bar",
            "off",
            "--wheel-dir",
            str(tmp),
        ]
        for req in requirement_files(install_torch):
            argv += ["-r", str(req)]
        progress(f"wheelhouse: downloading the image's Python packages into {path} (once; ~1 GiB)")
        result = await run(argv, progress=progress, limit_s=3600)
        if result.returncode != 0:
            raise fail(
                result,
                "downloading the Python packages for the image",
                "check that pip on this host reaches its package index (pip.conf, PIP_INDEX_URL, "
                "proxy settings), or pass --wheelhouse DIR with a wheelhouse made on another machine",
            )
        if install_torch and not allow_cuda_torch:
            await asyncio.to_thread(_refuse_cuda_torch, tmp)
        await asyncio.to_thread(_move_into_place, tmp, path, " ".join(argv[4:]))
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)
    return path


def _move_into_place(tmp: Path, path: Path, how: str) -> None:
    (tmp / COMPLETE_MARKER).write_text(how + "\n")
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def _refuse_cuda_torch(wheel_dir: Path) -> None:
    """A torch wheel that needs nvidia-* libraries would not even import in a CPU image."""
    for wheel in wheel_dir.glob("torch-*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = zf.read(meta).decode("utf-8", "replace") if meta else ""
        needs = [line for line in text.splitlines() if line.startswith("Requires-Dist: nvidia-")]
        if needs:
            raise ImageError(
                f"pip picked a CUDA build of torch ({wheel.name}); it needs {len(needs)} nvidia-* packages "
                "and would not run in a CPU image",
                "make a CPU wheel of the pinned torch visible to pip (e.g. `pip download torch==2.13.0 "
                "--index-url https://download.pytorch.org/whl/cpu -d DIR` and PIP_FIND_LINKS=DIR), "
                "or build on a CUDA/PyTorch base image with --base",
            )
