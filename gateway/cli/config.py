"""`hammer config check FILE` and `hammer config show [FILE]`."""

from __future__ import annotations

from pathlib import Path

from gateway.app import Problems, adapter_validators, build_adapters, make_services
from gateway.cli.common import err, out
from gateway.config import ConfigError, load_settings, read_config, render_layered
from gateway.plugins import load_plugins


def check(path: Path) -> int:
    """Validate a file over the defaults, then build its adapters the way `serve` does."""
    try:
        settings = load_settings(path, adapter_validators(load_plugins()))
    except ConfigError as exc:
        err.print(exc.render(), markup=False)
        return 2
    plugins = load_plugins(settings.plugins.model_dump())
    problems = Problems(log_them=False)
    services = make_services(settings, plugins)
    built = build_adapters(settings, plugins, services, problems)
    if problems.items:
        err.print(ConfigError(str(path), problems.items).render(), markup=False)
        return 2
    out.print(f"{path}: ok (chat: {', '.join(built.chat) or 'none'}; clouds: {', '.join(built.clouds) or 'none'})",
              markup=False)
    return 0


def show(path: str | None) -> int:
    """The merged configuration, each value commented with where it came from."""
    try:
        layered = read_config(path)
        load_settings(path)
    except ConfigError as exc:
        err.print(exc.render(), markup=False)
        return 2
    print(render_layered(layered), end="")
    return 0
