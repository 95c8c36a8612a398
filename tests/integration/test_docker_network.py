"""Jobs that download, on the real engine: the container has no network at all, and its
one way out is a Unix socket to hammer's allow-listing proxy, which refuses everything but
HTTPS to the model hubs. No traffic leaves this test's own container and process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from adapters.cloud.docker import DockerAdapter
from gateway.app import standalone_services
from gateway.model import JobSpec
from tests.conftest import docker_problem

pytestmark = pytest.mark.docker
IMAGE = os.environ.get("HAMMER_TEST_IMAGE", "hammer-sandbox:latest")

PROBE = r"""
import asyncio, json, os
from sandbox.runner import egress

async def main():
    out = {"routes": open("/proc/net/route").read().strip().count("\n"),
           "interfaces": sorted(os.listdir("/sys/class/net"))}
    await egress.forward(os.environ["HAMMER_EGRESS_SOCKET"])  # what the runner does
    for target in ("evil.example:443", "169.254.169.254:443", "huggingface.co:22"):
        reader, writer = await asyncio.open_connection("127.0.0.1", egress.FORWARD_PORT)
        writer.write(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
        out[target] = (await reader.readline()).decode().strip()
        writer.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def image() -> str:
    problem = docker_problem()
    if problem:
        pytest.skip(problem)
    if _docker("image", "inspect", IMAGE, timeout=30).returncode != 0:
        pytest.skip(f"needs the sandbox image {IMAGE} (`hammer image build`, done by `make test`)")
    return IMAGE


async def test_a_downloading_job_has_no_network_and_only_the_proxy_as_a_way_out(image: str, tmp_path: Path) -> None:
    adapter = DockerAdapter({}, standalone_services(tmp_path / "data", secret=lambda ref: ""))
    spec = JobSpec(id="netjob01", task="sft", model="qwen-7b", image=image, needs_network=True)
    try:
        spec2, network, env = await adapter._download_access(spec)
        assert network == "none" and env["HTTPS_PROXY"] == "http://127.0.0.1:3128"
        [mount] = [m for m in spec2.mounts if m.target == "/run/hammer"]
        assert mount.read_only  # the job cannot put anything where the socket is
        probe = await asyncio.to_thread(
            _docker, "run", "--rm", "--network", "none", "--user", "1000:1000", "--cap-drop", "ALL", "--read-only",
            "-v", f"{mount.source}:/run/hammer:ro", "-e", f"HAMMER_EGRESS_SOCKET={env['HAMMER_EGRESS_SOCKET']}",
            "--entrypoint", "python3", image, "-c", PROBE)
        assert probe.returncode == 0, probe.stderr
        seen = json.loads(probe.stdout.strip().splitlines()[-1])
        assert seen["interfaces"] == ["lo"] and seen["routes"] == 0  # nothing to route anywhere
        for target in ("evil.example:443", "169.254.169.254:443", "huggingface.co:22"):
            assert " 403 " in seen[target], (target, seen[target])
        checks = await adapter.check()
        assert any("jobs have no network" in c.what and c.ok for c in checks)
    finally:
        await adapter.egress.release("netjob01", adapter.workspace_root / "netjob01")
        await adapter.close()
    assert not (adapter.workspace_root / "netjob01" / "egress" / "egress.sock").exists()


async def test_doctor_says_when_an_operators_download_network_is_not_isolated(image: str, tmp_path: Path) -> None:
    name = f"hammer-test-open-{os.getpid()}"
    assert (await asyncio.to_thread(_docker, "network", "create", name)).returncode == 0
    try:
        adapter = DockerAdapter({"network": name}, standalone_services(tmp_path / "d", secret=lambda ref: ""))
        checks = {c.what: c for c in await adapter.check()}
        check = checks[f"download network {name} is isolated"]
        assert not check.ok and "169.254.169.254" in check.fix and '"isolated"' in check.fix
        await adapter.close()
    finally:
        await asyncio.to_thread(_docker, "network", "rm", name)
