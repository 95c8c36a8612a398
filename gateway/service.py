"""The running gateway: wires plugins, store, orchestrator, HTTP server and chat adapters,
and turns inbox items (chat messages, button clicks) into answers and jobs.

One slow or broken thing never stops the rest: each inbox item is handled in its own
task, an adapter that fails to start is reported (`hammer doctor`) while the others
keep running, and every user error becomes a message that says what to do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import config as config_mod
from gateway import estimate as estimate_mod
from gateway import http, policy, render
from gateway.commands import CommandError, CommandSpec, CommandTable, Param
from gateway.config import Settings
from gateway.contracts import ArtifactStore, ChatAdapter, CloudAdapter, InboxItem, Services
from gateway.jobs import Orchestrator, ProgressNotifier
from gateway.logs import AuditLog
from gateway.model import ChatMessage, Command, Interaction, Job, JobSpec, OutboundMessage
from gateway.plugins import Plugins, load_plugins
from gateway.store import Store

log = logging.getLogger("hammer.service")


@dataclass
class JobContext:
    """What a task plugin's `build_job(command, ctx)` may use."""

    job_id: str
    settings: Settings
    uploads_dir: Path
    hammer: Any = None


@dataclass
class Planned:
    """A command turned into a job without running it (`.plan`, `hammer plan`)."""

    command: Command
    spec: JobSpec
    estimate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        job = {"task": s.task, "model": s.model, "datasets": list(s.datasets), "argv": list(s.argv),
               "image": s.image, "cloud": s.cloud, "resources": s.resources.to_dict(), "limits": s.limits.to_dict(),
               "needs_network": s.needs_network}
        cmd = {"verb": self.command.verb, "args": _jsonable(self.command.args), "raw": self.command.raw}
        out: dict[str, Any] = {"ok": True, "command": cmd, "job": job}
        if self.estimate is not None:
            out["estimate"] = self.estimate
        return out


@dataclass
class Problems:
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        log.error("%s: %s", where, what)
        self.items.append((where, what))


