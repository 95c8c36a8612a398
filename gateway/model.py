"""Core types shared by the gateway, the chat and cloud adapters and the plugins.

Everything here is platform- and cloud-agnostic and serializable: a job must survive a
gateway restart, so anything a job refers to (its spec, its placement, the reference to
its progress message) round-trips through plain JSON (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENT_PROTOCOL_VERSION = 1
#: Where a job's inputs (earlier jobs' artifacts) appear inside the sandbox, read-only.
INPUTS_ROOT = "/inputs"


def input_path(key: str) -> str:
    """The sandbox path of an input artifact key (`jobs/ab12/adapter` -> `/inputs/jobs/ab12/adapter`)."""
    return f"{INPUTS_ROOT}/{key.strip('/')}"


class JobState(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    UPLOADING = "uploading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def active(self) -> bool:
        """A job that holds (or is about to hold) a machine."""
        return self in (JobState.QUEUED, JobState.PROVISIONING, JobState.RUNNING, JobState.UPLOADING)


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}
)

_END = {JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}
#: The only legal transitions; anything else is a bug and is refused by the store.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.PENDING_APPROVAL: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
    JobState.QUEUED: frozenset({JobState.PROVISIONING} | _END),
    JobState.PROVISIONING: frozenset({JobState.RUNNING, JobState.UPLOADING, JobState.SUCCEEDED} | _END),
    JobState.RUNNING: frozenset({JobState.UPLOADING, JobState.SUCCEEDED} | _END),
    JobState.UPLOADING: frozenset({JobState.SUCCEEDED} | _END),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
}


class ErrorKind(enum.StrEnum):
    OOM = "oom"
    DATASET = "dataset"
    ARGS = "args"
    MODEL = "model"
    AUTH = "auth"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    COST = "cost"
    INTERNAL = "internal"


def _plain(value: Any) -> Any:
    """Turn dataclasses, enums, paths and tuples into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


class Serializable:
    """Mixin: `to_dict()` for JSON; `from_dict()` rebuilds nested dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)  # type: ignore[no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class Actor(Serializable):
    """Who sent a message: a platform identity plus the hammer roles it maps to."""

    platform: str
    user_id: str
    display_name: str = ""
    roles: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Stable identity across the gateway (quotas, audit): `platform:user_id`."""
        return f"{self.platform}:{self.user_id}"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Actor:
        return cls(d["platform"], d["user_id"], d.get("display_name", ""), tuple(d.get("roles", ())))


@dataclass(frozen=True)
class Conversation(Serializable):
    """Where to answer: a channel (and thread) on one platform."""

    platform: str
    channel: str
    workspace: str = ""
    thread: str | None = None

    def in_thread(self, thread: str | None) -> Conversation:
        return dataclasses.replace(self, thread=thread)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Conversation:
        return cls(d["platform"], d["channel"], d.get("workspace", ""), d.get("thread"))


@dataclass(frozen=True)
class ChatMessage(Serializable):
    """A command-bearing message, normalized. Slash commands become one of these too.

    `reply_handle` is opaque to the gateway: the adapter that produced the message uses it
    in `reply()` (a Discord interaction token, a Slack response_url, a web socket id).
    """

    actor: Actor
    conversation: Conversation
    text: str
    message_id: str = ""
    received_at: float = field(default_factory=time.time)
    reply_handle: str | None = None


@dataclass(frozen=True)
class Interaction(Serializable):
    """A button click: `action_id` is one of Button.action_id, `value` usually a job id."""

    actor: Actor
    conversation: Conversation
    action_id: str
    value: str = ""
    message_id: str = ""
    received_at: float = field(default_factory=time.time)
    reply_handle: str | None = None


@dataclass(frozen=True)
class MessageRef(Serializable):
    """A message hammer posted, enough to edit it later (also after a restart).

    `conversation` is where follow-ups belong: adapters that open a thread for a job
    return the thread here, so the gateway just keeps posting into `ref.conversation`.
    """

    platform: str
    conversation: Conversation
    message_id: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MessageRef:
        return cls(d["platform"], Conversation.from_dict(d["conversation"]), d["message_id"],
                   dict(d.get("extra", {})))


