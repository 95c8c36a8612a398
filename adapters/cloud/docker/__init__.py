"""hammer's `docker` cloud: jobs as hardened containers on the local Docker engine.

config.py is the `[cloud.docker]` table, container.py the container each job gets (the
hardening), logstream.py the numbering that makes event streams resumable, adapter.py
the CloudAdapter itself. docs/docker.md explains the configuration.
"""

from __future__ import annotations

from gateway.hookspecs import RegisterCloudAdapter, hookimpl

from .adapter import DockerAdapter, DockerUnavailable, ImageMissing
from .config import DockerConfig

__all__ = ["DockerAdapter", "DockerConfig", "DockerUnavailable", "ImageMissing"]


@hookimpl
def hammer_cloud_adapters(register: RegisterCloudAdapter) -> None:
    register("docker", DockerAdapter)
