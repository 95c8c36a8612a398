"""The environment check at the start of every job: torch, CUDA or CPU, memory, disk.

torch is probed in a child process: importing it in the runner would keep hundreds of
MiB resident for the whole job, inside the same memory limit as the training. Memory is
the smaller of what the machine has free and what the container's cgroup still allows,
because a container sees the host's /proc/meminfo.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

_PROBE = r"""
import json, importlib.metadata as md
out = {}
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda"] = bool(torch.cuda.is_available())
    out["cuda_version"] = torch.version.cuda
    out["gpus"] = [{"name": torch.cuda.get_device_name(i),
                    "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                   for i in range(torch.cuda.device_count())] if out["cuda"] else []
except Exception as exc:
    out["torch"] = None
    out["torch_error"] = f"{type(exc).__name__}: {exc}"[:300]
for name in ("ms-swift", "transformers", "peft"):
    try:
        out[name.replace("-", "_")] = md.version(name)
    except Exception:
        out[name.replace("-", "_")] = None
print(json.dumps(out))
"""

_CGROUP_LIMITS = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def memory_gib() -> dict[str, float | None]:
    """Free memory as the job can use it: min(host available, cgroup limit - usage)."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit = None
    for limit_path, usage_path in _CGROUP_LIMITS:
        value = _read_int(limit_path)
        if value is not None and value < 2**60:  # "max" or the v1 "no limit" sentinel are not limits
            limit = value
            usage = _read_int(usage_path) or 0
            available = min(available, value - usage) if available is not None else value - usage
            break
    gib = 2**30
    return {
        "memory_free_gib": round(available / gib, 2) if available is not None else None,
        "memory_limit_gib": round(limit / gib, 2) if limit is not None else None,
    }


def cpu_count() -> float:
    """CPUs the job may use: the affinity mask, or fewer when a CFS quota (docker --cpus) is set."""
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        quota_us, period_us = (
            _read_int("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
            _read_int("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
        )
        if quota_us and period_us:
            cpus = min(cpus, quota_us / period_us)
    return round(cpus, 2)


def disk_free_gib(paths: dict[str, Path]) -> dict[str, float | None]:
    free: dict[str, float | None] = {}
    for name, path in paths.items():
        try:
            free[name] = round(shutil.disk_usage(path).free / 2**30, 2)
        except OSError:
            free[name] = None
    return free


async def probe_torch(limit_s: float = 180.0) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PROBE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"torch": None, "torch_error": f"probing torch took more than {limit_s:.0f} s"}
    try:
        return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]
    except (ValueError, IndexError):
        return {"torch": None, "torch_error": err.decode("utf-8", "replace")[-300:]}


async def check_environment(workspace: Path, cache: Path) -> dict[str, Any]:
    info = await probe_torch()
    info["device"] = "cuda" if info.get("cuda") else "cpu"
    info["python"] = ".".join(map(str, sys.version_info[:3]))
    info["cpus"] = cpu_count()
    info.update(memory_gib())
    info["disk_free_gib"] = disk_free_gib({"workspace": workspace, "cache": cache})
    return info
