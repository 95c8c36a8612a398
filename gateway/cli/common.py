"""What the CLI modules share: the consoles, errors that exit, the gateway's REST API, the store."""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp
from rich.console import Console

from gateway.config import Settings
from gateway.store import Store, StoreError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def die(message: str, code: int = 2) -> int:
    err.print(f"hammer: {message}", markup=False)
    return code


def base_url(settings: Settings, url: str | None) -> str:
    return (url or settings.public_url).rstrip("/")


def api_token(settings: Settings) -> str:
    """$HAMMER_API_TOKEN, else the operator's own token the gateway keeps in its data dir
    (readable only by the account that runs hammer)."""
    token = os.environ.get("HAMMER_API_TOKEN", "").strip()
    if token:
        return token
    try:
        return (settings.data_dir / "operator.token").read_text().strip()
    except OSError:
        return ""


def _headers(settings: Settings) -> dict[str, str]:
    token = api_token(settings)
    if not token:
        raise SystemExit(die("no API token: set HAMMER_API_TOKEN (`hammer users token NAME` makes one), or run "
                             "this as the account that runs `hammer serve`"))
    return {"Authorization": f"Bearer {token}"}


async def api(settings: Settings, method: str, path: str, url: str | None, body: Any = None) -> tuple[int, Any]:
    """One REST call to the running gateway; exits with a clear message when none answers."""
    base = base_url(settings, url)
    try:
        async with aiohttp.ClientSession(headers=_headers(settings), timeout=aiohttp.ClientTimeout(total=60)) as s:
            async with s.request(method, base + path, json=body) as resp:
                try:
                    return resp.status, await resp.json(content_type=None)
                except (json.JSONDecodeError, ValueError):
                    text = (await resp.text())[:300]
                    raise SystemExit(die(f"the gateway at {base} answered {resp.status}: {text}")) from None
    except aiohttp.ClientConnectorError:
        raise SystemExit(die(f"no hammer gateway answers at {base}; start it with `hammer serve` "
                             "(or pass --url)")) from None


async def open_store(settings: Settings) -> Store:
    if not settings.db_path.exists():
        raise SystemExit(die(f"no store at {settings.db_path} yet; jobs appear after `hammer serve` ran one"))
    try:
        return await Store(settings.db_path).open()
    except StoreError as exc:
        raise SystemExit(die(str(exc))) from None


def print_event(e: dict[str, Any]) -> None:
    d = e.get("data", {})
    t = e.get("type")
    if t == "progress":
        loss = f" loss {d['loss']:.4f}" if isinstance(d.get("loss"), int | float) else ""
        out.print(f"step {d.get('step')}/{d.get('max_steps')}{loss}", markup=False)
    elif t == "log":
        out.print(f"  {d.get('line', '')}", markup=False, style="dim")
    elif t == "status":
        out.print(f"[{d.get('phase')}]", markup=False)
    elif t == "error":
        out.print(f"error ({d.get('kind')}): {d.get('message')}\n  {d.get('hint', '')}", markup=False)
    elif t == "sample":
        out.print(f"sample: {d.get('prompt')!r} -> {d.get('response')!r}", markup=False)
    else:
        out.print(f"{t}: {json.dumps(d)}", markup=False)
