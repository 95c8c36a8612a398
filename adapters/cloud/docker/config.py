"""`[cloud.docker]`: how hammer runs jobs on the local Docker engine.

Every key has a default that works on a laptop with Docker installed; see docs/docker.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SECRET_REF = r"^(env|file):\S+$"


class DockerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: The engine's API endpoint; empty: $DOCKER_HOST, else unix:///var/run/docker.sock.
    url: str = ""
    #: Keep exited job containers (for debugging with `docker logs`); cleanup removes them otherwise.
    keep_containers: bool = False
    #: Host directory of job workspaces (<root>/<job id>/workspace); empty: <data_dir>/jobs.
    workspace_root: str = ""
    #: Host directory mounted at /cache in every job (hub downloads, the demo model); empty: <data_dir>/cache.
    cache_dir: str = ""
    #: Seconds between SIGTERM and SIGKILL when a job is cancelled.
    grace_period_s: float = Field(10.0, ge=0, le=600)
    #: Hard local limits that override what a job asks for (None: the job's own, from [jobs]).
    memory_gib: float | None = Field(None, gt=0.005)
    cpus: float | None = Field(None, gt=0)
    #: Most processes/threads one job may run (fork bombs stop here).
    pids: int = Field(1024, ge=16, le=1_000_000)
    #: /tmp inside the job (tmpfs, counts against its memory) and /dev/shm (dataloader workers).
    tmp_size: str = Field("2g", pattern=r"^[0-9]+[kmg]?$")
    shm_size_mib: int = Field(1024, ge=1, le=1_048_576)
    #: "auto": use the host's NVIDIA GPUs when nvidia-smi finds them; "none": never.
    gpus: Literal["auto", "none"] = "auto"
    #: Jobs that must download (hub models, datasets): "isolated" keeps their container
    #: without any network too, and gives it one way out: a Unix socket to hammer's proxy,
    #: which allows HTTPS to `egress_allow` hosts only (network.py); "none" refuses
    #: downloads; any other name is an operator's own Docker network (`hammer doctor` checks
    #: that it is internal). Jobs that need no network always get "none".
    network: str = "isolated"
    #: Host patterns the download proxy allows (HTTPS, port 443); empty: the model hubs.
    egress_allow: list[str] = []
    #: Secret names a job may ask for -> references resolved when its container is created,
    #: e.g. {HF_TOKEN = "env:HF_TOKEN", MODELSCOPE_API_TOKEN = "file:~/.modelscope-token"}.
    secrets: dict[str, str] = {}
    #: Extra labels on every job container.
    labels: dict[str, str] = {}

    @field_validator("secrets")
    @classmethod
    def _refs(cls, value: dict[str, str]) -> dict[str, str]:
        import re
        for name, ref in value.items():
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                raise ValueError(f"secret name {name!r} must be an environment variable name (A-Z, 0-9, _)")
            if not re.fullmatch(SECRET_REF, ref):
                raise ValueError(f"secrets.{name} must be a reference, env:NAME or file:PATH "
                                 "(never the value itself)")
        return value
