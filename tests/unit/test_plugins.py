"""The plugin system: every hook is documented, built-ins come through entry points,
selection works, and a broken plugin is isolated."""

from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path

from gateway import hookspecs
from gateway.hookspecs import hookimpl
from gateway.plugins import Plugins, PluginSelection, load_plugins

ROOT = Path(__file__).resolve().parents[2]


def hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("hammer_")]


def _signature(name: str) -> str:
    """`def hook(p: T, ...) -> R` as written in gateway/hookspecs.py (string annotations)."""
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {name}({params}) -> {sig.return_annotation}"


def _section(doc: str, name: str) -> str:
    match = re.search(rf"^### {name}\((?P<params>[^)]*)\)\n(?P<body>.*?)(?=^### |^## |\Z)", doc, flags=re.M | re.S)
    assert match, f"docs/plugins.md has no '### {name}(...)' section"
    return match.group(0)


def test_every_hook_is_documented_in_plugins_md_with_its_signature() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text()
    assert set(hook_names()) == {"hammer_chat_adapters", "hammer_cloud_adapters", "hammer_commands",
                                 "hammer_artifact_stores", "hammer_job_event", "hammer_policy_check"}
    for name in hook_names():
        section = _section(doc, name)
        heading = re.match(rf"### {name}\(([^)]*)\)", section)
        assert heading is not None
        params = [p.strip() for p in heading.group(1).split(",") if p.strip()]
        assert params == list(inspect.signature(getattr(hookspecs, name)).parameters), (name, params)
        assert _signature(name) in section, f"docs/plugins.md: {name} should show `{_signature(name)}`"


def test_the_docs_test_notices_a_drifted_signature() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text()
    drifted = doc.replace(_signature("hammer_job_event"), "def hammer_job_event(job: Job) -> None")
    assert _signature("hammer_job_event") not in _section(drifted, "hammer_job_event")


def test_every_hook_has_a_docstring() -> None:
    for name in hook_names():
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name


def test_builtins_are_registered_through_entry_points() -> None:
    plugins = load_plugins({}, env={})
    assert {"web", "docker", "local_store", "chatops", "finetune"} <= set(plugins.names)
    assert "web" in plugins.chat_adapters() and "docker" in plugins.cloud_adapters()
    assert "local" in plugins.artifact_stores()


def test_selection_by_env_var() -> None:
    only = load_plugins({}, env={"HAMMER_PLUGINS": "chatops,web"})
    assert only.names == ["chatops", "web"]
    without = load_plugins({}, env={"HAMMER_PLUGINS": "-slack,-discord,+tests.fakes.cloud"})
    assert "slack" not in without.names and "tests.fakes.cloud" in without.names
    assert "fake" in without.cloud_adapters()
    cfg = load_plugins({"enabled": ["chatops"], "modules": ["tests.fakes.cloud"]}, env={})
    assert cfg.names == ["chatops", "tests.fakes.cloud"]
    assert PluginSelection.parse("a,-b,+c").only == frozenset({"a"})


def test_a_plugin_that_raises_is_isolated() -> None:
    broken = types.ModuleType("hammer_broken_test_plugin")

    @hookimpl
    def hammer_cloud_adapters(register):  # type: ignore[no-untyped-def]
        raise RuntimeError("kaboom")

    broken.hammer_cloud_adapters = hammer_cloud_adapters  # type: ignore[attr-defined]
    sys.modules[broken.__name__] = broken
    plugins = Plugins(PluginSelection(only=frozenset({"docker"}), modules=(broken.__name__, "no.such.module"))).load()
    assert "docker" in plugins.cloud_adapters()  # the healthy plugin still registers
    errors = dict(plugins.errors.items)
    assert "kaboom" in errors[broken.__name__]
    assert "failed to load" in errors["no.such.module"]
