"""Slack requests -> normalized `ChatMessage` / `Interaction` items on the gateway inbox.

Every listener acknowledges first (Slack gives 3 seconds, and a slash command or button
that is not acked shows the user an error) and only then resolves the sender's roles and
puts the item on the inbox; the gateway's slow work happens after that.

Slack re-delivers an event it believes was missed (HTTP `X-Slack-Retry-Num`, a Socket
Mode envelope's `retry_attempt`), and sends both `message` and `app_mention` for one
message that mentions the app. `SeenCache` remembers event ids and message timestamps
for `dedupe_ttl`, so one message never becomes two jobs.

A message that carries dataset files (`files`, subtype `file_share`) is handled even
without a command: its datasets go to `attachments` first (download and save, answered
in the thread), and only then is its command, if it has one, put on the inbox, so
`.finetune demo-lora upload:faq.jsonl` with faq.jsonl attached works in one message.
Files count where commands do: in the channels hammer listens to, in a direct message
when those are commands, and with a mention anywhere.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from adapters.chat.slack.blocks import action_of
from adapters.chat.slack.files import dataset_files
from adapters.chat.slack.identity import Directory
from gateway.contracts import InboxItem
from gateway.model import ChatMessage, Conversation, Interaction

log = logging.getLogger("hammer.slack")
_MENTION = re.compile(r"^\s*(?:<@[A-Z0-9]+(?:\|[^>]*)?>[\s,:]*)+")
_MESSAGE_SUBTYPES = {None, "thread_broadcast", "file_share"}
#: Saves a message's dataset files and answers about them; called before the command goes on.
Attachments = Callable[[ChatMessage, list[dict[str, Any]]], Awaitable[None]]


class SeenCache:
    """Bounded in count and in time: remembers keys for `ttl` seconds, at most `size`."""

    def __init__(self, ttl: float, size: int = 20_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._keys: OrderedDict[str, float] = OrderedDict()

    def first_time(self, *keys: str | None) -> bool:
        """True when none of `keys` was seen within the TTL; records all of them."""
        now = self.clock()
        while self._keys and next(iter(self._keys.values())) < now - self.ttl:
            self._keys.popitem(last=False)
        real = [k for k in keys if k]
        fresh = not any(k in self._keys for k in real)
        for k in real:
            self._keys[k] = now
            self._keys.move_to_end(k)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return fresh


class Inbound:
    """Registers hammer's listeners on a bolt `AsyncApp` and feeds `deliver`."""

    def __init__(self, *, directory: Directory, deliver: Callable[[InboxItem], Awaitable[None]],
                 seen: SeenCache, prefix: str, slash_command: str, channels: Collection[str],
                 direct_messages: bool, channel_name: Callable[[str], Awaitable[str]],
                 attachments: Attachments | None = None) -> None:
        self.directory = directory
        self.deliver = deliver
        self.seen = seen
        self.prefix = prefix
        self.slash_command = slash_command
        self.channels = {c.lstrip("#") for c in channels}
        self.direct_messages = direct_messages
        self.channel_name = channel_name
        self.attachments = attachments

    def register(self, app: Any) -> None:
        app.command(self.slash_command)(self.on_command)
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.action(re.compile(r".*"))(self.on_action)  # ack every click; act on hammer_* only

    # -- listeners (bolt injects arguments by name) ---------------------------------------
    async def on_command(self, ack: Any, command: dict[str, Any], request: Any) -> None:
        await ack()
        trigger = command.get("trigger_id")
        if not self.seen.first_time(f"cmd:{trigger}" if trigger else None):
            log.info("Slack re-sent slash command %s; ignored", command.get("trigger_id"))
            return
        text = (command.get("text") or "").strip() or "help"
        user = str(command.get("user_id", ""))
        actor = await self.directory.actor(user, str(command.get("user_name") or ""))
        conv = Conversation("slack", str(command.get("channel_id", "")), str(command.get("team_id", "")))
        handle = {"k": "slash", "cmd": f"{command.get('command', self.slash_command)} {text}",
                  "response_url": command.get("response_url", "")}
        await self.deliver(ChatMessage(actor, conv, text, message_id=str(command.get("trigger_id", "")),
                                       reply_handle=json.dumps(handle)))

    async def on_mention(self, event: dict[str, Any], body: dict[str, Any], request: Any) -> None:
        if event.get("bot_id") or not event.get("user"):
            return
        text = _MENTION.sub("", event.get("text") or "").strip() or "help"
        await self._message(event, body, request, text)

    async def on_message(self, event: dict[str, Any], body: dict[str, Any], request: Any) -> None:
        if event.get("subtype") not in _MESSAGE_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return
        text = event.get("text") or ""
        command = text.lstrip().startswith(self.prefix)
        if not command and not self._files(event):
            return
        if not await self._listening_in(event):
            return
        await self._message(event, body, request, text.strip() if command else None)

    async def on_action(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        verb = action_of(str(action.get("action_id", "")))
        if verb is None:
            return
        container = body.get("container") or {}
        message = body.get("message") or {}
        msg_ts = str(container.get("message_ts") or message.get("ts") or "")
        user = body.get("user") or {}
        key = f"act:{msg_ts}:{action.get('action_ts')}:{user.get('id')}"
        if not self.seen.first_time(key):
            return
        channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
        thread = str(message.get("thread_ts") or container.get("thread_ts") or msg_ts) or None
        team = str((body.get("team") or {}).get("id") or user.get("team_id") or "")
        actor = await self.directory.actor(str(user.get("id", "")),
                                           str(user.get("username") or user.get("name") or ""))
        handle = {"k": "action", "channel": channel, "thread_ts": thread,
                  "response_url": body.get("response_url", "")}
        await self.deliver(Interaction(actor, Conversation("slack", channel, team, thread), verb,
                                       str(action.get("value", "")), msg_ts, reply_handle=json.dumps(handle)))

    # -- helpers ---------------------------------------------------------------------------
    def _files(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return dataset_files(event) if self.attachments is not None else []

    async def _message(self, event: dict[str, Any], body: dict[str, Any], request: Any,
                       text: str | None) -> None:
        """`text` is the command, or None for a message that only brings dataset files."""
        channel, ts = str(event.get("channel", "")), str(event.get("ts", ""))
        event_id = body.get("event_id")
        if not self.seen.first_time(f"evt:{event_id}" if event_id else None, f"msg:{channel}:{ts}"):
            retry = _header(request, "x-slack-retry-num")
            log.info("Slack event %s (message %s) already handled%s; not starting anything again",
                     event_id, ts, f" (retry {retry})" if retry else "", extra={"adapter": "slack"})
            return
        thread_ts = event.get("thread_ts")
        actor = await self.directory.actor(str(event["user"]))
        team = str(body.get("team_id") or event.get("team") or "")
        conv = Conversation("slack", channel, team, str(thread_ts) if thread_ts else None)
        handle = {"k": "msg", "ts": ts, "thread_ts": str(thread_ts or ts)}
        message = ChatMessage(actor, conv, text or "", message_id=ts, reply_handle=json.dumps(handle))
        files = self._files(event)
        if files and self.attachments is not None:
            await self.attachments(message, files)  # saved before the command can refer to them
        if text is not None:
            await self.deliver(message)

    async def _listening_in(self, event: dict[str, Any]) -> bool:
        if event.get("channel_type") == "im":
            return self.direct_messages
        if not self.channels:
            return True
        channel = str(event.get("channel", ""))
        if channel in self.channels:
            return True
        return (await self.channel_name(channel)) in self.channels


def _header(request: Any, name: str) -> str:
    headers = getattr(request, "headers", None) or {}
    value = headers.get(name) or ""
    return str(value[0] if isinstance(value, list | tuple) and value else value)
