"""The plugin manager: finds plugins through the `hammer` entry-point group.

Built-in adapters and task plugins are registered through the same entry points as any
third-party plugin. Which ones load is chosen by configuration (`[plugins]`) or by the
`HAMMER_PLUGINS` environment variable:

* `HAMMER_PLUGINS=web,docker,finetune` loads only those entry points;
* `HAMMER_PLUGINS=+mypkg.myplugin` loads every entry point *and* the module
  `mypkg.myplugin` (any importable module with hook implementations);
* `HAMMER_PLUGINS=-slack` loads every entry point except `slack`.

A plugin that fails to import or raises in a hook is logged with its name and skipped;
the gateway keeps serving with the others.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from gateway import hookspecs

log = logging.getLogger("hammer.plugins")

ENTRY_POINT_GROUP = "hammer"


@dataclass(frozen=True)
class PluginSelection:
    """Which entry points to load (`only`: None = all), which to skip, extra modules."""

    only: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    modules: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None, base: PluginSelection | None = None) -> PluginSelection:
        sel = base or cls()
        if not text:
            return sel
        only: set[str] | None = None
        exclude, modules = set(sel.exclude), list(sel.modules)
        for item in (t.strip() for t in text.split(",")):
            if not item:
                continue
            if item.startswith("+"):
                modules.append(item[1:])
            elif item.startswith("-"):
                exclude.add(item[1:])
            else:
                only = (only or set()) | {item}
        return cls(frozenset(only) if only is not None else sel.only, frozenset(exclude), tuple(modules))


@dataclass
class PluginErrors:
    """Problems met while loading plugins, reported by `hammer doctor`."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, plugin: str, message: str) -> None:
        self.items.append((plugin, message))


class Plugins:
    """pluggy's PluginManager plus the registries the `register` hooks fill."""

    def __init__(self, selection: PluginSelection | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.errors = PluginErrors()
        self.selection = selection or PluginSelection()
        self._loaded = False

    # -- loading -----------------------------------------------------------------
    def load(self) -> Plugins:
        if self._loaded:
            return self
        self._loaded = True
        sel = self.selection
        for ep in _entry_points():
            if (sel.only is not None and ep.name not in sel.only) or ep.name in sel.exclude:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                self.pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin must not take the gateway down
                log.error("plugin %s failed to load: %s", ep.name, exc, extra={"plugin": ep.name})
                self.errors.add(ep.name, f"failed to load: {exc}")
        for mod in sel.modules:
            self.add_module(mod)
        return self

    def add_module(self, dotted: str) -> None:
        try:
            module = importlib.import_module(dotted)
            if not self.pm.is_registered(module):
                self.pm.register(module, name=dotted)
        except Exception as exc:
            log.error("plugin module %s failed to load: %s", dotted, exc)
            self.errors.add(dotted, f"failed to load: {exc}")

    def register(self, plugin: object, name: str | None = None) -> None:
        self.pm.register(plugin, name=name)

    @property
    def names(self) -> list[str]:
        return sorted(n for n, _ in self.pm.list_name_plugin())

    # -- registries ----------------------------------------------------------------
    def _collect(self, hook_name: str) -> list[tuple[str, tuple[Any, ...]]]:
        """Call a `register` hook once per plugin so a failing plugin is isolated."""
        found: list[tuple[str, tuple[Any, ...]]] = []
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            batch: list[tuple[Any, ...]] = []
            try:
                impl.function(lambda *args, _batch=batch: _batch.append(args))
            except Exception as exc:
                log.error("plugin %s raised in %s: %s", plugin_name, hook_name, exc)
                self.errors.add(plugin_name, f"{hook_name} raised: {exc}")
                continue
            found += [(plugin_name, args) for args in batch]
        return found

    def _named(self, hook_name: str) -> dict[str, Callable[..., Any]]:
        out: dict[str, Callable[..., Any]] = {}
        for plugin_name, args in self._collect(hook_name):
            name, factory = args[0], args[1]
            if name in out:
                log.warning("%s: %r registered twice; %s wins", hook_name, name, plugin_name)
            out[name] = factory
        return out

    def chat_adapters(self) -> dict[str, Callable[..., Any]]:
        return self._named("hammer_chat_adapters")

    def cloud_adapters(self) -> dict[str, Callable[..., Any]]:
        return self._named("hammer_cloud_adapters")

    def artifact_stores(self) -> dict[str, Callable[..., Any]]:
        return self._named("hammer_artifact_stores")

    def command_specs(self) -> list[Any]:
        return [args[0] for _, args in self._collect("hammer_commands")]

    # -- observers and vetoes --------------------------------------------------------
    def job_event(self, job: Any, event: Any) -> None:
        for impl in self.pm.hook.hammer_job_event.get_hookimpls():
            try:
                impl.function(job=job, event=event)
            except Exception as exc:
                log.error("plugin %s raised in hammer_job_event: %s",
                          self.pm.get_name(impl.plugin), exc, extra={"job_id": getattr(job, "id", None)})

    def policy_vetoes(self, actor: Any, command: Any, spec: Any) -> list[str]:
        """Every veto reason; a plugin that raises vetoes (fail closed) with a clear note."""
        reasons: list[str] = []
        for impl in self.pm.hook.hammer_policy_check.get_hookimpls():
            name = self.pm.get_name(impl.plugin)
            try:
                reason = impl.function(actor=actor, command=command, spec=spec)
            except Exception as exc:
                log.error("policy plugin %s raised: %s", name, exc)
                reason = f"policy plugin {name} failed ({exc}); ask an admin to check `hammer doctor`"
            if reason:
                reasons.append(str(reason))
        return reasons


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_plugins(config_selection: Mapping[str, Any] | None = None,
                 env: Mapping[str, str] | None = None) -> Plugins:
    """Build the plugin manager from `[plugins]` config, then `HAMMER_PLUGINS` on top."""
    env = os.environ if env is None else env
    cfg = config_selection or {}
    base = PluginSelection(
        only=frozenset(cfg["enabled"]) if cfg.get("enabled") else None,
        exclude=frozenset(cfg.get("disabled", ())),
        modules=tuple(cfg.get("modules", ())),
    )
    return Plugins(PluginSelection.parse(env.get("HAMMER_PLUGINS"), base)).load()