@dataclass(frozen=True)
class Button(Serializable):
    action_id: str  # "cancel" | "approve" | "deny" | "confirm"
    label: str
    value: str = ""
    style: str = "default"  # default | primary | danger


@dataclass(frozen=True)
class OutboundMessage(Serializable):
    """A platform-neutral rich message; each chat adapter renders it in its own way."""

    text: str = ""
    title: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    progress: float | None = None  # 0..1
    image: Path | None = None
    image_title: str = ""
    buttons: tuple[Button, ...] = ()
    level: str = "info"  # info | success | warning | error
    footer: str = ""
    private: bool = False  # only the person who asked may see it (adapters that cannot: never sent)

    def plain_text(self) -> str:
        """A text-only rendering (logs, platforms without rich messages, fallbacks)."""
        lines = [f"*{self.title}*"] if self.title else []
        if self.text:
            lines.append(self.text)
        lines += [f"{k}: {v}" for k, v in self.fields]
        if self.footer:
            lines.append(self.footer)
        return "\n".join(lines)


@dataclass(frozen=True)
class RateLimits:
    """What a chat platform tolerates; the ProgressNotifier never edits faster.

    `min_edit_interval_s` is per message; `max_message_chars` bounds a text body.
    """

    min_edit_interval_s: float = 1.0
    max_message_chars: int = 2000


@dataclass(frozen=True)
class Command(Serializable):
    """A parsed chat command: every value in `args` already has its declared type."""

    verb: str
    args: Mapping[str, Any]
    raw: str
    actor: Actor
    conversation: Conversation


@dataclass(frozen=True)
class Resources(Serializable):
    gpu_type: str | None = None
    gpu_count: int = 0
    memory_gib: float = 8.0
    cpus: float = 2.0
    disk_gib: float = 20.0
    pids: int = 1024


@dataclass(frozen=True)
class Limits(Serializable):
    max_runtime_s: float = 6 * 3600
    idle_timeout_s: float = 900
    max_cost_usd: float | None = None


@dataclass(frozen=True)
class Mount(Serializable):
    """A host path the job reads (a local model, an uploaded dataset) and where it appears."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class JobSpec(Serializable):
    """Everything needed to run one job; built by a task plugin, never from raw text.

    `argv` is the exact program the sandbox runner executes (an argv list, never a shell
    string). `secrets` are *names* resolved to values only when the container is created.
    `inputs` are artifact keys of earlier jobs' outputs (`jobs/<id>/adapter`): the cloud
    adapter makes each readable at `/inputs/<key>` before the runner starts, whatever cloud
    produced it. `reply_to` is where the job's messages go when no chat message started it.
    `price_per_hour` is the planner's pick (0 for free machines); the cost watchdog and
    the ledger use it unless the placement reports the real price; `estimated_cost_usd`
    is the planner's estimate for the whole job (None: not known).
    """

    id: str
    task: str
    model: str
    datasets: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    argv: tuple[str, ...] = ()
    image: str = "hammer-sandbox:latest"
    resources: Resources = field(default_factory=Resources)
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    inputs: tuple[str, ...] = ()
    cloud: str = ""
    requester: Actor | None = None
    reply_to: Conversation | None = None
    needs_network: bool = False
    price_per_hour: float = 0.0
    estimated_cost_usd: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobSpec:
        return cls(
            id=d["id"], task=d["task"], model=d["model"], datasets=tuple(d.get("datasets", ())),
            params=dict(d.get("params", {})), argv=tuple(d.get("argv", ())),
            image=d.get("image", "hammer-sandbox:latest"),
            resources=Resources(**d.get("resources", {})), limits=Limits(**d.get("limits", {})),
            env=dict(d.get("env", {})), secrets=tuple(d.get("secrets", ())),
            mounts=tuple(Mount(**m) for m in d.get("mounts", ())), inputs=tuple(d.get("inputs", ())),
            cloud=d.get("cloud", ""),
            requester=Actor.from_dict(d["requester"]) if d.get("requester") else None,
            reply_to=Conversation.from_dict(d["reply_to"]) if d.get("reply_to") else None,
            needs_network=bool(d.get("needs_network", False)),
            price_per_hour=float(d.get("price_per_hour", 0.0)),
            estimated_cost_usd=d.get("estimated_cost_usd"),
        )


@dataclass(frozen=True)
class Placement(Serializable):
    """A cloud adapter's handle for a launched job; `handle` must be JSON-serializable."""

    cloud: str
    job_id: str
    handle: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Placement:
        return cls(d["cloud"], d["job_id"], dict(d.get("handle", {})))


