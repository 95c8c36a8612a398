"""The sandbox image, built for real (debootstrap base, offline wheelhouse, docker build
--network none) and run the way the Docker adapter runs it: read-only, no network, no
capabilities, uid 1000, the workspace and cache as volumes.

The first build takes minutes (base ~1 min, wheelhouse and install ~4 min); the base,
the wheelhouse (under the hammer data dir) and the image stay on the machine, so later
runs only check the input hash.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.build import DEFAULT_TAG, BuildResult, build_image
from sandbox.hostcmd import ImageError
from tests.conftest import docker_problem
from tests.demo_argv import demo_lora_argv

pytestmark = pytest.mark.docker
TAG = os.environ.get("HAMMER_TEST_SANDBOX_IMAGE", DEFAULT_TAG)
HARDENING = [
    "--network",
    "none",
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--user",
    "1000",
    "--pids-limit",
    "512",
]




@pytest.fixture(scope="module")
def image() -> BuildResult:
    problem = docker_problem()
    if problem:
        pytest.skip(problem)
    lines: list[str] = []
    try:
        result = asyncio.run(build_image(TAG, progress=lines.append))
    except ImageError as exc:
        pytest.fail(f"image build failed: {exc}\n" + "\n".join(lines[-40:]))
    print(f"\nimage {TAG}: {'cached' if result.cached else 'built'} in {result.seconds:.1f} s")
    return result


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sandbox-cache")
    path.chmod(0o777)
    return path


def _workspace(root: Path, spec: dict[str, Any]) -> Path:
    ws = root / "ws"
    ws.mkdir()
    ws.chmod(0o777)
    (ws / "job.json").write_text(json.dumps(spec))
    (ws / "job.json").chmod(0o644)
    return ws


def _argv(ws: Path, cache: Path, name: str, *extra: str) -> list[str]:
    return [
        "docker",
        "run",
        "--rm",
        "--name",
        name,
        *HARDENING,
        "-v",
        f"{ws}:/workspace",
        "-v",
        f"{cache}:/cache",
        *extra,
        TAG,
    ]


def demo_spec(epochs: int = 2) -> dict[str, Any]:
    argv = demo_lora_argv(Path("/cache"), Path("/workspace/output"), epochs)
    return {
        "id": "img-1",
        "task": "sft",
        "model": "demo",
        "argv": argv,
        "params": {
            "prepare": ["demo_model:/cache/models/demo", "demo_dataset:/cache/datasets/demo.jsonl"],
            "validate_datasets": ["/cache/datasets/demo.jsonl"],
        },
    }


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"hammer-test-{os.getpid()}-{time.monotonic_ns() % 10**8}"
    yield name
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def test_rebuild_with_nothing_changed_is_a_no_op(image: BuildResult) -> None:
    started = time.monotonic()
    again = asyncio.run(build_image(TAG, progress=lambda _: None))
    took = time.monotonic() - started
    print(f"\ncached rebuild: {took:.1f} s")
    assert (
        again.cached is True and again.image_id == image.image_id and again.inputs_hash == image.inputs_hash
    )


def test_image_user_entrypoint_and_contents(image: BuildResult) -> None:
    probe = (
        "import os, json, importlib.util as u; print(json.dumps({'uid': os.getuid(), 'cwd': os.getcwd(), "
        "'gateway': bool(u.find_spec('gateway')), 'plugins': bool(u.find_spec('plugins')), "
        "'runner': bool(u.find_spec('sandbox.runner')), 'home': os.environ['HOME'], "
        "'offline': os.environ['HF_HUB_OFFLINE']}))"
    )
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", TAG, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert facts == {
        "uid": 1000,
        "cwd": "/workspace",
        "gateway": False,
        "plugins": False,
        "runner": True,
        "home": "/tmp/home",
        "offline": "1",
    }
    inspect = json.loads(
        subprocess.run(["docker", "image", "inspect", TAG], capture_output=True, text=True, timeout=60).stdout
    )[0]["Config"]
    assert inspect["Entrypoint"] == ["python3", "-m", "sandbox.runner"] and inspect["User"] == "1000:1000"
    assert inspect["Labels"]["org.hammer.inputs"] == image.inputs_hash


def test_demo_job_in_the_hardened_container(
    image: BuildResult, cache_dir: Path, tmp_path: Path, container_name: str
) -> None:
    ws = _workspace(tmp_path, demo_spec())
    started = time.monotonic()
    out = subprocess.run(_argv(ws, cache_dir, container_name), capture_output=True, text=True, timeout=900)
    took = time.monotonic() - started
    print(f"\ndemo job in the container (cold cache: demo model made too): {took:.1f} s")
    events = _events(out.stdout)
    assert out.returncode == 0, "\n".join(str(e) for e in events[-20:]) + out.stderr[-2000:]
    assert out.stderr.strip() == ""  # only the runner writes, and only to stdout
    checking = next(e for e in events if e.get("phase") == "checking")
    assert (
        checking["device"] == "cpu"
        and checking["torch"].startswith("2.13.0")
        and checking["ms_swift"] == "4.6.0"
    )
    progress = [e for e in events if e["type"] == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(p["loss"], float) and p["loss"] > 0 for p in progress)
    assert [e for e in events if e["type"] == "sample"]
    artifacts = {e["name"]: e["path"] for e in events if e["type"] == "artifact"}
    assert {"adapter", "loss_curve", "report", "logs"} <= set(artifacts)
    assert (ws / artifacts["adapter"] / "adapter_model.safetensors").is_file()
    assert (ws / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((ws / "report.json").read_text())["ok"] is True
    assert events[-1]["type"] == "result" and events[-1]["ok"] is True
    assert (cache_dir / "models" / "demo" / "config.json").is_file()


def test_bad_dataset_fails_fast_in_the_container(
    image: BuildResult, cache_dir: Path, tmp_path: Path, container_name: str
) -> None:
    spec = demo_spec()
    spec["argv"][spec["argv"].index("/cache/datasets/demo.jsonl")] = "/workspace/mine.jsonl"
    spec["params"] = {"validate_datasets": ["/workspace/mine.jsonl"]}
    ws = _workspace(tmp_path, spec)
    (ws / "mine.jsonl").write_text(
        '{"query": "a", "response": "b"}\n{"query": "c", "response": "d"}\n{oops\n'
    )
    (ws / "mine.jsonl").chmod(0o644)
    out = subprocess.run(_argv(ws, cache_dir, container_name), capture_output=True, text=True, timeout=300)
    events = _events(out.stdout)
    assert out.returncode == 2
    error = next(e for e in events if e["type"] == "error")
    assert error["kind"] == "dataset" and error["line"] == 3 and "line 3" in error["message"]
    assert not any(e["type"] == "progress" for e in events)


def test_sigterm_cancels_the_job_in_the_container(
    image: BuildResult, cache_dir: Path, tmp_path: Path, container_name: str
) -> None:
    ws = _workspace(tmp_path, demo_spec(epochs=50))
    proc = subprocess.Popen(_argv(ws, cache_dir, container_name), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 600
    for line in proc.stdout:  # bounded by the job's own end and the deadline
        seen.append(json.loads(line))
        if seen[-1]["type"] == "progress" or time.monotonic() > deadline:
            break
    stop = subprocess.run(["docker", "stop", "-t", "60", container_name], capture_output=True, timeout=120)
    rest, _ = proc.communicate(timeout=120)
    seen += _events(rest)
    assert stop.returncode == 0
    assert proc.returncode == 143
    assert seen[-1]["type"] == "status" and seen[-1]["phase"] == "cancelled"
    gone = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name={container_name}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gone.stdout.strip() == ""
