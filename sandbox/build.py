"""Building the sandbox image: `hammer image base` and `hammer image build`.

No registry is assumed. `build_base` makes a minimal Debian (debootstrap) and imports it
into Docker; `build_image` installs ms-swift and the runner on top of a base from an
offline wheelhouse (see sandbox/wheelhouse.py) with `docker build --network none`.

The image carries a label with a hash of everything that went into it (Dockerfile, lock
files, runner source, base image id, torch mode), so building again with nothing changed
costs one `docker image inspect`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox import wheelhouse as wh
from sandbox.hostcmd import (
    Completed,
    ImageError,
    Progress,
    docker_ready,
    fail,
    image_labels,
    require_free_space,
    require_program,
    run,
)

__all__ = ["BuildResult", "ImageError", "build_base", "build_image", "DEFAULT_BASE", "DEFAULT_TAG"]

HERE = Path(__file__).resolve().parent
DOCKERFILE = HERE / "Dockerfile"
RUNNER_DIR = HERE / "runner"
DEFAULT_BASE = "hammer-base:bookworm"
DEFAULT_TAG = "hammer-sandbox:latest"
INPUTS_LABEL = "org.hammer.inputs"
KIND_LABEL = "org.hammer.kind"
#: Debian packages on top of minbase: Python (3.11 in bookworm, like the wheelhouse) and
#: TLS roots for jobs that download models.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: The installed venv (~3 GiB) plus the build stage and its copy of the wheelhouse.
IMAGE_BUILD_GIB = 10.0

_PROBE = (
    "import json, sys, importlib.metadata as m\n"
    "def v(n):\n"
    "    try: return m.version(n)\n"
    "    except Exception: return None\n"
    "print(json.dumps({'python': '%d.%d' % sys.version_info[:2], 'torch': v('torch')}))\n"
)


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    base: str
    inputs_hash: str
    cached: bool
    seconds: float
    size_bytes: int
    install_torch: bool
    wheelhouse: Path | None = None


async def build_base(
    name: str = DEFAULT_BASE,
    *,
    suite: str = "bookworm",
    mirror: str | None = None,
    progress: Progress = print,
) -> str:
    """Make a minimal Debian with Python 3 and import it as `name`; returns the image id."""
    await docker_ready()
    require_program("debootstrap", "install it: `apt-get install -y debootstrap` (Debian/Ubuntu)")
    if os.geteuid() != 0:
        raise ImageError(
            "debootstrap must run as root to build the base image",
            "run `sudo hammer image base`, or pass --base with an image you already have",
        )
    scratch = Path(os.environ.get("HAMMER_BUILD_TMP", "/var/tmp"))
    require_free_space(scratch, 1.0, "the Debian base")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="hammer-base-", dir=scratch))
    root = work / "root"
    try:
        mirror = mirror or os.environ.get("HAMMER_DEBIAN_MIRROR", DEBIAN_MIRROR)
        progress(f"base: debootstrap {suite} from {mirror} (about a minute)")
        result = await run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(BASE_PACKAGES),
                suite,
                str(root),
                mirror,
            ],
            progress=progress,
            limit_s=1800,
        )
        if result.returncode != 0:
            raise fail(
                result,
                "debootstrap",
                f"check that this machine reaches the Debian mirror {mirror} (or set "
                "HAMMER_DEBIAN_MIRROR to one it reaches), then run `hammer image base` again",
            )
        await asyncio.to_thread(_slim_rootfs, root)
        progress(f"base: importing into Docker as {name}")
        result = await _import_rootfs(root, name, suite)
        if result.returncode != 0:
            raise fail(result, "docker import", "check `docker info` and the free space of Docker's data dir")
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    found = await image_labels(name)
    if found is None:
        raise ImageError(f"docker import reported success but {name} is not there", "run the command again")
    progress(f"base: {name} ready in {time.monotonic() - started:.0f} s")
    return found[0]


def _slim_rootfs(root: Path) -> None:
    """Drop what debootstrap downloaded: the .debs and apt lists are ~100 MiB of nothing."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages", "var/log/*.log"):
        for path in root.glob(pattern):
            path.unlink(missing_ok=True)


async def _import_rootfs(root: Path, name: str, suite: str) -> Completed:
    """`tar -C root -c . | docker import - name`, with a pipe between two argv processes."""
    read_fd, write_fd = os.pipe()
    try:
        tar = await asyncio.create_subprocess_exec(
            "tar",
            "--numeric-owner",
            "-C",
            str(root),
            "-c",
            ".",
            stdout=write_fd,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(write_fd)
        write_fd = -1
        importer = run(
            [
                "docker",
                "import",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                f"LABEL {KIND_LABEL}=base org.hammer.suite={suite}",
                "--change",
                'CMD ["python3"]',
                "-",
                name,
            ],
            stdin=read_fd,
            limit_s=1800,
        )
        result, (_, tar_err) = await asyncio.gather(importer, tar.communicate())
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if tar.returncode != 0 and result.returncode == 0:
        return Completed(
            ("tar",), tar.returncode or 1, tuple(tar_err.decode("utf-8", "replace").splitlines()[-8:])
        )
    return result


async def probe_base(base: str) -> dict[str, str | None]:
    """Which Python the base has and whether it already carries torch (a CUDA base does)."""
    result = await run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", base, "-c", _PROBE],
        capture=True,
        limit_s=300,
    )
    if result.returncode != 0:
        raise ImageError(
            f"the base image {base} cannot run python3: {result.tail_text[-300:]}",
            "use a base with Python 3 and its venv module (e.g. `hammer image base`, or a "
            "pytorch/pytorch CUDA image on GPU hosts)",
        )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def runner_files() -> list[Path]:
    """What the image copies to /opt/hammer/sandbox: the package marker and the runner."""
    files = [HERE / "__init__.py"]
    files += sorted(
        p
        for p in RUNNER_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".txt", ".json", ".jsonl")
    )
    return files


