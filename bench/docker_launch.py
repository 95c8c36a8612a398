"""How long the Docker adapter takes to start a job, against a raw `docker run`.

Both sides start the same image with the same hardening flags and wait for the
container's first output line, N times, alternating so that both see the same engine
state. Printed: median and best for
  * adapter: launch() (image check, workspace + job.json, create, start), and launch to
    the first event from events();
  * raw:     `docker run -d` returning (create + start through the CLI), and `docker run`
    to its first output line.

    python bench/docker_launch.py [--image hammer-test-runner:latest] [--runs 10]

The default image is the adapter tests' fake runner (tests/integration/docker_image,
built here FROM hammer-base:bookworm if missing); `--image hammer-sandbox:latest` measures
the real runner (its first event comes after Python imports). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.cloud.docker import DockerAdapter  # noqa: E402
from gateway.app import standalone_services  # noqa: E402
from gateway.model import JobSpec, Resources  # noqa: E402

FAKE_IMAGE = "hammer-test-runner:latest"


def ensure_fake_image() -> None:
    if subprocess.run(["docker", "image", "inspect", FAKE_IMAGE], capture_output=True).returncode == 0:
        return
    subprocess.run(["docker", "build", "--network", "none", "-q", "-t", FAKE_IMAGE,
                    str(ROOT / "tests" / "integration" / "docker_image")], check=True, capture_output=True)


def raw_flags(workspace: Path, cache: Path) -> list[str]:
    """The adapter's hardening, as docker CLI flags."""
    return ["--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only",
            "--tmpfs", "/tmp:rw,nosuid,nodev,size=2g,mode=1777", "--memory", "1g", "--memory-swap", "1g",
            "--cpus", "1", "--pids-limit", "1024", "--network", "none", "--shm-size", "1g",
            "--mount", f"type=bind,source={workspace},target=/workspace",
            "--mount", f"type=bind,source={cache},target=/cache", "-w", "/workspace"]


async def adapter_once(adapter: DockerAdapter, image: str, i: int) -> tuple[float, float]:
    spec = JobSpec(id=f"bench-{i}-{int(time.time() * 1000) % 10**8}", task="bench", model="none",
                   params={"fake": "events", "n": 1}, argv=("fake-runner",), image=image,
                   resources=Resources(memory_gib=1, cpus=1))
    t0 = time.perf_counter()
    placement = await adapter.launch(spec)
    t_launch = time.perf_counter() - t0
    gen = adapter.events(placement)
    await gen.__anext__()
    t_first = time.perf_counter() - t0
    await gen.aclose()
    await adapter.cancel(placement)
    return t_launch, t_first


async def raw_once(image: str, workspace: Path, cache: Path) -> tuple[float, float]:
    flags = raw_flags(workspace, cache)
    t0 = time.perf_counter()
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec("docker", "run", "-d", *flags, image,
                                                stdout=pipe, stderr=pipe)
    out, _ = await proc.communicate()
    t_detached = time.perf_counter() - t0
    await (await asyncio.create_subprocess_exec("docker", "rm", "-f", out.decode().strip(),
                                                stdout=asyncio.subprocess.DEVNULL)).wait()
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec("docker", "run", "--rm", *flags, image,
                                                stdout=pipe, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    await proc.stdout.readline()
    t_first = time.perf_counter() - t0
    proc.kill()
    await proc.wait()
    return t_detached, t_first


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=FAKE_IMAGE)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if args.image == FAKE_IMAGE:
        ensure_fake_image()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        services = standalone_services(data, secret=lambda r: "")
        adapter = DockerAdapter({"grace_period_s": 1}, services)
        ws, cache = data / "raw-ws", data / "cache"
        for d in (ws, cache):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o777)
        (ws / "job.json").write_text(json.dumps({"id": "raw", "argv": ["fake-runner"],
                                                 "params": {"fake": "events", "n": 1}}))
        (ws / "job.json").chmod(0o644)
        a_launch, a_first, r_detached, r_first = [], [], [], []
        try:
            await adapter_once(adapter, args.image, -1)  # warm-up: engine caches, API version
            await raw_once(args.image, ws, cache)
            for i in range(args.runs):
                launch, first = await adapter_once(adapter, args.image, i)
                a_launch.append(launch)
                a_first.append(first)
                detached, rfirst = await raw_once(args.image, ws, cache)
                r_detached.append(detached)
                r_first.append(rfirst)
        finally:
            await adapter.close()

    def fmt(xs: list[float]) -> str:
        return f"median {statistics.median(xs) * 1000:7.1f} ms   best {min(xs) * 1000:7.1f} ms"

    print(f"image {args.image}, {args.runs} runs each")
    print(f"adapter launch (create+start)      {fmt(a_launch)}")
    print(f"docker run -d                      {fmt(r_detached)}")
    print(f"adapter launch -> first event      {fmt(a_first)}")
    print(f"docker run -> first line           {fmt(r_first)}")
    med = statistics.median
    print(f"ratio launch / docker run -d       {med(a_launch) / med(r_detached):.2f}")
    print(f"ratio first event / first line     {med(a_first) / med(r_first):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
