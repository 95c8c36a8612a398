"""The Discord chat adapter: discord.py's client behind hammer's ChatAdapter contract.

Where things go:
* a command's answer is a reply to the command (a follow-up, for a slash command);
* the job's later messages (the report with the loss curve) go into a thread started
  from the command message. The thread is opened lazily, on the first follow-up: a thread
  started from a message has that message's id, so `reply()` can name it before it
  exists, and `.help` or `.jobs` never leave an empty thread behind;
* progress edits replace the embed in place; concurrent edits of one message collapse to
  the newest, and a 429 is waited out (discord.py honours `retry_after`, and this adapter
  retries on top when discord.py gives up), so the last state always lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import discord

from adapters.chat.discord import diagnose, slash
from adapters.chat.discord.attachments import Attachments
from adapters.chat.discord.config import DiscordConfig
from adapters.chat.discord.inbound import PLATFORM, HammerClient, Inbound
from adapters.chat.discord.render import attachment_name, clip, render
from gateway.contracts import ChatAdapterBase, Check, InboxItem, Services
from gateway.model import ChatMessage, Conversation, Interaction, MessageRef, OutboundMessage, RateLimits

log = logging.getLogger("hammer.discord")
T = TypeVar("T")

RETRIES = 8
THREAD_ARCHIVE_MINUTES = 1440
THREAD_EXISTS = 160004  # Discord: "A thread has already been created for this message"


class DiscordAdapter(ChatAdapterBase):
    """`[chat.discord]` -> a running bot. See docs/discord.md for setup."""

    name = PLATFORM
    config_model = DiscordConfig

    def __init__(self, config: Mapping[str, Any], services: Services) -> None:
        self.config = DiscordConfig.model_validate(dict(config))
        self.services = services
        self.rate_limits = RateLimits(min_edit_interval_s=self.config.edit_interval, max_message_chars=4000)
        self._table = services.commands
        self.prefix: str = self._table.prefix
        self._commands: tuple[slash.SlashCommand, ...] | None = None
        self.attachments = Attachments(services.data_dir / "uploads", self._retry)
        self.inbound = Inbound(self.config, self.prefix, self.commands, self.attachments.save_all)
        self.client: HammerClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self.channel_problems: list[Check] = []
        self._lazy_threads: dict[str, tuple[int, str]] = {}  # thread (= message) id -> (parent, name)
        self._no_thread: set[str] = set()  # threads that could not be opened: post in the channel
        self._thread_locks: dict[str, asyncio.Lock] = {}
        self._edit_locks: dict[str, asyncio.Lock] = {}
        self._latest: dict[str, OutboundMessage] = {}

    def commands(self) -> Sequence[slash.SlashCommand]:
        if self._commands is None:
            specs = self._table.specs
            self._commands = slash.from_specs(specs.values()) if specs else slash.DEFAULT_COMMANDS
        return self._commands

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, inbox: asyncio.Queue[InboxItem]) -> None:
        """Log in, connect, check the channels, register slash commands. Raises
        `DiscordSetupError` (cause + fix) when the bot cannot run at all."""
        self.inbound.inbox = inbox
        self.client, self._runner = await self._connect()
        self._runner.add_done_callback(self._runner_ended)
        try:
            await self._after_connect()
        except BaseException:
            await self.stop()
            raise

    async def _after_connect(self) -> None:
        assert self.client is not None
        reports = diagnose.channel_reports(self.client, self.config.channels, self.config.guilds)
        self.channel_problems = [r.check() for r in reports if not r.ok or r.missing_threads]
        for problem in self.channel_problems:
            (log.warning if problem.ok else log.error)("Discord %s. Fix: %s", problem.what, problem.fix)
        if not self.client.guilds:
            log.error("Discord: the bot is in no server yet. Fix: invite it with %s",
                      diagnose.invite_url(self.client.application_id))
        if self.config.slash_commands:
            await self._register_commands()
        log.info("Discord: connected as %s, serving %d server(s)", self.client.user, len(self.client.guilds))

    async def stop(self) -> None:
        client, runner = self.client, self._runner
        self.client, self._runner = None, None
        await self._shutdown(client, runner)

    async def check(self) -> list[Check]:
        """`hammer doctor`: token, intents, and every configured channel, each with its fix."""
        probe = self.client is None or not self.client.is_ready()
        if probe:
            try:
                client, runner = await self._connect()
            except diagnose.DiscordSetupError as err:
                return [err.check("cannot connect")]
        else:
            assert self.client is not None
            client, runner = self.client, None
        try:
            checks = [Check(True, f"the token is valid (bot {client.user}, application "
                                  f"{client.application_id})"),
                      Check(True, "the gateway accepted the bot's intents (Message Content included)")]
            if not client.guilds:
                checks.append(Check(False, "the bot is in no server",
                                    f"Invite it: {diagnose.invite_url(client.application_id)}"))
            reports = diagnose.channel_reports(client, self.config.channels, self.config.guilds)
            checks += [r.check() for r in reports]
            return checks
        finally:
            if probe:
                await self._shutdown(client, runner)

    async def _connect(self) -> tuple[HammerClient, asyncio.Task[None]]:
        try:
            token = self.services.secret(self.config.token)
        except (ValueError, OSError) as exc:
            raise diagnose.token_unreadable(self.config.token, str(exc)) from None
        client = HammerClient(self.inbound, guild_ready_timeout=self.config.guild_ready_timeout)
        runner: asyncio.Task[None] | None = None
        timeout = self.config.connect_timeout
        try:
            await asyncio.wait_for(client.login(token), timeout)
            runner = asyncio.create_task(client.connect(reconnect=True), name="discord-gateway")
            ready = asyncio.create_task(client.wait_until_ready())
            done, _ = await asyncio.wait({runner, ready}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if ready not in done:
                ready.cancel()
                if runner.done():
                    runner.result()  # raises what ended the connection
                raise diagnose.DiscordSetupError(
                    f"the Discord gateway did not get ready within {timeout:.0f} s.",
                    "Check the network path to wss://gateway.discord.gg, "
                    "or raise chat.discord.connect_timeout.")
            return client, runner
        except Exception as exc:
            await self._shutdown(client, runner)
            if isinstance(exc, diagnose.DiscordSetupError):
                raise
            if isinstance(exc, discord.LoginFailure):
                raise diagnose.token_rejected() from None
            if isinstance(exc, discord.PrivilegedIntentsRequired):
                raise diagnose.intents_missing() from None
            if isinstance(exc, discord.ConnectionClosed):
                raise diagnose.closed(exc) from None
            if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError | discord.GatewayNotFound):
                raise diagnose.unreachable(exc) from None
            if isinstance(exc, discord.HTTPException):
                raise diagnose.DiscordSetupError(
                    f"Discord answered HTTP {exc.status} while logging in: {exc.text or exc}.",
                    "Try again later; if it persists check https://discordstatus.com.") from None
            # discord.py can fail on its own follow-up (e.g. AttributeError after a failed
            # first connection); the cause is what went wrong underneath.
            cause = exc.__context__ if isinstance(exc.__context__, Exception) else exc
            if isinstance(cause, aiohttp.ClientError | OSError):
                raise diagnose.unreachable(cause) from None
            raise diagnose.DiscordSetupError(f"connecting failed: {cause!r}.",
                                             "Restart hammer; report a bug if it persists.") from exc

    @staticmethod
    async def _shutdown(client: discord.Client | None, runner: asyncio.Task[None] | None) -> None:
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 10)
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(runner, 5)

    def _runner_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.client is None:
            return
        exc = task.exception()
        if isinstance(exc, discord.PrivilegedIntentsRequired):
            err = diagnose.intents_missing()
        elif isinstance(exc, discord.ConnectionClosed):
            err = diagnose.closed(exc)
        else:
            err = diagnose.DiscordSetupError(f"the gateway connection ended ({exc!r}).", "Restart hammer.")
        log.error("%s", err)

    async def _register_commands(self) -> None:
        """Overwrite the application's slash commands with hammer's (idempotent)."""
        assert self.client is not None
        payload = [c.payload() for c in self.commands()]
        app_id = self.client.application_id
        for guild in self.config.guilds or [None]:
            try:
                if guild is None:
                    await self.client.http.bulk_upsert_global_commands(app_id, payload)
                else:
                    await self.client.http.bulk_upsert_guild_commands(app_id, int(guild), payload)
            except discord.Forbidden:
                log.error("Discord: registering slash commands%s was refused (403). Fix: re-invite the "
                          "bot with the applications.commands scope: %s",
                          f" in server {guild}" if guild else "", diagnose.invite_url(app_id))
            except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
                log.error("Discord: registering slash commands failed: %s. Prefix commands still work.", exc)

    # -- outbound ------------------------------------------------------------------------------
    def _client(self) -> HammerClient:
        if self.client is None:
            raise RuntimeError("the Discord adapter is not running")
        return self.client

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run a request again after a 429 (or a 5xx) that discord.py gave up on."""
        for attempt in range(RETRIES):
            try:
                return await call()
            except discord.RateLimited as exc:
                delay = exc.retry_after
                last: Exception = exc
            except discord.DiscordServerError as exc:
                delay, last = min(30.0, 2.0 ** attempt), exc
            except discord.HTTPException as exc:
                if exc.status != 429:
                    raise
                delay, last = _retry_after(exc), exc
            if attempt + 1 < RETRIES:
                log.warning("Discord: rate limited or unavailable (%s); retrying in %.2f s", last, delay)
                await asyncio.sleep(delay)
        raise last

    def _channel(self, channel_id: int) -> discord.PartialMessageable:
        return self._client().get_partial_messageable(channel_id)

    def _threads_allowed(self, channel_id: int) -> bool:
        channel = self._client().get_channel(channel_id)
        if not self.config.threads or not isinstance(channel, discord.TextChannel):
            return False
        if channel.guild.me is None:
            return False
        perms = channel.permissions_for(channel.guild.me)
        return perms.create_public_threads and perms.send_messages_in_threads

    def _follow_ups(self, conversation: Conversation, source_id: int, channel_id: int,
                    msg: OutboundMessage) -> Conversation:
        """Where the job's later messages go: a (lazy) thread from `source_id` if possible."""
        if conversation.thread is not None or not self._threads_allowed(channel_id):
            return conversation
        self._lazy_threads[str(source_id)] = (channel_id, clip(msg.title or "hammer", 100))
        return conversation.in_thread(str(source_id))

    async def _target(self, conversation: Conversation) -> int:
        """The channel id to post in: the thread (opened now if it is still lazy) or the channel."""
        thread = conversation.thread
        if thread is None or thread in self._no_thread:
            return int(conversation.channel)
        if thread not in self._lazy_threads:
            return int(thread)
        lock = self._thread_locks.setdefault(thread, asyncio.Lock())
        async with lock:
            pending = self._lazy_threads.pop(thread, None)
            if pending is None:
                return int(conversation.channel) if thread in self._no_thread else int(thread)
            parent, name = pending
            try:
                await self._retry(lambda: self._client().http.start_thread_with_message(
                    parent, int(thread), name=name, auto_archive_duration=THREAD_ARCHIVE_MINUTES))
            except discord.HTTPException as exc:
                if exc.code != THREAD_EXISTS:
                    log.warning("Discord: cannot open a thread in channel %s (%s); posting in the channel",
                                parent, exc)
                    self._no_thread.add(thread)
                    return int(conversation.channel)
            return int(thread)

    async def _post(self, conversation: Conversation,
                    kwargs: Callable[[], dict[str, Any]]) -> discord.Message:
        target = await self._target(conversation)
        try:
            return await self._retry(lambda: self._channel(target).send(**kwargs()))
        except discord.NotFound:
            if conversation.thread is None or target != int(conversation.thread):
                raise
            # The thread was named but never opened (the gateway restarted in between).
            self._lazy_threads[conversation.thread] = (int(conversation.channel), "hammer")
            target = await self._target(conversation)
            return await self._retry(lambda: self._channel(target).send(**kwargs()))

    async def send(self, conversation: Conversation, msg: OutboundMessage) -> MessageRef:
        r = render(msg)
        sent = await self._post(conversation, r.send_kwargs)
        return MessageRef(PLATFORM, conversation, str(sent.id), {"channel_id": str(sent.channel.id)})

    async def reply(self, message: ChatMessage, msg: OutboundMessage) -> MessageRef:
        """A follow-up on the slash command's interaction, or a reply to the message;
        the returned conversation names the (lazy) thread for the job's follow-ups."""
        r = render(msg)
        interaction = self.inbound.live(message.reply_handle)
        extra: dict[str, Any] = {}
        sent: discord.Message | None = None
        if interaction is not None:
            try:
                sent = await self._retry(lambda: interaction.followup.send(wait=True, **r.send_kwargs()))
            except discord.NotFound:  # the interaction token is gone: answer in the channel
                log.warning("Discord: interaction %s is gone; answering in the channel", interaction.id)
            else:
                channel_id, source_id = int(interaction.channel_id or message.conversation.channel), sent.id
                extra["interaction"] = str(interaction.id)
        if sent is None:
            conv = message.conversation
            channel_id = int(conv.thread or conv.channel)
            from_slash = (message.reply_handle or "").startswith("interaction:")  # no message to quote
            source_id = int(message.message_id) if message.message_id.isdigit() and not from_slash else 0

            def kwargs() -> dict[str, Any]:
                k = r.send_kwargs()
                if source_id:
                    k["reference"] = discord.MessageReference(message_id=source_id, channel_id=channel_id,
                                                              fail_if_not_exists=False)
                return k

            sent = await self._retry(lambda: self._channel(channel_id).send(**kwargs()))
            source_id = source_id or sent.id
        extra["channel_id"] = str(sent.channel.id if sent.channel else channel_id)
        conversation = self._follow_ups(message.conversation, source_id, channel_id, msg)
        return MessageRef(PLATFORM, conversation, str(sent.id), extra)

    async def edit(self, ref: MessageRef, msg: OutboundMessage) -> None:
        """Edit in place. Calls for one message run one at a time; a call whose state was
        overtaken by a newer one while it waited returns at once (the newer one is sent)."""
        key = ref.message_id
        self._latest[key] = msg
        lock = self._edit_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if self._latest.get(key) is not msg:
                return
            try:
                await self._edit_now(ref, msg)
            finally:
                if self._latest.get(key) is msg:
                    del self._latest[key]
                    self._edit_locks.pop(key, None)

    async def _edit_now(self, ref: MessageRef, msg: OutboundMessage) -> None:
        r = render(msg)
        interaction = self.inbound.live(f"interaction:{ref.extra.get('interaction', '')}")
        message_id = int(ref.message_id)
        if interaction is not None:
            await self._retry(lambda: interaction.followup.edit_message(message_id, **r.edit_kwargs()))
            return
        channel_id = int(ref.extra.get("channel_id") or ref.conversation.thread or ref.conversation.channel)
        message = self._channel(channel_id).get_partial_message(message_id)
        await self._retry(lambda: message.edit(**r.edit_kwargs()))

    async def respond(self, interaction: Interaction, msg: OutboundMessage) -> None:
        live = self.inbound.live(interaction.reply_handle)
        if live is None:
            log.warning("Discord: interaction %s expired; private answer not delivered: %s",
                        interaction.reply_handle, msg.title or msg.text)
            return
        r = render(msg)
        await self._retry(lambda: live.followup.send(ephemeral=True, wait=True, **r.send_kwargs()))

    async def upload(self, conversation: Conversation, path: Path, title: str) -> MessageRef:
        def kwargs() -> dict[str, Any]:
            return {"content": clip(title, 2000) or None,
                    "file": discord.File(path, filename=attachment_name(path))}

        sent = await self._post(conversation, kwargs)
        return MessageRef(PLATFORM, conversation, str(sent.id), {"channel_id": str(sent.channel.id)})


def _retry_after(exc: discord.HTTPException) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    try:
        return max(0.05, float(headers.get("Retry-After", 1.0)))
    except (TypeError, ValueError):
        return 1.0
