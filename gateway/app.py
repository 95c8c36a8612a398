"""The running gateway: wiring and lifecycle.

`Hammer` builds the plugins, the store, the adapters, the orchestrator, the planner, the
dispatcher and the HTTP server, starts them in order and stops them in reverse. One
slow or broken part never stops the rest: an adapter that fails to start is reported
(`hammer doctor`, `/healthz` for the operator) while the others keep running.

`build_adapters` is the one place adapters are made from the config; `hammer serve`,
`hammer doctor` and `hammer config check` all use it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, create_model

from gateway import config as config_mod
from gateway import estimate as estimate_mod
from gateway import http
from gateway.commands import CommandSpec, CommandTable, Param
from gateway.config import Settings
from gateway.contracts import ArtifactStore, ChatAdapter, CloudAdapter, InboxItem, Services
from gateway.dispatch import Dispatcher
from gateway.jobs import Orchestrator, ProgressNotifier
from gateway.jobs.planner import Planner
from gateway.logs import AuditLog
from gateway.model import ChatMessage, Job, OutboundMessage
from gateway.plugins import Plugins, load_plugins
from gateway.store import Store
from gateway.uploads import UploadSpace
from gateway.webauth import Accounts, sign_in_link

log = logging.getLogger("hammer.app")


@dataclass
class Problems:
    """What could not be set up, by config path; shown by `hammer serve` and doctor."""

    items: list[tuple[str, str]] = field(default_factory=list)
    log_them: bool = True  # doctor prints them itself

    def add(self, where: str, what: str) -> None:
        if self.log_them:
            log.error("%s: %s", where, what)
        self.items.append((where, what))


@dataclass
class Adapters:
    artifacts: ArtifactStore | None = None
    clouds: dict[str, CloudAdapter] = field(default_factory=dict)
    chat: dict[str, ChatAdapter] = field(default_factory=dict)


def build_command_table(plugins: Plugins, settings: Settings) -> CommandTable:
    table = CommandTable(prefix=settings.gateway.command_prefix)
    for spec in plugins.command_specs():
        if not isinstance(spec, CommandSpec):
            plugins.errors.add("commands", f"hammer_commands registered {spec!r}, not a CommandSpec")
            continue
        try:
            table.add(spec)
        except ValueError as exc:
            plugins.errors.add("commands", str(exc))
    for verb, extra in settings.commands.extra.items():
        if verb in table.specs:
            table.add_extra_params(verb, [
                Param(name, p.type, p.help, min=p.min, max=p.max, choices=tuple(p.choices), flag=p.flag)
                for name, p in extra.items()])
    return table


def make_services(settings: Settings, plugins: Plugins, app: web.Application | None = None) -> Services:
    return Services(settings=settings, data_dir=settings.data_dir, public_url=settings.public_url,
                    secret=config_mod.resolve_secret, http=app if app is not None else web.Application(),
                    commands=build_command_table(plugins, settings))


def standalone_services(data_dir: Path, *, public_url: str = "", secret: Callable[[str], str] | None = None,
                        http_app: web.Application | None = None) -> Services:
    """Services for one adapter used on its own (benchmarks, adapter tests): the embedded
    defaults with `data_dir`, every installed plugin's commands."""
    settings = config_mod.parse_settings(f"[gateway]\ndata_dir = {json.dumps(str(data_dir))}\n", "standalone")
    services = make_services(settings, load_plugins(settings.plugins.model_dump()), http_app)
    services.public_url = public_url or services.public_url
    if secret is not None:
        services.secret = secret
    return services


