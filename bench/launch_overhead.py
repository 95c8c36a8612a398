"""Launch overhead: from "command accepted" to the runner's first event, through hammer
(parse, policy, estimate, store, Docker adapter, log stream) versus a raw `docker run` of
the same image with the same hardening flags and the same job file, measured in the same
run, alternating so both see the same machine state. Prints both and the ratio.

    python bench/launch_overhead.py [--rounds 5] [--image hammer-sandbox:latest]

Target (issue 3): gateway overhead under 10% of the raw launch.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.app import Hammer  # noqa: E402
from gateway.config import parse_settings  # noqa: E402
from gateway.model import Actor, Conversation, Job  # noqa: E402

COMMAND = ".finetune demo-lora demo"


def config(data: Path, cache: Path, image: str) -> str:
    return (f'[gateway]\ndata_dir = "{data}"\ndefault_cloud = "docker"\n[http]\nport = 0\n'
            f'[cloud.docker]\ncache_dir = "{cache}"\ngrace_period_s = 1\n'
            f'[jobs]\nimage = "{image}"\nmemory_gib = 6\ncpus = 2\nmax_concurrent_per_user = 100\n')


async def through_hammer(hammer: Hammer) -> tuple[float, Job]:
    first = asyncio.Event()
    assert hammer.orchestrator is not None
    hammer.orchestrator.on_event = lambda job, event: first.set()
    t0 = time.perf_counter()
    job = await hammer.execute(COMMAND, Actor("bench", "bench"), Conversation("bench", "bench"))
    await asyncio.wait_for(first.wait(), 300)
    elapsed = time.perf_counter() - t0
    assert isinstance(job, Job)
    await hammer.orchestrator.cancel(job.id, "benchmark")
    return elapsed, job


async def raw_docker_run(image: str, workspace: Path, cache: Path) -> float:
    """`docker run` with the flags hammer uses; time to the first line on stdout."""
    argv = ["docker", "run", "--rm", "--user", "1000:1000", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--read-only",
            "--tmpfs", "/tmp:rw,nosuid,nodev,size=2g,mode=1777", "--shm-size", "1g",
            "--memory", "6g", "--memory-swap", "6g", "--cpus", "2", "--pids-limit", "1024",
            "--network", "none", "--ipc", "private",
            "--mount", f"type=bind,source={workspace},target=/workspace",
            "--mount", f"type=bind,source={cache},target=/cache", image]
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 300)
    elapsed = time.perf_counter() - t0
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
    return elapsed


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--image", default="hammer-sandbox:latest")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hammer-bench-"))
    cache = tmp / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    hammer = Hammer(parse_settings(config(tmp / "data", cache, args.image)))
    await hammer.start()
    gw: list[float] = []
    raw: list[float] = []
    try:
        _, warm = await through_hammer(hammer)  # warm-up: image layers and page cache
        workspace = tmp / "raw-workspace"
        for i in range(args.rounds):
            g, job = await through_hammer(hammer)
            gw.append(g)
            shutil.rmtree(workspace, ignore_errors=True)
            workspace.mkdir(mode=0o777)
            workspace.chmod(0o777)
            (workspace / "job.json").write_text(job.spec.to_json())
            (workspace / "job.json").chmod(0o644)
            raw.append(await raw_docker_run(args.image, workspace, cache))
            print(f"round {i + 1}: hammer {g * 1000:7.1f} ms   raw docker run {raw[-1] * 1000:7.1f} ms", flush=True)
    finally:
        await hammer.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    g_med, r_med = statistics.median(gw), statistics.median(raw)
    print(f"\ncommand accepted -> first runner event, median of {args.rounds}:")
    print(f"  through hammer : {g_med * 1000:8.1f} ms")
    print(f"  raw docker run : {r_med * 1000:8.1f} ms")
    print(f"  ratio          : {g_med / r_med:8.3f}  (overhead {(g_med - r_med) / r_med:+.1%}; target < +10%)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
