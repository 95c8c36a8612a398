"""The local-directory artifact store (the embedded default).

Artifacts and job log archives are copied under `artifacts.path` (default
`<data_dir>/artifacts`) and served by the gateway's own HTTP server at
`/artifacts/<key>`; a directory (a LoRA adapter) is shown as a file listing.

Copies never follow symbolic links (gateway/safe_copy.py): a link in a job's output is
left out and named in the result. Stored files are 0644 and directories 0755 whatever
mode the job wrote them with (trainers write 0600): artifacts are for sharing.
"""

from __future__ import annotations

import asyncio
import html
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway import safe_copy
from gateway.contracts import PutResult, Services
from gateway.hookspecs import RegisterArtifactStore, hookimpl


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
        services.add_route("GET", "/artifacts/{key:.+}", self._serve)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_safe_key(key).parts)

    async def put(self, path: Path, key: str) -> PutResult:
        dest = self._path(key)

        def copy() -> safe_copy.CopyReport:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir() and not path.is_symlink():
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
        """Links on the gateway's own server do not expire (it checks who asks)."""
        suffix = "/" if self._path(key).is_dir() else ""
        return f"{self.services.public_url.rstrip('/')}/artifacts/{_safe_key(key)}{suffix}"

    async def get(self, key: str) -> Path:
        path = self._path(key)
        if not path.exists():
            raise FileNotFoundError(f"no artifact {key!r}")
        return path

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        try:
            path = self._path(request.match_info["key"].rstrip("/"))
        except ValueError:
            raise web.HTTPBadRequest(text="bad artifact path") from None
        if path.is_file():
            return web.FileResponse(path)
        if path.is_dir():
            rows = []
            for child in sorted(path.rglob("*")):
                if child.is_file():
                    rel = child.relative_to(path).as_posix()
                    rows.append(f'<li><a href="{html.escape(rel)}">{html.escape(rel)}</a> '
                                f"({child.stat().st_size:,} bytes)</li>")
            body = f"<!doctype html><title>{html.escape(path.name)}</title><ul>{''.join(rows)}</ul>"
            return web.Response(text=body, content_type="text/html")
        raise web.HTTPNotFound(text="no such artifact (it may have been cleaned up)")


@hookimpl
def hammer_artifact_stores(register: RegisterArtifactStore) -> None:
    register("local", LocalArtifactStore)