def build_adapters(settings: Settings, plugins: Plugins, services: Services, problems: Problems, *,
                   chat: bool = True, clouds: bool = True) -> Adapters:
    """Instantiate the configured artifact store and adapters (they add their HTTP routes
    to `services.http`); every failure is a problem with its config path, never a crash."""
    built = Adapters()
    stores = plugins.artifact_stores()
    name = settings.artifacts.store
    if name in stores:
        try:
            built.artifacts = stores[name]({"path": settings.artifacts.path}, services)
            services.artifacts = built.artifacts
        except Exception as exc:
            problems.add(f"artifacts.{name}", f"cannot start: {exc}")
    else:
        problems.add("artifacts.store", f"no artifact store named {name!r} (have: {', '.join(stores)})")
    sections: list[tuple[str, Mapping[str, Any], dict[str, Any]]] = []
    if clouds:
        sections.append(("cloud", plugins.cloud_adapters(), built.clouds))
    if chat:
        sections.append(("chat", plugins.chat_adapters(), built.chat))
    for section, registry, target in sections:
        for cname, cfg in settings.enabled(section).items():  # type: ignore[arg-type]
            factory = registry.get(cname)
            if factory is None:
                problems.add(f"{section}.{cname}", f"no such adapter: no {section} adapter plugin named {cname!r} "
                             f"is loaded (loaded: {', '.join(sorted(registry)) or 'none'})")
                continue
            try:
                target[cname] = factory({k: v for k, v in cfg.items() if k != "enabled"}, services)
            except Exception as exc:
                problems.add(f"{section}.{cname}", f"cannot start: {exc}")
    return built


def adapter_validators(plugins: Plugins) -> dict[str, type[BaseModel]]:
    """`chat.<name>` / `cloud.<name>` -> the adapter's pydantic config model (with `enabled`)."""
    found: dict[str, type[BaseModel]] = {}
    for section, registry in (("chat", plugins.chat_adapters()), ("cloud", plugins.cloud_adapters())):
        for name, factory in registry.items():
            model: type[BaseModel] | None = getattr(factory, "config_model", None)  # declared by Factory
            if model is None:
                continue
            if "enabled" not in model.model_fields:
                model = create_model(f"{model.__name__}Section", __base__=model, enabled=(bool, True))
            found[f"{section}.{name}"] = model
    return found