def inputs_hash(base_id: str, install_torch: bool) -> str:
    """Hash of every input of the image; equal hash, equal image."""
    digest = hashlib.sha256(f"base={base_id}|torch={install_torch}".encode())
    for path in [DOCKERFILE, *wh.requirement_files(install_torch), *runner_files()]:
        data = path.read_bytes()
        digest.update(f"{os.path.relpath(path, HERE)}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


async def build_image(
    tag: str = DEFAULT_TAG,
    base: str | None = None,
    *,
    wheelhouse: Path | None = None,
    data_dir: Path | None = None,
    force: bool = False,
    allow_cuda_torch: bool = False,
    progress: Progress = print,
) -> BuildResult:
    """Build the sandbox image `tag` on `base` (the debootstrap base, made if missing).

    `wheelhouse` is the exact directory of wheels to use (made there if empty); without it
    the wheelhouse lives under `<data_dir>/wheelhouse/<key>` (data_dir: the gateway's, or
    HAMMER_DATA_DIR, or ~/.local/share/hammer), keyed by the lock files and the Python.
    """
    started = time.monotonic()
    await docker_ready()
    base_name = base or DEFAULT_BASE
    found = await image_labels(base_name)
    if found is None:
        if base is not None:
            raise ImageError(
                f"the base image {base} is not on this machine",
                f"load it first (`docker load -i FILE` or `docker pull {base}` where a registry "
                "is reachable), or leave out --base to build hammer's Debian base",
            )
        progress(f"image: no base image yet, building {DEFAULT_BASE} first")
        await build_base(DEFAULT_BASE, progress=progress)
        found = await image_labels(base_name)
        assert found is not None
    base_id, base_labels, _ = found
    ours = base_labels.get(KIND_LABEL) == "base"
    facts = await probe_base(base_name)
    install_torch = ours or not facts.get("torch")
    digest = inputs_hash(base_id, install_torch)
    existing = await image_labels(tag)
    if existing and not force and existing[1].get(INPUTS_LABEL) == digest:
        progress(f"image: {tag} is up to date (inputs {digest[:12]})")
        return BuildResult(
            tag, existing[0], base_name, digest, True, time.monotonic() - started, existing[2], install_torch
        )
    python = str(facts.get("python"))
    root = (data_dir or wh.default_data_dir()) / "wheelhouse"
    house = wheelhouse or root / wh.wheelhouse_key(python, install_torch)
    house = await wh.ensure_wheelhouse(
        house,
        python=python,
        install_torch=install_torch,
        allow_cuda_torch=allow_cuda_torch,
        progress=progress,
    )
    require_free_space(Path(await _docker_root()), IMAGE_BUILD_GIB, "building the image")
    context = Path(tempfile.mkdtemp(prefix=".context-", dir=house.parent))
    try:
        await asyncio.to_thread(_fill_context, context, house)
        argv = [
            "docker",
            "build",
            "--network",
            "none",
            "--force-rm",
            "--build-arg",
            f"BASE={base_name}",
            "--build-arg",
            f"INSTALL_TORCH={int(install_torch)}",
            "--build-arg",
            f"PIP_CHECK={'strict' if ours else 'warn'}",
            "--label",
            f"{INPUTS_LABEL}={digest}",
            "--label",
            f"{KIND_LABEL}=sandbox",
            "--label",
            f"org.hammer.base={base_name}",
            "-t",
            tag,
            str(context),
        ]
        progress(
            f"image: docker build {tag} on {base_name} (torch from "
            f"{'the wheelhouse' if install_torch else 'the base'})"
        )
        result = await run(argv, progress=progress, env={"DOCKER_BUILDKIT": "0"}, limit_s=3600)
        if result.returncode != 0:
            raise fail(
                result,
                "docker build",
                "read the lines above; a missing wheel means the wheelhouse is stale: delete it "
                f"({house}) and build again",
            )
    finally:
        await asyncio.to_thread(shutil.rmtree, context, True)
    built = await image_labels(tag)
    if built is None:
        raise ImageError(f"docker build finished but {tag} is not there", "run the build again")
    if existing and existing[0] != built[0]:
        # The image this tag named before is now untagged; drop it unless a container uses it.
        await run(["docker", "image", "rm", existing[0]], capture=True, limit_s=120)
    seconds = time.monotonic() - started
    progress(f"image: {tag} built in {seconds:.0f} s ({built[2] / 2**30:.1f} GiB)")
    return BuildResult(tag, built[0], base_name, digest, False, seconds, built[2], install_torch, house)


async def _docker_root() -> str:
    result = await run(["docker", "info", "--format", "{{.DockerRootDir}}"], capture=True, limit_s=60)
    return result.stdout.strip() or "/var/lib/docker"


def _fill_context(context: Path, house: Path) -> None:
    """Dockerfile, lock files, the runner and the wheelhouse (hard links when possible)."""
    shutil.copy2(DOCKERFILE, context / "Dockerfile")
    shutil.copy2(wh.REQUIREMENTS, context / "requirements.txt")
    shutil.copy2(wh.REQUIREMENTS_TORCH, context / "requirements-torch.txt")
    for src in runner_files():
        dest = context / "hammer" / "sandbox" / src.relative_to(HERE)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    target = context / "wheelhouse"
    target.mkdir()
    for wheel in house.iterdir():
        if wheel.name.startswith("."):
            continue
        try:
            os.link(wheel, target / wheel.name)
        except OSError:
            shutil.copy2(wheel, target / wheel.name)
