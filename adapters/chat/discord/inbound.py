"""From Discord to the gateway's inbox: messages, slash commands and button clicks.

Discord wants every interaction answered within 3 s, and the gateway's work is slow, so
each interaction is acknowledged first (deferred: type 5 for a slash command, type 6 for
a click) and only then put on the inbox. The interaction object is kept (its token is
good for 15 minutes) so `reply()` / `respond()` can follow up on it; the inbox item only
carries `interaction:<id>` as its reply handle.

A message's dataset attachments are saved (see attachments.py) before its command goes on
the inbox, and one person's messages are handled in the order they were sent, so a
command typed right after an attachment waits for that file to be stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import discord

from adapters.chat.discord import render, slash
from adapters.chat.discord.attachments import dataset_attachments
from adapters.chat.discord.config import DiscordConfig
from gateway.contracts import InboxItem
from gateway.model import Actor, ChatMessage, Conversation, Interaction

log = logging.getLogger("hammer.discord")

PLATFORM = "discord"
#: Interaction tokens live 15 minutes; stop using one a little before that.
TOKEN_TTL_S = 14 * 60.0
#: Saves a message's dataset attachments and answers them (attachments.Attachments.save_all).
SaveAttachments = Callable[[discord.Message, Sequence[discord.Attachment]], Awaitable[None]]


def role_table(role_map: Mapping[str, str]) -> dict[str, str]:
    """role ids as given, role names lowercased (`@ML Admins` and `ml admins` match)."""
    return {k.strip().lstrip("@").lower(): v for k, v in role_map.items()}


def actor_for(user: discord.User | discord.Member, roles: Mapping[str, str]) -> Actor:
    """Discord user -> Actor; guild roles (by id or name) mapped through `role_map`."""
    hammer_roles: set[str] = set()
    for role in getattr(user, "roles", ()):
        for key in (str(role.id), role.name.lower()):
            if key in roles:
                hammer_roles.add(roles[key])
    return Actor(PLATFORM, str(user.id), user.display_name, tuple(sorted(hammer_roles)))


def conversation_for(channel: Any, channel_id: int | None, guild_id: int | None) -> Conversation:
    """A thread is kept as (parent channel, thread); anything else as the channel."""
    workspace = str(guild_id or "")
    if isinstance(channel, discord.Thread) and channel.parent_id:
        return Conversation(PLATFORM, str(channel.parent_id), workspace, str(channel.id))
    return Conversation(PLATFORM, str(channel_id if channel_id is not None else getattr(channel, "id", "")),
                        workspace)


class Inbound:
    """Filters and normalizes what the bot sees; owns the table of live interactions."""

    def __init__(self, config: DiscordConfig, prefix: str,
                 commands: Callable[[], Sequence[slash.SlashCommand]],
                 save_attachments: SaveAttachments | None = None) -> None:
        self.config = config
        self.prefix = prefix
        self.roles = role_table(config.role_map)
        self.commands = commands
        self.save_attachments = save_attachments
        self._turns: dict[int, tuple[asyncio.Lock, int]] = {}  # author id -> (lock, messages holding it)
        self.inbox: asyncio.Queue[InboxItem] | None = None
        self._live: dict[int, tuple[discord.Interaction, float]] = {}
        self.datasets = slash.dataset_candidates(config.datasets)
        self._models: list[str] | None = None

    # -- interactions kept for follow-ups ----------------------------------------------------
    def remember(self, interaction: discord.Interaction) -> str:
        now = time.monotonic()
        for key in [k for k, (_, t) in self._live.items() if t < now]:
            del self._live[key]
        self._live[interaction.id] = (interaction, now + TOKEN_TTL_S)
        return f"interaction:{interaction.id}"

    def live(self, handle: str | None) -> discord.Interaction | None:
        """The interaction behind a reply handle, while its token is still good."""
        if not handle or not handle.startswith("interaction:"):
            return None
        try:
            entry = self._live.get(int(handle.partition(":")[2]))
        except ValueError:
            return None
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    # -- filters -------------------------------------------------------------------------------
    def guild_allowed(self, guild_id: int | None) -> bool:
        return guild_id is not None and (not self.config.guilds or str(guild_id) in self.config.guilds)

    def channel_allowed(self, channel: Any) -> bool:
        if "*" in self.config.channels:
            return True
        base = channel.parent if isinstance(channel, discord.Thread) and channel.parent else channel
        base_id = channel.parent_id if isinstance(channel, discord.Thread) else getattr(channel, "id", None)
        name = (getattr(base, "name", "") or "").lower()
        return str(base_id) in self.config.channels or (bool(name) and name in self.config.channels)

    def _put(self, item: InboxItem) -> None:
        if self.inbox is None:
            log.warning("Discord item arrived before start(); dropped")
            return
        self.inbox.put_nowait(item)

    # -- events ----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _turn(self, author_id: int) -> AsyncIterator[None]:
        """One author's messages one at a time, in arrival order (asyncio.Lock is FIFO and
        discord.py starts the handlers in the order the events came)."""
        lock, holders = self._turns.get(author_id, (asyncio.Lock(), 0))
        self._turns[author_id] = (lock, holders + 1)
        try:
            async with lock:
                yield
        finally:
            lock, holders = self._turns[author_id]
            if holders <= 1:
                del self._turns[author_id]
            else:
                self._turns[author_id] = (lock, holders - 1)

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None or message.guild is None:
            return
        is_command = message.content.lstrip().startswith(self.prefix)
        files = dataset_attachments(message) if self.save_attachments is not None else []
        if not is_command and not files:
            return
        if not self.guild_allowed(message.guild.id) or not self.channel_allowed(message.channel):
            log.debug("ignoring a message in channel %s (not in chat.discord.channels)", message.channel.id)
            return
        async with self._turn(message.author.id):
            if files and self.save_attachments is not None:
                await self.save_attachments(message, files)  # before the command that may use them
            if is_command:
                self._put(ChatMessage(
                    actor=actor_for(message.author, self.roles),
                    conversation=conversation_for(message.channel, message.channel.id, message.guild.id),
                    text=message.content, message_id=str(message.id),
                    reply_handle=f"message:{message.channel.id}:{message.id}"))

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        try:
            if interaction.type is discord.InteractionType.application_command:
                await self._command(interaction)
            elif interaction.type is discord.InteractionType.autocomplete:
                await self._autocomplete(interaction)
            elif interaction.type is discord.InteractionType.component:
                await self._click(interaction)
        except discord.HTTPException as exc:
            log.error("answering Discord interaction %s failed: %s", interaction.id, exc)

    def _where(self, interaction: discord.Interaction) -> Conversation:
        return conversation_for(interaction.channel, interaction.channel_id, interaction.guild_id)

    async def _refuse_channel(self, interaction: discord.Interaction) -> bool:
        if not self.guild_allowed(interaction.guild_id):
            await interaction.response.send_message("hammer does not serve this server (or direct messages).",
                                                    ephemeral=True)
            return True
        if interaction.channel is not None and not self.channel_allowed(interaction.channel):
            places = ", ".join(f"<#{c}>" if c.isdigit() else f"#{c}" for c in self.config.channels)
            await interaction.response.send_message(f"hammer takes commands in {places} only.",
                                                    ephemeral=True)
            return True
        return False

    async def _command(self, interaction: discord.Interaction) -> None:
        if await self._refuse_channel(interaction):
            return
        await interaction.response.defer(thinking=True)  # within 3 s, before any slow work
        data: Mapping[str, Any] = interaction.data or {}
        name = str(data.get("name", ""))
        command = next((c for c in self.commands() if c.verb == name), None)
        text = slash.to_text(command, name, data.get("options") or [])
        self._put(ChatMessage(
            actor=actor_for(interaction.user, self.roles), conversation=self._where(interaction),
            text=text, message_id=str(interaction.id), reply_handle=self.remember(interaction)))

    async def _autocomplete(self, interaction: discord.Interaction) -> None:
        data: Mapping[str, Any] = interaction.data or {}
        focused = next((o for o in data.get("options") or [] if o.get("focused")), None)
        command = next((c for c in self.commands() if c.verb == data.get("name")), None)
        option = command.option(str(focused.get("name"))) if command and focused else None
        kind = option.autocomplete if option else None
        if kind == "model":
            if self._models is None:
                self._models = slash.model_candidates()
            candidates: Sequence[str] = self._models
        elif kind == "dataset":
            candidates = self.datasets
        elif kind == "verb":
            candidates = [c.verb for c in self.commands()]
        else:
            candidates = []
        current = str(focused.get("value", "")) if focused else ""
        choices = [discord.app_commands.Choice(name=c[:100], value=c[:100])
                   for c in slash.suggest(candidates, current)]
        await interaction.response.autocomplete(choices)

    async def _click(self, interaction: discord.Interaction) -> None:
        data: Mapping[str, Any] = interaction.data or {}
        parsed = render.parse_custom_id(str(data.get("custom_id", "")))
        if parsed is None:
            return  # not ours
        if await self._refuse_channel(interaction):
            return
        await interaction.response.defer()  # type 6: acknowledged, the message stays as it is
        action, value = parsed
        message_id = str(interaction.message.id) if interaction.message else ""
        self._put(Interaction(
            actor=actor_for(interaction.user, self.roles), conversation=self._where(interaction),
            action_id=action, value=value, message_id=message_id, reply_handle=self.remember(interaction)))


class HammerClient(discord.Client):
    """discord.py's client with hammer's handlers; no command tree: interactions are
    routed by `Inbound` so slash commands stay a thin layer over the text grammar."""

    def __init__(self, inbound: Inbound, *, guild_ready_timeout: float) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.message_content = True
        # hammer has no voice: discord.py's "PyNaCl/davey is not installed" warnings are noise.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        super().__init__(intents=intents, guild_ready_timeout=guild_ready_timeout,
                         allowed_mentions=discord.AllowedMentions.none(), max_messages=None)
        self.inbound = inbound

    async def on_message(self, message: discord.Message) -> None:
        await self.inbound.on_message(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.inbound.on_interaction(interaction)
