"""From an inbox item to an answer or a job, and the face command handlers see.

`Dispatcher` turns a ChatMessage into a Command (gateway.commands), runs the verb's
handler or plans and launches its job, and answers in the same conversation. A button
click is not a second code path: it runs the verb the button stands for (`cancel`,
`approve`, `deny`) with the same arguments a typed command would have, so the same
permission checks apply, and answers privately. Every user error is a CommandError
turned into a message that says what to do.

The Dispatcher is also the `GatewayAPI` (gateway.contracts) that handlers receive:
exactly what a plugin may use, and nothing of the gateway's wiring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from gateway import errors, messages, policy
from gateway.commands import CommandError, CommandTable
from gateway.config import Settings
from gateway.contracts import ArtifactStore, ChatAdapter, InboxItem, JobReader, Permissions
from gateway.jobs import Orchestrator
from gateway.jobs.planner import Planned, Planner
from gateway.logs import AuditLog
from gateway.model import Actor, ChatMessage, Command, Conversation, Interaction, Job, JobState, OutboundMessage
from gateway.store import Store
from gateway.uploads import UploadSpace
from gateway.webauth import AccountError, Accounts, sign_in_link

log = logging.getLogger("hammer.dispatch")

#: Button action ids and the verbs they run.
CLICK_VERBS = {"cancel": "cancel", "approve": "approve", "deny": "deny"}


class Dispatcher:
    def __init__(self, *, settings: Settings, commands: CommandTable, store: Store, planner: Planner,
                 orchestrator: Orchestrator, chat: Mapping[str, ChatAdapter], audit: AuditLog,
                 artifacts: ArtifactStore | None, uploads: UploadSpace, accounts: Accounts,
                 public_url: Callable[[], str]) -> None:
        self._settings, self._commands, self._store = settings, commands, store
        self.planner, self.orchestrator, self.chat, self.audit = planner, orchestrator, chat, audit
        self.artifacts, self.upload_space = artifacts, uploads
        self.accounts, self.public_url = accounts, public_url
        self._launch_locks: dict[str, asyncio.Lock] = {}

    # -- GatewayAPI -------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def commands(self) -> CommandTable:
        return self._commands

    @property
    def store(self) -> JobReader:
        return self._store

    def permissions(self, actor: Actor) -> Permissions:
        return policy.permissions(actor, self._settings)

    def help_text(self, actor: Actor, verb: str | None = None) -> str:
        return self._commands.help_text(verb, allowed=lambda spec: policy.may_run(actor, spec.verb, self._settings))

    async def plan(self, command: Command) -> Planned:
        return await self.planner.plan(command)

    async def _job(self, job_id: str) -> Job:
        job = await self._store.get_job(job_id)
        if job is None:
            raise CommandError("unknown_job", f"There is no job {job_id}.", "See .jobs for the list of jobs.")
        return job

    async def cancel_job(self, job_id: str, actor: Actor) -> Job:
        """Cancel on behalf of `actor` (requester or admin), raising CommandError otherwise."""
        job = await self._job(job_id)
        if not self.permissions(actor).may_manage(job):
            self.audit.record("policy", actor=actor.key, action="cancel", job_id=job_id, allowed=False)
            raise CommandError("denied", f"Only the person who started job {job_id} or a hammer admin can cancel it.",
                               "Ask them, or an admin.")
        if job.state.terminal:
            raise CommandError("already_ended", f"Job {job_id} already {job.state.value}.", "Nothing to cancel.")
        return await self.orchestrator.cancel(job_id, f"cancelled by {_who(actor)}")

    async def _decide(self, job_id: str, actor: Actor) -> Job:
        if not self.permissions(actor).admin:
            self.audit.record("policy", actor=actor.key, action="approve", job_id=job_id, allowed=False)
            raise CommandError("denied", "Only a hammer admin can approve or deny jobs.", "Ask an admin.")
        job = await self._job(job_id)
        if job.state != JobState.PENDING_APPROVAL:
            raise CommandError("not_pending", f"Job {job_id} is {job.state.value}, not waiting for approval.",
                               "Nothing to decide.")
        return job

    async def approve_job(self, job_id: str, actor: Actor) -> Job:
        await self._decide(job_id, actor)
        self.audit.record("approval", actor=actor.key, job_id=job_id, approved=True)
        return await self.orchestrator.approve(job_id)

    async def deny_job(self, job_id: str, actor: Actor) -> Job:
        await self._decide(job_id, actor)
        self.audit.record("approval", actor=actor.key, job_id=job_id, approved=False)
        return await self.orchestrator.cancel(job_id, f"denied by {_who(actor)}")

    async def artifact_links(self, job: Job) -> dict[str, str]:
        if self.artifacts is None:
            return {}
        ttl = self._settings.artifacts.link_ttl
        return {name: await self.artifacts.url(key, ttl) for name, key in job.artifact_keys().items()}

    def uploads(self, actor: Actor) -> Sequence[str]:
        return self.upload_space.names(actor)

    async def invite(self, actor: Actor, name: str, role: str) -> str:
        if not self.permissions(actor).admin:
            raise CommandError("denied", "Only a hammer admin can invite people.", "Ask an admin.")
        try:
            token = await self.accounts.add(name, role)
        except AccountError as exc:
            raise CommandError("bad_account", str(exc), "See `hammer users list`.") from None
        self.audit.record("invite", actor=actor.key, name=name, role=role)
        return sign_in_link(self.public_url(), token)

    # -- commands ---------------------------------------------------------------------------------
    async def execute(self, text: str, actor: Actor, conversation: Conversation, *,
                      message: ChatMessage | None = None) -> OutboundMessage | Job:
        """Run one command: the answer (an OutboundMessage) or the Job it started; raises
        CommandError for anything the user got wrong or may not do."""
        try:
            try:
                cmd = self._commands.parse(text, actor, conversation)
            except CommandError as err:
                self.audit.record("command", actor=actor.key, text=text, ok=False, error=err.to_dict())
                raise
            self.audit.record("command", actor=actor.key, platform=conversation.platform, verb=cmd.verb, text=text)
            return await self.run(cmd, message=message)
        except CommandError:
            raise
        except Exception as exc:  # the gateway's own failure (a full disk...): a clear answer, never silence
            log.exception("command %r from %s failed", text[:80], actor.key, extra={"actor": actor.key})
            raise errors.as_command_error(exc) from None

    async def run(self, cmd: Command, *, message: ChatMessage | None = None) -> OutboundMessage | Job:
        spec = self._commands.specs[cmd.verb]
        if spec.handle is not None:
            return await spec.handle(cmd, self)
        return await self.launch(cmd, message=message)

    async def launch(self, cmd: Command, *, message: ChatMessage | None = None) -> Job:
        # One launch per person at a time: two commands at the concurrency limit cannot
        # both pass the check before either is stored.
        lock = self._launch_locks.setdefault(cmd.actor.key, asyncio.Lock())
        async with lock:
            planned = await self.planner.plan(cmd)
            d = planned.decision
            self.audit.record("policy", actor=cmd.actor.key, verb=cmd.verb, job_id=planned.spec.id,
                              allowed=d.allowed, reasons=d.reasons, needs_approval=d.needs_approval,
                              estimated_cost_usd=planned.cost.estimated_usd, cost_basis=planned.cost.basis)
            if not d.allowed:
                raise CommandError("denied", "Not allowed: " + "; ".join(d.reasons),
                                   "Ask a hammer admin if you think this is wrong.")
            if planned.fit_error is not None:
                raise planned.fit_error
            return await self.orchestrator.submit(planned.spec, pending_approval=d.needs_approval, origin=message)

    # -- the inbox ---------------------------------------------------------------------------------
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
            reply = await self.execute(msg.text, msg.actor, msg.conversation, message=msg)
        except CommandError as err:
            await adapter.reply(msg, messages.error_message(err))
            return
        if isinstance(reply, OutboundMessage):
            await adapter.reply(msg, reply)

    async def handle_interaction(self, ia: Interaction) -> None:
        adapter = self.chat.get(ia.conversation.platform)
        if adapter is None:
            return
        self.audit.record("interaction", actor=ia.actor.key, action=ia.action_id, job_id=ia.value)
        verb = CLICK_VERBS.get(ia.action_id)
        if verb is None or verb not in self._commands.specs:
            await adapter.respond(ia, messages.text_message(f"Unknown action {ia.action_id!r}.", level="error"))
            return
        try:
            spec = self._commands.specs[verb]
            job_param = next(p for p in spec.params if p.kind == "job")
            job_id = job_param.convert(ia.value, verb)
            cmd = Command(verb, {job_param.name: job_id}, f"{self._commands.prefix}{verb} {job_id}", ia.actor,
                          ia.conversation)
            answer = await self.run(cmd)
        except CommandError as err:
            await adapter.respond(ia, messages.error_message(err))
            return
        if isinstance(answer, OutboundMessage):
            await adapter.respond(ia, answer)


def _who(actor: Actor) -> str:
    return actor.display_name or actor.user_id
