"""The contracts adapters and plugins meet (typing.Protocol, checked structurally).

Chat adapters turn a platform into `ChatMessage`/`Interaction` items on the inbox and
render `OutboundMessage`s; cloud adapters run a `JobSpec` somewhere and stream its
`SandboxEvent`s back; artifact stores keep files and hand out links. The gateway only
ever talks to these shapes, never to a platform or cloud SDK.

Optional abilities (a doctor check, a close, listing leftovers) are *declared* members of
the Protocols, not probed with getattr: the `...Base` classes below give every one of
them a harmless default, so an adapter inherits them and overrides what it has.

Command handlers receive a `GatewayAPI`, job builders a `JobContext`: exactly what a
plugin may use. Neither hands out the gateway object itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from aiohttp import web
from pydantic import BaseModel

from gateway.model import (
    Actor,
    ChatMessage,
    Command,
    Conversation,
    InstanceType,
    Interaction,
    Job,
    JobSpec,
    MessageRef,
    OutboundMessage,
    Placement,
    PlacementStatus,
    RateLimits,
    SandboxEvent,
)

if TYPE_CHECKING:
    from gateway.commands import CommandTable
    from gateway.config import Settings
    from gateway.jobs.planner import Planned

#: What chat adapters put on the gateway's inbox.
InboxItem = ChatMessage | Interaction
Inbox = asyncio.Queue  # asyncio.Queue[InboxItem]


@dataclass(frozen=True)
class Check:
    """One line of `hammer doctor`: what was checked, and the exact fix when it failed."""

    ok: bool
    what: str
    fix: str = ""


# -- chat --------------------------------------------------------------------------------------


@runtime_checkable
class ChatAdapter(Protocol):
    """One chat platform. Acknowledge platform requests within their deadline (3 s on
    Slack and Discord) *before* putting the item on the inbox; the gateway's work is slow.
    """

    name: str
    rate_limits: RateLimits

    async def start(self, inbox: asyncio.Queue[InboxItem]) -> None:
        """Connect and begin delivering messages; return once connected (raise on a fatal
        configuration problem with a message that says how to fix it)."""

    async def stop(self) -> None: ...

    async def send(self, conversation: Conversation, msg: OutboundMessage) -> MessageRef:
        """Post a new message (with `msg.image` attached, if any)."""

    async def reply(self, message: ChatMessage, msg: OutboundMessage) -> MessageRef:
        """Answer a command. The returned ref's `conversation` is where the job's
        follow-ups go (adapters open a thread here when the platform has threads)."""

    async def edit(self, ref: MessageRef, msg: OutboundMessage) -> None:
        """Replace a message hammer posted earlier (progress updates)."""

    async def respond(self, interaction: Interaction, msg: OutboundMessage) -> None:
        """Answer a button click privately (ephemeral), e.g. "only the requester may cancel"."""

    async def upload(self, conversation: Conversation, path: Path, title: str) -> MessageRef:
        """Upload a file (a loss curve) into the conversation."""

    async def check(self) -> list[Check]:
        """`hammer doctor`: verify tokens, scopes, channels; [] when there is nothing to check."""


class ChatAdapterBase:
    """Defaults for the optional parts of `ChatAdapter`."""

    name: str = ""
    rate_limits: RateLimits = RateLimits()
    config_model: ClassVar[type[BaseModel] | None] = None

    async def check(self) -> list[Check]:
        return []


# -- clouds ------------------------------------------------------------------------------------


@runtime_checkable
class CloudAdapter(Protocol):
    """Somewhere jobs run. `Placement.handle` must be enough to find the job again after
    the gateway restarts (labels, instance ids), and `events()` must be resumable.

    Inputs: a spec's `inputs` are artifact keys; the adapter makes each one readable by
    the runner at `/inputs/<key>` (read-only) before the runner starts, fetching it from
    `Services.artifacts`. Outputs: `collect()` names the local directory that holds the
    runner's workspace after the job, or None when the adapter already put the outputs
    into the artifact store itself (then `artifact` events carry their `key`).
    """

    name: str

    async def launch(self, spec: JobSpec) -> Placement: ...

    def events(self, placement: Placement, since: int = 0) -> AsyncIterator[SandboxEvent]:
        """Yield the runner's events with `seq >= since`, following until the job's
        output ends (the container/VM exited). Safe to call again after a restart."""

    async def cancel(self, placement: Placement) -> None:
        """Stop the job (SIGTERM, then kill after a grace period)."""

    async def status(self, placement: Placement) -> PlacementStatus: ...

    async def reattach(self, placement: Placement) -> bool:
        """After a gateway restart: True if the job still exists here (running or exited
        with output to read), False if it is gone."""

    async def cleanup(self, placement: Placement) -> None:
        """Remove what the job left behind (container, volume, VM)."""

    async def catalog(self) -> list[InstanceType]:
        """Instance types this adapter can start (the local host counts as one)."""

    async def collect(self, placement: Placement) -> Path | None:
        """The local directory holding the job's workspace (outputs), or None (see above)."""

    async def placements(self) -> list[Placement]:
        """Every job this adapter still holds resources for (the start-up sweep removes
        those whose job is no longer active); [] when it cannot list them."""

    async def check(self) -> list[Check]: ...

    async def close(self) -> None:
        """Release connections at gateway stop (jobs keep running)."""


class CloudAdapterBase:
    """Defaults for the optional parts of `CloudAdapter`."""

    name: str = ""
    config_model: ClassVar[type[BaseModel] | None] = None

    async def collect(self, placement: Placement) -> Path | None:
        return None

    async def placements(self) -> list[Placement]:
        return []

    async def check(self) -> list[Check]:
        return []

    async def close(self) -> None:
        return None