class Hammer:
    def __init__(self, settings: Settings, plugins: Plugins | None = None) -> None:
        self.settings = settings
        self.plugins = plugins or load_plugins(settings.plugins.model_dump())
        self.data_dir = settings.data_dir
        self.problems = Problems()
        self.commands = build_command_table(self.plugins, settings)
        self.inbox: asyncio.Queue[InboxItem] = asyncio.Queue()
        self.store = Store(settings.db_path)
        self.audit = AuditLog(self.data_dir / "audit.jsonl")
        self.app = http.build_app(self)
        self.services = Services(data_dir=self.data_dir, public_url=settings.public_url,
                                 secret=config_mod.resolve_secret, http=self.app, settings=settings)
        self.services.extra["commands"] = self.commands  # adapters build slash-command options from it
        self.artifacts: ArtifactStore | None = None
        self.clouds: dict[str, CloudAdapter] = {}
        self.chat: dict[str, ChatAdapter] = {}
        self.notifier = ProgressNotifier(self.chat, min_interval_s=settings.jobs.notify_interval)
        self.orchestrator: Orchestrator | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inbox_task: asyncio.Task[None] | None = None
        self.port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def build_adapters(self) -> None:
        """Instantiate the configured adapters (they add their HTTP routes here)."""
        stores = self.plugins.artifact_stores()
        name = self.settings.artifacts.store
        if name in stores:
            try:
                self.artifacts = stores[name]({"path": self.settings.artifacts.path}, self.services)
                self.services.artifacts = self.artifacts
            except Exception as exc:
                self.problems.add(f"artifacts.{name}", f"cannot start: {exc}")
        else:
            self.problems.add("artifacts.store", f"no artifact store named {name!r} (have: {', '.join(stores)})")
        for section, registry, target in (("cloud", self.plugins.cloud_adapters(), self.clouds),
                                          ("chat", self.plugins.chat_adapters(), self.chat)):
            for cname, cfg in self.settings.enabled(section).items():  # type: ignore[arg-type]
                factory = registry.get(cname)
                if factory is None:
                    self.problems.add(f"{section}.{cname}", f"no {section} adapter plugin named {cname!r} is "
                                      f"loaded (loaded: {', '.join(sorted(registry)) or 'none'})")
                    continue
                try:
                    target[cname] = factory({k: v for k, v in cfg.items() if k != "enabled"}, self.services)
                except Exception as exc:
                    self.problems.add(f"{section}.{cname}", f"cannot start: {exc}")

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "uploads").mkdir(exist_ok=True)
        await self.store.open()
        self.build_adapters()
        self.orchestrator = Orchestrator(
            self.store, self.clouds, self.notifier, artifacts=self.artifacts, on_event=self._on_event,
            default_cloud=self.settings.gateway.default_cloud, hints=_oom_hint)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.http.port
        if self.settings.http.port == 0:
            self.services.public_url = f"http://127.0.0.1:{self.port}"
            for a in (self.artifacts, *self.chat.values()):
                if a is not None and hasattr(a, "public_url"):
                    a.public_url = self.services.public_url
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

    async def stop(self) -> None:
        if self._inbox_task:
            self._inbox_task.cancel()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, *( [self._inbox_task] if self._inbox_task else []), return_exceptions=True)
        if self.orchestrator:
            await self.orchestrator.stop()
        await self.notifier.close()
        for adapter in self.chat.values():
            try:
                await adapter.stop()
            except Exception as exc:
                log.warning("stopping %s: %s", adapter.name, exc)
        for cloud in self.clouds.values():
            close = getattr(cloud, "close", None)
            if close is not None:
                await close()
        if self._runner:
            await self._runner.cleanup()
        await self.store.close()

    # -- the inbox -----------------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            item = await self.inbox.get()
            task = asyncio.create_task(self.handle(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def handle(self, item: InboxItem) -> None:
        try:
            if isinstance(item, Interaction):
                await self.handle_interaction(item)
            else:
                await self.handle_message(item)
        except Exception:
            log.exception("handling an item from %s failed", item.conversation.platform,
                          extra={"platform": item.conversation.platform, "actor": item.actor.key})

    async def handle_message(self, msg: ChatMessage) -> None:
        adapter = self.chat.get(msg.conversation.platform)
        if adapter is None:
            return
        try:
            reply = await self.execute(msg.text, msg.actor, msg.conversation, adapter=adapter, message=msg)
        except CommandError as err:
            await adapter.reply(msg, render.error_message(err))
            return
        if isinstance(reply, OutboundMessage):
            await adapter.reply(msg, reply)

    async def execute(self, text: str, actor: Any, conversation: Any, *, adapter: ChatAdapter | None = None,
                      message: ChatMessage | None = None) -> OutboundMessage | Job | None:
        """Run one command. Returns the answer (an OutboundMessage) or the Job it started;
        raises CommandError for anything the user got wrong or may not do."""
        try:
            cmd = self.commands.parse(text, actor, conversation)
        except CommandError as err:
            self.audit.record("command", actor=actor.key, text=text, ok=False, error=err.to_dict())
            raise
        self.audit.record("command", actor=actor.key, platform=conversation.platform, verb=cmd.verb, text=text)
        spec = self.commands.specs[cmd.verb]
        if spec.handle is not None:
            return await spec.handle(cmd, self)  # type: ignore[no-any-return]
        return await self.launch(cmd, adapter=adapter, message=message)

    def job_context(self, job_id: str | None = None) -> JobContext:
        return JobContext(job_id or secrets.token_hex(4), self.settings, self.data_dir / "uploads", self)

    async def plan(self, cmd: Command) -> Planned:
        spec = self.commands.specs[cmd.verb]
        if spec.build_job is None:
            raise CommandError("not_a_job", f".{cmd.verb} starts no job.", "Plan a job command such as .finetune.")
        job_spec = await _maybe_await(spec.build_job(cmd, self.job_context()))
        if not job_spec.cloud:
            job_spec = dataclasses.replace(job_spec, cloud=self.settings.gateway.default_cloud)
        planned = Planned(cmd, job_spec, None)
        est = await self._estimate(job_spec)
        if est is not None:
            # The cheapest machine in the whole catalog (what the job needs), and whether the
            # cloud it would run on now can hold it (what `launch` checks).
            try:
                plan = await asyncio.to_thread(estimate_mod.pick, est, headroom=self.settings.jobs.headroom)
                planned.estimate = plan.to_dict()
            except estimate_mod.EstimateError as exc:
                planned.estimate = {**est.to_dict(), "recommendation": None, "reason": exc.message}
            if job_spec.cloud in self.clouds:
                try:
                    await self.check_fit(job_spec, est)
                    planned.estimate["fits_target"] = True
                except CommandError as err:
                    planned.estimate["fits_target"] = False
                    planned.estimate["target_problem"] = err.message
        return planned

    async def _estimate(self, spec: JobSpec) -> Any:
        """The memory estimate of a job, or None for models outside the catalog."""
        try:
            return await asyncio.to_thread(estimate_mod.estimate_from_params, spec.model, spec.params,
                                           task=spec.task, gpus=max(1, spec.resources.gpu_count))
        except (estimate_mod.EstimateError, TypeError, ValueError):
            return None

    async def check_fit(self, spec: JobSpec, est: Any = None) -> None:
        """Refuse, before anything starts, a job that cannot fit the machine it would get."""
        est = est if est is not None else await self._estimate(spec)
        cloud = self.clouds.get(spec.cloud)
        if est is None or cloud is None:
            return
        try:
            machines = await cloud.catalog()
        except Exception:
            return
        if not machines:
            return
        errors = []
        for machine in machines:
            try:
                estimate_mod.require_fit(est, machine, headroom=self.settings.jobs.headroom)
                return
            except estimate_mod.EstimateError as exc:
                errors.append(exc)
        first = errors[0]
        raise CommandError("does_not_fit", first.message, first.hint or "Try a smaller model or the qlora tuner.")

    async def launch(self, cmd: Command, *, adapter: ChatAdapter | None = None,
                     message: ChatMessage | None = None) -> Job:
        planned = await self.plan(cmd)
        decision = await policy.evaluate(cmd.actor, cmd, planned.spec, settings=self.settings, store=self.store,
                                         plugins=self.plugins)
        self.audit.record("policy", actor=cmd.actor.key, verb=cmd.verb, job_id=planned.spec.id,
                          allowed=decision.allowed, reasons=decision.reasons, needs_approval=decision.needs_approval)
        if not decision.allowed:
            raise CommandError("denied", "Not allowed: " + "; ".join(decision.reasons),
                               "Ask a hammer admin if you think this is wrong.")
        await self.check_fit(planned.spec)
        spec = dataclasses.replace(planned.spec, requester=cmd.actor, reply_to=cmd.conversation)
        assert self.orchestrator is not None

        async def post_progress(job: Job) -> None:
            if adapter is None or message is None:
                return
            try:
                job.progress_ref = await adapter.reply(message, render.progress_message(job, time.time()))
                await self.store.save(job)
            except Exception as exc:
                log.error("job %s: posting the progress message failed: %s", job.id, exc, extra={"job_id": job.id})

        try:
            return await self.orchestrator.submit(spec, pending_approval=decision.needs_approval,
                                                  before_start=post_progress)
        except ValueError as exc:
            raise CommandError("no_cloud", str(exc), "Enable a cloud adapter in the config ([cloud.docker]).") from None

    async def handle_interaction(self, ia: Interaction) -> None:
        adapter = self.chat.get(ia.conversation.platform)
        if adapter is None or self.orchestrator is None:
            return
        self.audit.record("interaction", actor=ia.actor.key, action=ia.action_id, job_id=ia.value)
        job = await self.store.get_job(ia.value)
        if job is None:
            await adapter.respond(ia, render.text_message(f"There is no job {ia.value}.", level="error"))
            return
        admin = policy.is_admin(ia.actor, self.settings)
        if ia.action_id == "cancel":
            if not admin and ia.actor.key != job.requester_key:
                self.audit.record("policy", actor=ia.actor.key, action="cancel", job_id=job.id, allowed=False)
                await adapter.respond(ia, render.text_message(
                    f"Only the person who started job {job.id} or a hammer admin can cancel it.", level="error"))
                return
            await self.orchestrator.cancel(job.id, f"cancelled by {ia.actor.display_name or ia.actor.user_id}")
        elif ia.action_id in ("approve", "deny"):
            if not admin:
                await adapter.respond(ia, render.text_message("Only a hammer admin can approve jobs.", level="error"))
                return
            if ia.action_id == "approve":
                await self.orchestrator.approve(job.id)
            else:
                await self.orchestrator.cancel(job.id, f"denied by {ia.actor.display_name or ia.actor.user_id}")
        else:
            await adapter.respond(ia, render.text_message(f"Unknown action {ia.action_id!r}.", level="error"))

    def _on_event(self, job: Job, event: Any) -> None:
        self.plugins.job_event(job, event)

    async def cancel_job(self, job_id: str, actor: Any) -> Job:
        """Cancel on behalf of `actor` (requester or admin), raising CommandError otherwise."""
        job = await self.store.get_job(job_id)
        if job is None:
            raise CommandError("unknown_job", f"There is no job {job_id}.", "See .jobs for your jobs.")
        if not policy.is_admin(actor, self.settings) and actor.key != job.requester_key:
            raise CommandError("denied", f"Only the person who started job {job_id} or a hammer admin can cancel it.",
                               "Ask them, or an admin.")
        if job.state.terminal:
            raise CommandError("already_ended", f"Job {job_id} already {job.state.value}.", "Nothing to cancel.")
        assert self.orchestrator is not None
        return await self.orchestrator.cancel(job_id, f"cancelled by {actor.display_name or actor.user_id}")


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


def _oom_hint(job: Job) -> str | None:
    """The estimator's concrete advice after an OOM (needed vs. had, cheapest fix)."""
    try:
        return estimate_mod.oom_hint_for_job(job)
    except Exception:
        return None


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return await value
    return value


def _jsonable(args: Any) -> Any:
    if isinstance(args, Command):
        return {"verb": args.verb, "args": _jsonable(args.args)}
    if isinstance(args, dict):
        return {k: _jsonable(v) for k, v in args.items()}
    return args