@dataclass(frozen=True)
class PlacementStatus(Serializable):
    """What the cloud says about a placement right now."""

    running: bool
    exit_code: int | None = None
    oom_killed: bool = False
    detail: str = ""


@dataclass(frozen=True)
class InstanceType(Serializable):
    """A machine a cloud adapter can start (the local Docker host is one too)."""

    cloud: str
    instance_type: str
    gpu: str | None
    gpu_count: int
    gpu_memory_mib: int
    vcpus: int
    ram_gib: float
    price_per_hour: float
    spot_price_per_hour: float | None = None
    region: str = ""


@dataclass(frozen=True)
class SandboxEvent(Serializable):
    """One event line from the sandbox runner, numbered by its position in the stream.

    `seq` counts from 0 over *every* line the container printed (so a resumed stream
    can skip exactly what was already recorded); `type` is one of EVENT_TYPES, and lines
    that are not protocol JSON become `log` events.
    """

    seq: int
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    @classmethod
    def parse(cls, line: str, seq: int, *, stream: str = "stdout") -> SandboxEvent:
        text = line.rstrip("\r\n")
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj.get("v") == EVENT_PROTOCOL_VERSION and obj.get("type") in EVENT_TYPES:
            data = {k: v for k, v in obj.items() if k not in ("v", "type", "ts")}
            ts = obj.get("ts")
            return cls(seq, obj["type"], data, float(ts) if isinstance(ts, int | float) else time.time())
        return cls(seq, "log", {"stream": stream, "line": text[:4000]})

    def to_line(self) -> str:
        return json.dumps({"v": EVENT_PROTOCOL_VERSION, "type": self.type, "ts": self.ts, **self.data})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SandboxEvent:
        return cls(int(d["seq"]), d["type"], dict(d.get("data", {})), float(d.get("ts", 0.0)))


EVENT_TYPES = frozenset({"status", "progress", "log", "metric", "artifact", "sample", "result", "error"})


@dataclass
class Job:
    """A job as the store keeps it (mutable: the orchestrator updates and persists it)."""

    spec: JobSpec
    state: JobState
    created_at: float
    updated_at: float
    placement: Placement | None = None
    progress_ref: MessageRef | None = None
    last_seq: int = -1
    progress: dict[str, Any] = field(default_factory=dict)
    loss_history: list[float] = field(default_factory=list)
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    last_progress_at: float | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def requester_key(self) -> str:
        return self.spec.requester.key if self.spec.requester else ""

    @property
    def price_per_hour(self) -> float:
        """What the machine costs: the cloud's own figure when it reported one."""
        if self.placement is not None and isinstance(self.placement.handle.get("price_per_hour"), int | float):
            return float(self.placement.handle["price_per_hour"])
        return self.spec.price_per_hour

    def running_s(self, now: float) -> float:
        """Seconds the job has held a machine (0 before it started)."""
        if self.started_at is None:
            return 0.0
        return max(0.0, (self.finished_at or now) - self.started_at)

    def cost_usd(self, now: float) -> float:
        """Cost so far: price per hour x running time."""
        return self.price_per_hour * self.running_s(now) / 3600

    def artifact_keys(self) -> dict[str, str]:
        """Artifact name -> key in the ArtifactStore, for the outputs that were stored."""
        return {str(a["name"]): str(a["key"]) for a in self.artifacts if a.get("key")}
