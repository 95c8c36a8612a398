"""`hammer doctor`: check every part of the setup and say exactly how to fix each problem.

Adapters contribute their own checks through an optional `async def check()` returning
`gateway.contracts.Check`s (token valid, scopes, channels, Docker engine, image).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from aiohttp import web

from gateway.config import Settings, resolve_secret
from gateway.contracts import Check, Services
from gateway.plugins import load_plugins
from gateway.store import Store, StoreError

Result = tuple[bool, str, str]


async def run_checks(settings: Settings) -> list[Result]:
    results: list[Result] = [(True, "config is valid", "")]
    results.append(_writable(settings.data_dir))
    results.append(await _store(settings))
    plugins = load_plugins(settings.plugins.model_dump())
    results.append((True, f"plugins loaded: {', '.join(plugins.names)}", ""))
    results += [(False, f"plugin {name}: {msg}", "reinstall it, or disable it in [plugins] / HAMMER_PLUGINS")
                for name, msg in plugins.errors.items]
    services = Services(data_dir=settings.data_dir, public_url=settings.public_url, secret=resolve_secret,
                        http=web.Application(), settings=settings)
    from gateway.service import build_command_table
    services.extra["commands"] = build_command_table(plugins, settings)
    for section, registry in (("cloud", plugins.cloud_adapters()), ("chat", plugins.chat_adapters())):
        for name, cfg in settings.enabled(section).items():  # type: ignore[arg-type]
            factory = registry.get(name)
            if factory is None:
                results.append((False, f"{section}.{name}: no such adapter installed",
                                f"install the plugin that provides it, or remove [{section}.{name}]"))
                continue
            try:
                adapter = factory({k: v for k, v in cfg.items() if k != "enabled"}, services)
            except Exception as exc:
                results.append((False, f"{section}.{name}: cannot be set up: {exc}", _fix_for(exc)))
                continue
            check = getattr(adapter, "check", None)
            if check is None:
                results.append((True, f"{section}.{name}: configured", ""))
                continue
            try:
                checks: list[Check] = await asyncio.wait_for(check(), timeout=60)
            except Exception as exc:
                results.append((False, f"{section}.{name}: check failed: {exc}", _fix_for(exc)))
                continue
            results += [(c.ok, f"{section}.{name}: {c.what}", c.fix) for c in checks]
            close = getattr(adapter, "close", None)
            if close is not None:
                await close()
    return results


def _writable(path: Path) -> Result:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True, f"data dir {path} is writable", ""
    except OSError as exc:
        return False, f"data dir {path} is not writable ({exc.strerror})", \
            f"set gateway.data_dir to a directory you own, or fix its permissions (user {os.getuid()})"


async def _store(settings: Settings) -> Result:
    try:
        store = await Store(settings.db_path).open()
        await store.close()
        return True, f"store {settings.db_path} opens", ""
    except StoreError as exc:
        return False, f"store: {exc}", "move the file aside or set store.path"


def _fix_for(exc: Exception) -> str:
    hint = getattr(exc, "hint", "")
    return str(hint) if hint else "see the message; `hammer config check FILE` validates the config"
