"""The local-directory artifact store (the embedded default).

Artifacts and job log archives are copied under `artifacts.path` (default
`<data_dir>/artifacts`) and served by the gateway's own HTTP server at
`/artifacts/<key>`; a directory (a LoRA adapter) is shown as a file listing.
"""

from __future__ import annotations

import asyncio
import html
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway.contracts import Services
from gateway.hookspecs import hookimpl


class LocalStoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = ""


def _safe_key(key: str) -> PurePosixPath:
    p = PurePosixPath(key)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"artifact key {key!r} must be a relative path without '..'")
    return p


def _shareable(path: Path) -> None:
    """Artifacts are for sharing (a link in chat, a later job's read-only mount): files
    0644, directories 0755, whatever mode the job wrote them with (trainers write 0600)."""
    items = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in items:
        item.chmod(0o755 if item.is_dir() else 0o644)


class LocalArtifactStore:
    name = "local"
    config_model = LocalStoreConfig

    def __init__(self, config: Mapping[str, Any], services: Services) -> None:
        settings = services.settings
        default = settings.artifacts_dir if settings is not None else services.data_dir / "artifacts"
        root = config.get("path") or default
        self.root = Path(root).expanduser()
        self.public_url = services.public_url.rstrip("/")
        if services.http is not None:
            services.http.router.add_get("/artifacts/{key:.+}", self._serve)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_safe_key(key).parts)

    async def put(self, path: Path, key: str) -> str:
        dest = self._path(key)

        def copy() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                tmp = dest.with_name(dest.name + ".partial")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(path, tmp)
                shutil.rmtree(dest, ignore_errors=True)
                tmp.rename(dest)
            else:
                tmp = dest.with_name(dest.name + ".partial")
                shutil.copyfile(path, tmp)
                tmp.replace(dest)

        await asyncio.to_thread(copy)
        await asyncio.to_thread(_shareable, dest)
        return dest.as_uri()

    async def url(self, key: str, expires: float = 7 * 24 * 3600) -> str:
        suffix = "/" if self._path(key).is_dir() else ""
        return f"{self.public_url}/artifacts/{_safe_key(key)}{suffix}"

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
def hammer_artifact_stores(register: Any) -> None:
    register("local", LocalArtifactStore)
