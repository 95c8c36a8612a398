"""The contracts adapters and plugins implement (typing.Protocol, checked structurally).

Chat adapters turn a platform into `ChatMessage`/`Interaction` items on the inbox and
render `OutboundMessage`s; cloud adapters run a `JobSpec` somewhere and stream its
`SandboxEvent`s back; artifact stores keep files and hand out links. The gateway only
ever talks to these shapes, never to a platform or cloud SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from gateway.model import (
    ChatMessage,
    Conversation,
    InstanceType,
    Interaction,
    JobSpec,
    MessageRef,
    OutboundMessage,
    Placement,
    PlacementStatus,
    RateLimits,
    SandboxEvent,
)

#: What chat adapters put on the gateway's inbox.
InboxItem = ChatMessage | Interaction
Inbox = asyncio.Queue  # asyncio.Queue[InboxItem]


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


@runtime_checkable
class CloudAdapter(Protocol):
    """Somewhere jobs run. `Placement.handle` must be enough to find the job again after
    the gateway restarts (labels, instance ids), and `events()` must be resumable."""

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

    def collect(self, placement: Placement) -> Path | None:
        """The local directory holding the job's output files, if the cloud exposes one
        (the local Docker adapter's workspace); None when artifacts arrive as URIs."""


@runtime_checkable
class ArtifactStore(Protocol):
    """Where artifacts and log archives go; `url()` links are what chat users click."""

    name: str

    async def put(self, path: Path, key: str) -> str:
        """Store a file (or a directory, recursively) under `key`; return its URI."""

    async def url(self, key: str, expires: float = 7 * 24 * 3600) -> str: ...

    async def get(self, key: str) -> Path:
        """A local path to the stored object (downloaded if remote)."""


@dataclass
class Services:
    """The gateway's shared services, handed to every adapter factory.

    `http` is the gateway's aiohttp application before it starts: adapters that receive
    webhooks (Slack's HTTP mode) add their routes there. `secret(ref)` resolves a secret
    reference (`env:NAME`, `file:PATH`) and registers the value for log redaction.
    """

    data_dir: Path
    public_url: str
    secret: Callable[[str], str]
    http: Any = None  # aiohttp.web.Application
    artifacts: ArtifactStore | None = None
    settings: Any = None  # gateway.config.Settings
    extra: dict[str, Any] = field(default_factory=dict)


class Factory(Protocol):
    """What `register` receives in the adapter hooks: builds an adapter from its config
    section (a plain mapping) and the gateway's shared services."""

    def __call__(self, config: Mapping[str, Any], services: Services) -> Any: ...


@dataclass(frozen=True)
class Check:
    """One line of `hammer doctor`: adapters may offer `async def check() -> list[Check]`
    to verify their configuration (token valid, scopes, channels reachable) and say the
    exact fix when something is wrong."""

    ok: bool
    what: str
    fix: str = ""
