"""The container a job runs in: the Docker Engine API body for `POST /containers/create`.

Pure (no I/O), so the hardening is unit-tested without an engine. What it enforces, and
why (DESIGN.md, Sandbox):

* non-root (`User 1000:1000`), no capabilities (`CapDrop ALL`), `no-new-privileges`: a
  job that escapes ms-swift still cannot gain privileges or use setuid binaries;
* read-only root filesystem; the only writable places are /workspace (this job's own
  directory), a size-capped tmpfs /tmp, and /cache (shared downloads) for the jobs that
  fill it (downloads, the demo model): every other job gets /cache read-only;
* memory (with swap equal to memory, i.e. no swap), CPU and pids limits;
* network `none`, also for jobs that download: their one way out is a Unix socket to
  hammer's allow-listing proxy (HTTPS to the model hubs only; network.py);
* the image's ENTRYPOINT (the sandbox runner) runs unchanged: no Cmd override, so the
  argv in job.json is the only program description and nothing is parsed by a shell;
* secrets only as environment at creation, never in argv or in job.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway import safe_copy
from gateway.model import JobSpec

from .config import DockerConfig

GIB = 1024**3
MIB = 1024**2
UID = "1000:1000"
LABEL_JOB = "hammer.job_id"
LABEL_MANAGED = "hammer.managed"
LABEL_INSTANCE = "hammer.instance"  # which gateway (data dir) made the container
RESERVED_TARGETS = ("/workspace", "/cache", "/tmp")


def container_name(job_id: str) -> str:
    return f"hammer-job-{job_id}"


def memory_bytes(spec: JobSpec, config: DockerConfig) -> int:
    gib = config.memory_gib if config.memory_gib is not None else spec.resources.memory_gib
    return max(int(gib * GIB), 6 * MIB)  # the engine refuses less than 6 MiB


def nano_cpus(spec: JobSpec, config: DockerConfig) -> int:
    cpus = config.cpus if config.cpus is not None else spec.resources.cpus
    return int(cpus * 1e9)


JOB_CACHE = "/workspace/.cache"  # a job's own hub caches when it only reads the shared one


def cache_writable(spec: JobSpec, cache: Path) -> bool:
    """Only the jobs that fill the shared cache write it: the dedicated download step
    (`.download`: the hub's own client, which checks what it fetches, and no model code),
    and the first job that builds a demo model or dataset there. Every other job reads it,
    so no job can change the models later jobs load; what a training job downloads itself
    goes to its own cache (`JOB_CACHE`), where the shared entries appear as links."""
    if spec.task == "download":
        return True
    for entry in spec.params.get("prepare", []):
        kind, _, target = str(entry).partition(":")
        if not target.startswith("/cache/"):
            continue
        host = cache / target.removeprefix("/cache/")
        marker = host / "config.json" if kind == "demo_model" else host
        # A job wrote these: a link there (or on the way) counts as missing, never as present.
        if not (safe_copy.inside(marker, cache) and safe_copy.is_regular_file(marker)):
            return True
    return False


def container_body(spec: JobSpec, *, workspace: Path, cache: Path, config: DockerConfig,
                   secrets: Mapping[str, str], gpu_count: int, labels: Mapping[str, str],
                   network: str | None = None, extra_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The create body. `secrets` are already-resolved values (env only); `gpu_count` is
    how many GPUs to request (0: none); `network` the job's download network (default:
    the configured one) and `extra_env` what reaching it needs (the proxy)."""
    mem = memory_bytes(spec, config)
    writable = cache_writable(spec, cache)
    # ms-swift and the datasets library write caches (and lock files) even for local data:
    # a job that only reads the shared cache keeps those in its own workspace.
    own = {} if writable else {"MODELSCOPE_CACHE": f"{JOB_CACHE}/modelscope", "HF_HOME": f"{JOB_CACHE}/hf"}
    env = {**spec.env, **own, **(extra_env or {}), **secrets, "HAMMER_JOB_ID": spec.id}
    mounts = [
        {"Type": "bind", "Source": str(workspace), "Target": "/workspace", "ReadOnly": False},
        {"Type": "bind", "Source": str(cache), "Target": "/cache", "ReadOnly": not writable},
    ]
    for m in spec.mounts:
        target = m.target.rstrip("/")
        if not target.startswith("/") or ".." in Path(target).parts or \
                any(target == r or target.startswith(r + "/") for r in RESERVED_TARGETS) or target == "":
            raise ValueError(f"job {spec.id}: mount target {m.target!r} is not allowed")
        # Inputs (uploads, earlier jobs' outputs, the download proxy's socket) are always
        # read-only, whatever the spec says.
        mounts.append({"Type": "bind", "Source": str(m.source), "Target": target, "ReadOnly": True})
    host: dict[str, Any] = {
        "Mounts": mounts,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "ReadonlyRootfs": True,
        "Tmpfs": {"/tmp": f"rw,nosuid,nodev,size={config.tmp_size},mode=1777"},
        "ShmSize": config.shm_size_mib * MIB,
        "Memory": mem,
        "MemorySwap": mem,
        "NanoCpus": nano_cpus(spec, config),
        "PidsLimit": min(config.pids, spec.resources.pids) if spec.resources.pids else config.pids,
        "NetworkMode": (network or config.network) if spec.needs_network else "none",
        "Privileged": False,
        "IpcMode": "private",
        # One ordered log that is never rotated away: events() numbers its lines from the
        # first, so a resumed stream must see the same lines. (json-file cannot switch
        # rotation off; a size no job reaches overrides any daemon-wide max-size.)
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "100g", "max-file": "1"}},
        "RestartPolicy": {"Name": "no"},
    }
    if gpu_count > 0:
        host["DeviceRequests"] = [{"Driver": "nvidia", "Count": gpu_count, "Capabilities": [["gpu"]]}]
    return {
        "Image": spec.image,
        "User": UID,
        "WorkingDir": "/workspace",
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
        "Labels": {**labels, LABEL_JOB: spec.id, LABEL_MANAGED: "true", "hammer.task": spec.task},
        "AttachStdin": False, "OpenStdin": False, "Tty": False,
        "StopSignal": "SIGTERM",
        "StopTimeout": int(config.grace_period_s),
        "HostConfig": host,
    }
