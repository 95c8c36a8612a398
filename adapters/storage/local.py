"""The local-directory artifact store (the embedded default).

Artifacts and job log archives are copied under `artifacts.path` (default
`<data_dir>/artifacts`) and served by the gateway's own HTTP server at
`/artifacts/<key>`, to signed-in web users and to anyone holding a signed link that has
not expired (`artifacts.link_ttl`); a directory (a LoRA adapter) is shown as a file
listing whose links carry the same signature. Files are always served as downloads.

Copies never follow symbolic links (gateway/safe_copy.py): a link in a job's output is
left out and named in the result. Stored files are 0644 and directories 0755 whatever
mode the job wrote them with (trainers write 0600): artifacts are for sharing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway import safe_copy
from gateway.contracts import PutResult, Services
from gateway.hookspecs import RegisterArtifactStore, hookimpl
from gateway.http import identity
from gateway.webauth import load_key


class LocalStoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = ""


def _safe_key(key: str) -> PurePosixPath:
    p = PurePosixPath(key)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"artifact key {key!r} must be a relative path without '..'")
    return p


class LocalArtifactStore:
    name = "local"
    config_model = LocalStoreConfig

    def __init__(self, config: Mapping[str, Any], services: Services) -> None:
        root = config.get("path") or services.settings.artifacts_dir
        self.root = Path(root).expanduser()
        self.services = services
        self._key: bytes | None = None
        # Open to the gateway's guard: this route checks the session or the link's signature itself.
        services.add_route("GET", "/artifacts/{key:.+}", self._serve, signed=True, prefix="/artifacts/")

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_safe_key(key).parts)

    async def put(self, path: Path, key: str) -> PutResult:
        dest = self._path(key)

        def copy() -> safe_copy.CopyReport:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if safe_copy.kind(path) == "dir":
                tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
                report = safe_copy.copy_tree(path, tmp)
                old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
                if dest.exists():
                    dest.rename(old)
                tmp.rename(dest)
                shutil.rmtree(old, ignore_errors=True)
                return report
            return safe_copy.copy_file(path, dest)

        report = await asyncio.to_thread(copy)
        return PutResult(dest.as_uri(), tuple(report.skipped))

    async def url(self, key: str, expires: float) -> str:
        """A link signed for `key` (and, for a directory, what is under it), valid for
        `expires` seconds: chat users on Slack or Discord need no web account to follow it,
        and nobody can turn it into a link to anything else."""
        safe = _safe_key(key).as_posix()
        suffix = "/" if safe_copy.kind(self._path(key)) == "dir" else ""
        until = int(time.time() + expires)
        return (f"{self.services.public_url.rstrip('/')}/artifacts/{quote(safe)}{suffix}"
                f"?{urlencode({'k': safe, 'exp': until, 'sig': self._sign(safe, until)})}")

    def _sign(self, key: str, until: int) -> str:
        if self._key is None:
            self._key = load_key(self.services.data_dir / "web" / "artifacts.key")
        return hmac.new(self._key, f"{key}\n{until}".encode(), hashlib.sha256).hexdigest()[:40]

    def _allowed(self, request: web.Request, key: str) -> bool:
        """A signed-in web user, or a valid unexpired signature for this key or a folder above it."""
        if identity(request) is not None:
            return True
        signed, sig = request.query.get("k", ""), request.query.get("sig", "")
        try:
            until = int(request.query.get("exp", "0"))
        except ValueError:
            return False
        inside = key == signed or key.startswith(signed.rstrip("/") + "/")
        return bool(signed and sig) and inside and until >= time.time() and \
            hmac.compare_digest(sig, self._sign(signed, until))

    async def get(self, key: str) -> Path:
        path = self._path(key)
        if not path.exists():
            raise FileNotFoundError(f"no artifact {key!r}")
        return path

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        """Files are downloads, never active content on the chat's origin: an artifact named
        `x.html` is saved, not rendered (attachment, octet-stream, nosniff, CSP sandbox)."""
        raw = request.match_info["key"].rstrip("/")
        try:
            path = self._path(raw)
        except ValueError:
            raise web.HTTPBadRequest(text="bad artifact path") from None
        if not self._allowed(request, _safe_key(raw).as_posix()):
            raise web.HTTPForbidden(text="this link has expired or is not valid; ask hammer for a new one "
                                         "(.status JOB shows fresh links), or sign in to the web chat")
        found = safe_copy.kind(path) if safe_copy.inside(path, self.root) else None
        if found == "file":
            name = path.name.replace('"', "")
            return web.FileResponse(path, headers={
                "Content-Type": "application/octet-stream", "X-Content-Type-Options": "nosniff",
                "Content-Disposition": f'attachment; filename="{name}"',
                "Content-Security-Policy": "sandbox; default-src 'none'"})
        if found == "dir":
            query = f"?{request.query_string}" if request.query_string else ""
            files = await asyncio.to_thread(safe_copy.regular_files, path)
            rows = [f'<li><a href="{html.escape(quote(rel) + query)}">{html.escape(rel)}</a> ({size:,} bytes)</li>'
                    for rel, size in files]
            body = f"<!doctype html><title>{html.escape(path.name)}</title><ul>{''.join(rows)}</ul>"
            response = web.Response(text=body, content_type="text/html")
            response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
            return response
        raise web.HTTPNotFound(text="no such artifact (it may have been cleaned up)")


@hookimpl
def hammer_artifact_stores(register: RegisterArtifactStore) -> None:
    register("local", LocalArtifactStore)
