"""Download access and cache use: what a job that must download may reach and write.

`network = "isolated"` (the default): the job's container still has no network at all
(`NetworkMode: none`, loopback only), so it cannot reach the host, other jobs or
169.254.169.254 whatever the host's routing and firewall say (Docker's own "internal"
networks rely on iptables, and a host route gets round them). Its one way out is a Unix
socket, mounted read-only at `/run/hammer/egress.sock` (connecting needs no write to the
file system), served by the gateway: an allow-listing
HTTPS proxy (sandbox/runner/egress.py) that tunnels `CONNECT host:443` to the model hubs
only, and only to public addresses. Inside, the runner forwards 127.0.0.1:3128 to the
socket and points HTTPS_PROXY there. The socket lives in the job's own folder and is
removed with the job; after a gateway restart it is served again for running jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

from aiodocker.exceptions import DockerError

from gateway import safe_copy
from sandbox.runner.egress import DEFAULT_ALLOW, FORWARD_PORT, SOCKET_IN_SANDBOX, Proxy

from .config import DockerConfig

log = logging.getLogger("hammer.cloud.docker")
JOB_UID = 1000


def proxy_env() -> dict[str, str]:
    """What the job's environment says about the way out (the runner starts the forwarder)."""
    url = f"http://127.0.0.1:{FORWARD_PORT}"
    return {"HAMMER_EGRESS_SOCKET": SOCKET_IN_SANDBOX, "HTTPS_PROXY": url, "https_proxy": url,
            "HTTP_PROXY": url, "http_proxy": url, "NO_PROXY": "localhost,127.0.0.1", "no_proxy": "localhost,127.0.0.1"}


class EgressServers:
    """One allow-listing proxy per downloading job, each on its own Unix socket."""

    def __init__(self, config: DockerConfig) -> None:
        self.allow = tuple(config.egress_allow) or DEFAULT_ALLOW
        self._servers: dict[str, asyncio.AbstractServer] = {}

    @staticmethod
    def folder(job_dir: Path) -> Path:
        return job_dir / "egress"

    async def serve(self, job_id: str, job_dir: Path) -> Path:
        """Serve the job's socket (again, after a restart); returns the folder to mount."""
        folder = self.folder(job_dir)
        if job_id in self._servers:
            return folder
        await asyncio.to_thread(_prepare, folder)
        sock = folder / "egress.sock"
        server = await asyncio.start_unix_server(Proxy(self.allow).handle, path=str(sock))
        await asyncio.to_thread(_open_to_the_job, sock)
        self._servers[job_id] = server
        return folder

    async def release(self, job_id: str, job_dir: Path) -> None:
        server = self._servers.pop(job_id, None)
        if server is not None:
            server.close()
        try:
            await asyncio.to_thread((self.folder(job_dir) / "egress.sock").unlink, True)
        except OSError:
            pass

    async def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()


def _open_to_the_job(sock: Path) -> None:
    """Let uid 1000 connect. The folder is mounted read-only, so the job cannot put a link
    where the socket is; the mode is still only changed on a socket seen with lstat."""
    if not stat.S_ISSOCK(os.lstat(sock).st_mode):
        raise RuntimeError(f"{sock} is not the proxy's socket")
    try:
        os.chown(sock, 0, JOB_UID, follow_symlinks=False)
        os.chmod(sock, 0o660)
    except PermissionError:
        os.chmod(sock, 0o666)


def _prepare(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "egress.sock").unlink(missing_ok=True)
    try:
        os.chown(folder, 0, JOB_UID)
        folder.chmod(0o750)
    except PermissionError:
        folder.chmod(0o755)


async def isolation_problem(docker: object, network: str) -> str | None:
    """For an operator's own download network: why jobs on it could reach the host,
    169.254.169.254 or each other (None: it is internal)."""
    try:
        info = await (await docker.networks.get(network)).show()  # type: ignore[attr-defined]
    except DockerError as exc:
        return f"it does not exist ({exc.message})" if exc.status == 404 else str(exc.message)
    if not info.get("Internal"):
        return ("it is not internal: jobs on it can reach the host, 169.254.169.254 and each other; "
                'use network = "isolated" (no network at all, and hammer\'s allow-listing proxy as the way out)')
    return None


#: The hub caches' folders whose entries are one downloaded model or dataset each (ModelScope:
#: models/<org>/<name>, hub/datasets/<org>/<name>; Hugging Face: hub/models--org--name). Not
#: the libraries' own processing caches (modelscope/datasets/...): those stay per job.
CACHE_ENTRY_DIRS = ("modelscope/models/*", "modelscope/hub/datasets/*", "hf/hub")


def link_shared_cache(cache: Path, workspace: Path) -> None:
    """A job's own hub caches (`<workspace>/.cache`, what MODELSCOPE_CACHE/HF_HOME point at
    when the shared cache is read-only): every model already in the shared cache appears
    there as a link into the read-only `/cache`, so it is found and not downloaded again;
    what the job downloads lands beside them, in its own folder."""
    own = workspace / ".cache"
    for pattern in CACHE_ENTRY_DIRS:
        for folder in sorted(cache.glob(pattern)):
            if safe_copy.kind(folder) != "dir" or not safe_copy.inside(folder, cache):
                continue
            rel = folder.relative_to(cache)
            target_dir = own / rel
            target_dir.mkdir(parents=True, exist_ok=True)
            for entry in folder.iterdir():
                link = target_dir / entry.name
                if not link.exists() and not link.is_symlink():
                    link.symlink_to(Path("/cache") / rel / entry.name)
    try:
        for folder, _dirs, _files in os.walk(own, followlinks=False):  # our own folders; the links stay as they are
            os.chown(folder, JOB_UID, JOB_UID, follow_symlinks=False)
    except PermissionError:
        pass