class Hammer:
    """The gateway. `build()` makes every part (also for `hammer plan`, with chat=False);
    `start()` opens the store, listens, re-attaches running jobs and connects the chats."""

    def __init__(self, settings: Settings, plugins: Plugins | None = None, *, store_path: Path | None = None) -> None:
        self.settings = settings
        self.plugins = plugins or load_plugins(settings.plugins.model_dump())
        self.data_dir = settings.data_dir
        self.problems = Problems()
        self.inbox: asyncio.Queue[InboxItem] = asyncio.Queue()
        self.store = Store(store_path or settings.db_path)
        self.audit = AuditLog(self.data_dir / "audit.jsonl")
        self.accounts = Accounts(self.store, self.data_dir / "web" / "secret.key",
                                 invite_ttl_s=settings.http.invite_ttl, session_ttl_s=settings.http.session_ttl)
        self.sign_in: str | None = None  # the operator's first sign-in link, while nobody has signed in
        self.app = http.build_app(self)
        self.services = make_services(settings, self.plugins, self.app)
        self.commands = self.services.commands
        self.uploads = UploadSpace(self.data_dir / "uploads")
        self.artifacts: ArtifactStore | None = None
        self.clouds: dict[str, CloudAdapter] = {}
        self.chat: dict[str, ChatAdapter] = {}
        self.notifier = ProgressNotifier(self.chat, min_interval_s=settings.jobs.notify_interval)
        self.orchestrator = Orchestrator(
            self.store, self.clouds, self.notifier, on_event=self._on_event,
            default_cloud=settings.gateway.default_cloud, hints=_oom_hint, link_ttl_s=settings.artifacts.link_ttl)
        self.planner = Planner(settings, self.commands, self.clouds, self.store, self.plugins, self.uploads)
        self.dispatch = Dispatcher(settings=settings, commands=self.commands, store=self.store, planner=self.planner,
                                   orchestrator=self.orchestrator, chat=self.chat, audit=self.audit,
                                   artifacts=None, uploads=self.uploads, accounts=self.accounts,
                                   public_url=lambda: self.services.public_url)
        self._built = False
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inbox_task: asyncio.Task[None] | None = None
        self.port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def build(self, *, chat: bool = True) -> None:
        """Make the artifact store and the adapters (they add their HTTP routes here)."""
        if self._built:
            return
        self._built = True
        built = build_adapters(self.settings, self.plugins, self.services, self.problems, chat=chat)
        self.artifacts = built.artifacts
        self.clouds.update(built.clouds)
        self.chat.update(built.chat)
        self.orchestrator.artifacts = self.dispatch.artifacts = built.artifacts

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.uploads.root.mkdir(exist_ok=True)
        await self.store.open()
        invite = await self.accounts.ensure_operator(self.data_dir / "operator.token")
        self.build()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port)
        await site.start()
        self.port = _bound_port(self._runner) or self.settings.http.port
        if self.settings.http.port == 0 and not self.settings.gateway.public_url:
            self.services.public_url = f"http://127.0.0.1:{self.port}"
        if invite is not None:
            self.sign_in = sign_in_link(self.services.public_url, invite)
        await self.orchestrator.start()
        for name, adapter in list(self.chat.items()):
            try:
                await asyncio.wait_for(adapter.start(self.inbox), timeout=60)
            except Exception as exc:
                self.problems.add(f"chat.{name}", f"did not start: {exc}")
                self.chat.pop(name, None)
        self._inbox_task = asyncio.create_task(self._consume(), name="inbox")
        log.info("hammer is up at %s (chat: %s; clouds: %s)", self.services.public_url,
                 ", ".join(self.chat) or "none", ", ".join(self.clouds) or "none")

    async def stop(self, drain_s: float = 10.0) -> None:
        """Stop taking commands, let the ones being handled finish (up to `drain_s`), tell
        whoever is still waiting to send theirs again, then stop everything else."""
        if self._inbox_task:
            self._inbox_task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=drain_s)
        await self._turn_away()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, *([self._inbox_task] if self._inbox_task else []), return_exceptions=True)
        await self.orchestrator.stop()
        await self.notifier.close()
        for adapter in self.chat.values():
            try:
                await adapter.stop()
            except Exception as exc:
                log.warning("stopping %s: %s", adapter.name, exc)
        for cloud in self.clouds.values():
            try:
                await cloud.close()
            except Exception as exc:
                log.warning("closing %s: %s", cloud.name, exc)
        if self._runner:
            await self._runner.cleanup()
        await self.store.close()

    # -- the inbox -----------------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            item = await self.inbox.get()
            task = asyncio.create_task(self.dispatch.handle(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _turn_away(self) -> None:
        """Commands still queued at shutdown get an answer instead of silence."""
        while not self.inbox.empty():
            item = self.inbox.get_nowait()
            adapter = self.chat.get(item.conversation.platform)
            if adapter is None or not isinstance(item, ChatMessage):
                continue
            try:
                await asyncio.wait_for(adapter.reply(item, OutboundMessage(
                    title="hammer is restarting and did not run this", text="Send it again in a minute.",
                    level="warning")), timeout=5)
            except Exception as exc:
                log.warning("telling %s that hammer restarts failed: %s", item.actor.key, exc)

    def _on_event(self, job: Job, event: Any) -> None:
        self.plugins.job_event(job, event)


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def _oom_hint(job: Job) -> str | None:
    """The estimator's concrete advice after an OOM (needed vs. had, cheapest fix)."""
    try:
        return estimate_mod.oom_hint_for_job(job)
    except Exception:
        return None


def open_store_path(settings: Settings) -> Path:
    """The store file, or SQLite's in-memory database when the gateway never ran (so
    read-only commands such as `hammer plan` create nothing on disk)."""
    return settings.db_path if settings.db_path.exists() else Path(":memory:")
