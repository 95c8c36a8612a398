"""`hammer doctor`: check every part of the setup and say exactly how to fix each problem.

The adapters are built exactly as `hammer serve` builds them (gateway.app.build_adapters);
each contributes its own checks through `check()` (token valid, scopes, channels, Docker
engine, image), declared on every adapter contract.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from gateway.app import Problems, build_adapters, make_services
from gateway.config import Settings
from gateway.contracts import Check
from gateway.plugins import load_plugins
from gateway.store import Store, StoreError

CHECK_TIMEOUT_S = 60


async def run_checks(settings: Settings) -> list[Check]:
    results: list[Check] = [Check(True, "config is valid")]
    results.append(_writable(settings.data_dir))
    results.append(await _store(settings))
    plugins = load_plugins(settings.plugins.model_dump())
    results.append(Check(True, f"plugins loaded: {', '.join(plugins.names)}"))
    results += [Check(False, f"plugin {name}: {msg}", "reinstall it, or disable it in [plugins] / HAMMER_PLUGINS")
                for name, msg in plugins.errors.items]
    problems = Problems(log_them=False)
    services = make_services(settings, plugins)
    built = build_adapters(settings, plugins, services, problems)
    results += [Check(False, f"{where}: {what}", _fix_for(where)) for where, what in problems.items]
    adapters = [("cloud", name, a) for name, a in built.clouds.items()] + \
               [("chat", name, a) for name, a in built.chat.items()]
    for section, name, adapter in adapters:
        try:
            checks = await asyncio.wait_for(adapter.check(), timeout=CHECK_TIMEOUT_S)
        except Exception as exc:
            results.append(Check(False, f"{section}.{name}: check failed: {exc}",
                                 str(getattr(exc, "hint", "")) or _fix_for(f"{section}.{name}")))
            continue
        results += [Check(c.ok, f"{section}.{name}: {c.what}", c.fix) for c in checks] or \
            [Check(True, f"{section}.{name}: configured")]
    for cloud in built.clouds.values():
        await cloud.close()
    return results


def _writable(path: Path) -> Check:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return Check(True, f"data dir {path} is writable")
    except OSError as exc:
        return Check(False, f"data dir {path} is not writable ({exc.strerror})",
                     f"set gateway.data_dir to a directory you own, or fix its permissions (user {os.getuid()})")


async def _store(settings: Settings) -> Check:
    try:
        store = await Store(settings.db_path).open()
        await store.close()
        return Check(True, f"store {settings.db_path} opens")
    except StoreError as exc:
        return Check(False, f"store: {exc}", "move the file aside or set store.path")


def _fix_for(where: str) -> str:
    section = where.split(".")[0]
    if section in ("chat", "cloud"):
        return f"see the message; fix [{where}] (`hammer config check FILE` validates it) or set enabled = false"
    return "see the message; `hammer config check FILE` validates the config"
