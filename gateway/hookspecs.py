"""pluggy hook specifications for the project "hammer".

Each hook has one docstring; `docs/plugins.md` documents every hook here, heading and
signature, and a test fails when one is missing or has drifted (the datasette way). The
adapter and command hooks use the `register` callback style (the simonw/llm way): a
plugin calls `register(...)` once per thing it provides, so one plugin module can
provide several. `register` is typed per hook.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from gateway.commands import CommandSpec
from gateway.contracts import RegisterArtifactStore, RegisterChatAdapter, RegisterCloudAdapter
from gateway.model import Actor, Command, Job, JobSpec, SandboxEvent

PROJECT = "hammer"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: `register(spec)` in `hammer_commands`.
RegisterCommand = Callable[[CommandSpec], None]

__all__ = ["PROJECT", "RegisterArtifactStore", "RegisterChatAdapter", "RegisterCloudAdapter", "RegisterCommand",
           "hookimpl", "hookspec"]


@hookspec
def hammer_chat_adapters(register: RegisterChatAdapter) -> None:
    """Register chat adapters: `register(name, factory)`, where `factory(config, services)`
    returns an object implementing `gateway.contracts.ChatAdapter`. `config` is the
    `[chat.<name>]` table of the configuration."""


@hookspec
def hammer_cloud_adapters(register: RegisterCloudAdapter) -> None:
    """Register cloud adapters: `register(name, factory)`, where `factory(config, services)`
    returns an object implementing `gateway.contracts.CloudAdapter`. `config` is the
    `[cloud.<name>]` table of the configuration."""


@hookspec
def hammer_commands(register: RegisterCommand) -> None:
    """Register chat commands: `register(spec)` with a `gateway.commands.CommandSpec`
    (verb, aliases, typed parameters, help, and a handler or a job builder)."""


@hookspec
def hammer_artifact_stores(register: RegisterArtifactStore) -> None:
    """Register artifact stores: `register(name, factory)`, where `factory(config, services)`
    returns an object implementing `gateway.contracts.ArtifactStore`."""


@hookspec
def hammer_job_event(job: Job, event: SandboxEvent) -> None:
    """Observe a job's event after it was persisted: `job` is a `gateway.model.Job`,
    `event` a `gateway.model.SandboxEvent` (or a synthetic `status` event for a state
    transition). For metrics and notifications; exceptions are logged and ignored."""


@hookspec
def hammer_policy_check(actor: Actor, command: Command, spec: JobSpec | None) -> str | None:
    """Veto a job before it starts: return a reason (shown to the user) to refuse,
    or None to allow. `spec` is the `JobSpec` the command would run (None for commands
    that start no job). A plugin that raises is treated as a veto, never as a crash."""