# -- artifacts ---------------------------------------------------------------------------------


@runtime_checkable
class ArtifactStore(Protocol):
    """Where artifacts and log archives go; `url()` links are what chat users click.

    Keys are relative POSIX paths (`jobs/<job_id>/adapter`). `put` never follows a
    symbolic link: a link in a job's output is dropped, and its name returned, so the
    caller can say so in the job's log.
    """

    name: str

    async def put(self, path: Path, key: str) -> PutResult:
        """Store a file (or a directory, recursively) under `key`."""

    async def url(self, key: str, expires: float) -> str:
        """A link to the object, valid for `expires` seconds (where the store can expire links)."""

    async def get(self, key: str) -> Path:
        """A local path to the stored object (downloaded if remote); FileNotFoundError if absent."""


@dataclass(frozen=True)
class PutResult:
    """What `ArtifactStore.put` stored: its URI, and the symbolic links it refused to follow."""

    uri: str
    skipped_links: tuple[str, ...] = ()


# -- what adapter factories receive ---------------------------------------------------------


@dataclass
class Services:
    """The gateway's shared services, handed to every adapter factory.

    `http` is the gateway's aiohttp application before it starts: adapters add routes with
    `add_route` (a `signed=True` route checks its own signatures, so the gateway's token
    check lets it through). `secret(ref)` resolves a secret reference (`env:NAME`,
    `file:PATH`) and registers the value for redaction. `public_url` is read when needed,
    never copied: with `http.port = 0` it is only known once the server listens.
    """

    settings: Settings
    data_dir: Path
    public_url: str
    secret: Callable[[str], str]
    http: web.Application
    commands: CommandTable
    artifacts: ArtifactStore | None = None
    open_paths: set[str] = field(default_factory=set)

    def add_route(self, method: str, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                  *, signed: bool = False, prefix: str = "") -> None:
        """`signed=True`: the handler checks its own credentials (a webhook signature, a signed
        link), so the gateway's sign-in check lets the request through; `prefix` does the same
        for every path under it (a route with a path parameter)."""
        self.http.router.add_route(method, path, handler)
        if signed:
            self.open_paths.add(prefix or path)

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or any(p.endswith("/") and path.startswith(p) for p in self.open_paths)


class Factory(Protocol):
    """What adapter hooks register: builds an adapter from its config section (a plain
    mapping, `enabled` removed) and the gateway's shared services. `config_model`, when
    set, is the pydantic model `hammer config check` validates the section with."""

    config_model: ClassVar[type[BaseModel] | None]

    def __call__(self, config: Mapping[str, Any], services: Services) -> Any: ...


ChatAdapterFactory = Callable[[Mapping[str, Any], Services], ChatAdapter]
CloudAdapterFactory = Callable[[Mapping[str, Any], Services], CloudAdapter]
ArtifactStoreFactory = Callable[[Mapping[str, Any], Services], ArtifactStore]
RegisterChatAdapter = Callable[[str, ChatAdapterFactory], None]
RegisterCloudAdapter = Callable[[str, CloudAdapterFactory], None]
RegisterArtifactStore = Callable[[str, ArtifactStoreFactory], None]


# -- what plugins may use ----------------------------------------------------------------------


class JobReader(Protocol):
    """The store's read side."""

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(self, *, requester: str | None = None, states: Iterable[Any] | None = None,
                        limit: int = 50) -> list[Job]: ...

    async def events(self, job_id: str, since: int = 0, types: Iterable[str] | None = None
                     ) -> list[SandboxEvent]: ...


@dataclass(frozen=True)
class Permissions:
    """What one actor may do (roles from the platform and the config)."""

    actor: Actor
    roles: frozenset[str]

    @property
    def admin(self) -> bool:
        return "admin" in self.roles

    def owns(self, job: Job) -> bool:
        return job.requester_key == self.actor.key

    def may_manage(self, job: Job) -> bool:
        """Cancel it, see its logs in full: its requester or an admin."""
        return self.admin or self.owns(job)


class JobContext(Protocol):
    """What a task plugin's `build_job(command, ctx)` may use."""

    @property
    def job_id(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def actor(self) -> Actor: ...

    def job(self, job_id: str) -> Job | None:
        """An earlier job the command names (a parameter of kind `job`), as stored."""

    def upload(self, name: str) -> Path | None:
        """The file the asker uploaded as `upload:NAME`, or None."""


class GatewayAPI(Protocol):
    """What a command handler (`CommandSpec.handle(command, api)`) may use."""

    @property
    def settings(self) -> Settings: ...

    @property
    def commands(self) -> CommandTable: ...

    @property
    def store(self) -> JobReader: ...

    def permissions(self, actor: Actor) -> Permissions: ...

    def help_text(self, actor: Actor, verb: str | None = None) -> str:
        """`.help`: only the verbs this actor may run."""

    async def plan(self, command: Command) -> Planned:
        """What a job command would do: the spec, the estimate, the cost and the policy decision."""

    async def cancel_job(self, job_id: str, actor: Actor) -> Job: ...

    async def approve_job(self, job_id: str, actor: Actor) -> Job: ...

    async def deny_job(self, job_id: str, actor: Actor) -> Job: ...

    async def artifact_links(self, job: Job) -> dict[str, str]:
        """Fresh links to a job's stored artifacts (name -> URL), valid `artifacts.link_ttl`."""

    def uploads(self, actor: Actor) -> Sequence[str]:
        """The names this actor can use as `upload:NAME`."""

    async def invite(self, actor: Actor, name: str, role: str) -> str:
        """An admin makes a web account; returns its one-time sign-in link."""
