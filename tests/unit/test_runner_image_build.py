"""The image build logic that needs no Docker: input hashing, the build context, the lock
files, the CUDA-torch guard and the errors an operator sees when a tool is missing."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from sandbox import build, hostcmd
from sandbox import wheelhouse as wh
from sandbox.hostcmd import Completed, ImageError


def test_input_hash_is_stable_and_follows_base_and_torch_mode() -> None:
    one = build.inputs_hash("sha256:aaa", True)
    assert one == build.inputs_hash("sha256:aaa", True)
    assert one != build.inputs_hash("sha256:bbb", True)
    assert one != build.inputs_hash("sha256:aaa", False)


def test_input_hash_follows_the_runner_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = tmp_path / "runner"
    runner.mkdir()
    (runner / "x.py").write_text("a = 1\n")
    (tmp_path / "__init__.py").write_text("")
    monkeypatch.setattr(build, "RUNNER_DIR", runner)
    monkeypatch.setattr(build, "HERE", tmp_path)
    monkeypatch.setattr(build, "DOCKERFILE", tmp_path / "Dockerfile")
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    before = build.inputs_hash("b", True)
    (runner / "x.py").write_text("a = 2\n")
    assert build.inputs_hash("b", True) != before
    (runner / "__pycache__").mkdir()
    (runner / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    assert build.inputs_hash("b", True) == build.inputs_hash("b", True)


def test_lock_files_pin_everything_and_keep_torch_apart() -> None:
    pins = [line for line in wh.REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in pins)
    names = {line.split("==")[0] for line in pins}
    assert {"ms-swift", "transformers", "peft", "tokenizers", "matplotlib", "tensorboard"} <= names
    assert "torch" not in names
    assert "ms-swift==4.6.0" in pins
    torch_pins = [line for line in wh.REQUIREMENTS_TORCH.read_text().splitlines() if line and line[0] != "#"]
    assert torch_pins == ["torch==2.13.0"]


def test_wheelhouse_key_changes_with_python_and_torch_mode() -> None:
    keys = {
        wh.wheelhouse_key("3.11", True),
        wh.wheelhouse_key("3.12", True),
        wh.wheelhouse_key("3.11", False),
    }
    assert len(keys) == 3


def _wheel(path: Path, requires: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        meta = "Metadata-Version: 2.1\nName: torch\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
        zf.writestr("torch-2.13.0.dist-info/METADATA", meta)
    return path


def test_a_cuda_torch_wheel_is_refused_for_a_cpu_image(tmp_path: Path) -> None:
    _wheel(tmp_path / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl", ["filelock", "sympy"])
    wh._refuse_cuda_torch(tmp_path)  # a CPU build passes
    _wheel(
        tmp_path / "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        ["nvidia-cublas-cu12==12.8; platform_system == 'Linux'", "filelock"],
    )
    with pytest.raises(ImageError) as info:
        wh._refuse_cuda_torch(tmp_path)
    assert "CUDA build of torch" in info.value.message and "--base" in info.value.hint


async def test_wheelhouse_for_another_python_is_refused_with_a_way_out(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        await wh.ensure_wheelhouse(tmp_path / "w", python="3.9", install_torch=True, progress=lambda _: None)
    assert "Python 3.9" in info.value.message and "base image" in info.value.hint


async def test_a_complete_wheelhouse_is_reused(tmp_path: Path) -> None:
    (tmp_path / wh.COMPLETE_MARKER).write_text("x")
    seen: list[str] = []
    assert (
        await wh.ensure_wheelhouse(tmp_path, python="3.9", install_torch=True, progress=seen.append)
        == tmp_path
    )
    assert "reusing" in seen[0]


def test_build_context_holds_runner_but_no_host_code(tmp_path: Path) -> None:
    house = tmp_path / "house"
    house.mkdir()
    (house / "a-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (house / wh.COMPLETE_MARKER).write_text("x")
    context = tmp_path / "ctx"
    context.mkdir()
    build._fill_context(context, house)
    assert (context / "Dockerfile").is_file() and (context / "requirements.txt").is_file()
    assert (context / "hammer" / "sandbox" / "runner" / "__main__.py").is_file()
    assert (context / "hammer" / "sandbox" / "__init__.py").is_file()
    assert not (context / "hammer" / "sandbox" / "build.py").exists()
    assert [p.name for p in (context / "wheelhouse").iterdir()] == ["a-1.0-py3-none-any.whl"]
    assert (context / "wheelhouse" / "a-1.0-py3-none-any.whl").stat().st_ino == (
        house / "a-1.0-py3-none-any.whl"
    ).stat().st_ino


async def test_no_docker_cli_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ImageError) as info:
        await hostcmd.docker_ready()
    assert "docker" in info.value.message and "docker-up.sh" in info.value.hint


async def test_engine_down_says_how_to_start_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ImageError) as info:
        await hostcmd.docker_ready()
    assert "no Docker engine is reachable" in info.value.message and "Cannot connect" in info.value.message
    assert "docker-up.sh" in info.value.hint


async def test_missing_debootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    async def ready() -> None:
        return None

    monkeypatch.setattr(build, "docker_ready", ready)
    monkeypatch.setattr(hostcmd.shutil, "which", lambda name: None)
    with pytest.raises(ImageError) as info:
        await build.build_base(progress=lambda _: None)
    assert "debootstrap" in info.value.message and "apt-get install" in info.value.hint


def test_a_full_disk_is_named_as_such() -> None:
    result = Completed(
        ("docker", "build"), 1, ("Step 9/22 : RUN pip install", "write /var/lib/x: no space left on device")
    )
    error = hostcmd.fail(result, "docker build", "generic")
    assert "disk is full" in error.message and "docker system prune" in error.hint
    other = hostcmd.fail(Completed(("x",), 2, ("boom",)), "docker build", "read the lines above")
    assert "boom" in other.message and other.hint == "read the lines above"


def test_too_little_space_is_refused_before_starting(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        hostcmd.require_free_space(tmp_path / "not" / "yet", 10**6, "the image")
    assert "GiB free" in info.value.message


async def test_run_streams_lines_and_keeps_the_tail() -> None:
    seen: list[str] = []
    result = await hostcmd.run(
        ["sh", "-c", "for i in 1 2 3; do echo line$i; done; echo err >&2; exit 3"],
        progress=seen.append,
        tail=2,
    )
    assert (
        result.returncode == 3
        and seen == ["line1", "line2", "line3", "err"]
        and result.tail == ("line3", "err")
    )
    with pytest.raises(ImageError):
        await hostcmd.run(["sleep", "5"], limit_s=0.2)
