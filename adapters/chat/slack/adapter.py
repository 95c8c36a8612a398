"""The Slack chat adapter: slack-bolt's AsyncApp over Socket Mode or the HTTP Events API.

Socket Mode (the default) dials out to Slack, so a self-hosted hammer needs no public
URL. HTTP mode mounts `POST <events_path>` on hammer's own aiohttp server and lets bolt
check Slack's signature (HMAC-SHA256 over `v0:timestamp:body`, 5-minute window; a bad
or stale request gets 401).

Where answers go: a slash command leaves no message behind, so `reply()` posts a new
message in the channel (naming who ran what) and that message's ts becomes the job's
thread; a `.verb` message or a mention is answered in a thread under the message. The
first reply is the progress message, later replaced with `chat.update`; the final report
and the loss curve go into the same thread (`files_upload_v2`).

Datasets attached to a message (`.jsonl` / `.json`) are downloaded from Slack with the
bot token (adapters/chat/slack/files.py), saved under `<data_dir>/uploads/` and
confirmed in the message's thread before the message's command reaches the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.chat.slack import doctor
from adapters.chat.slack.api import SlackApi
from adapters.chat.slack.blocks import SECTION_MAX, escape, fallback_text, mrkdwn, render_blocks
from adapters.chat.slack.config import SlackConfig
from adapters.chat.slack.errors import SlackError, SlackSetupError, is_channel_problem
from adapters.chat.slack.files import SlackFiles
from adapters.chat.slack.identity import Directory
from adapters.chat.slack.inbound import Inbound, SeenCache
from gateway import safe_copy
from gateway.contracts import ChatAdapterBase, Check, InboxItem, Services
from gateway.model import (
    ChatMessage,
    Conversation,
    Interaction,
    MessageRef,
    OutboundMessage,
    RateLimits,
)
from gateway.uploads import UploadError, announcement, user_dir

log = logging.getLogger("hammer.slack")
PLATFORM = "slack"


class SlackAdapter(ChatAdapterBase):
    """`SlackAdapter(config, services)`: `config` is the `[chat.slack]` table."""

    name = PLATFORM
    config_model = SlackConfig

    def __init__(self, config: Mapping[str, Any], services: Services) -> None:
        self.cfg = SlackConfig.model_validate(dict(config))
        self.services = services
        self.rate_limits = RateLimits(min_edit_interval_s=self.cfg.min_edit_interval,
                                      max_message_chars=SECTION_MAX)
        self.prefix: str = services.commands.prefix
        self.seen = SeenCache(self.cfg.dedupe_ttl)
        self.api: SlackApi | None = None
        self.directory: Directory | None = None
        self.app: AsyncApp | None = None
        self.handler: AsyncSocketModeHandler | None = None
        self.team_id = self.bot_user_id = ""
        self._bot_token = self._bot_id = ""
        self._session: aiohttp.ClientSession | None = None
        self._inbox: asyncio.Queue[InboxItem] | None = None
        self._edit_locks: dict[str, asyncio.Lock] = {}
        self._edit_latest: dict[str, int] = {}
        self._channel_names: dict[str, str] = {}
        if self.cfg.mode == "http":
            # Slack signs these requests (checked by bolt); the web token must not block them.
            services.add_route("POST", self.cfg.events_path, self._on_http, signed=True)

    # -- lifecycle -----------------------------------------------------------------------
    def _secret(self, key: str) -> str:
        ref = getattr(self.cfg, key)
        try:
            return self.services.secret(ref)
        except (ValueError, OSError) as exc:
            raise SlackSetupError(f"chat.slack.{key}: {exc}", "secret",
                                  f"make {ref} resolvable (export the variable or create the file)") from None

    def _client(self, token: str) -> AsyncWebClient:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return AsyncWebClient(token=token, base_url=self.cfg.api_url, session=self._session, timeout=30,
                              logger=logging.getLogger("hammer.slack.sdk"))

    async def start(self, inbox: asyncio.Queue[InboxItem]) -> None:
        self._inbox = inbox
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self._bot_token = self._secret("bot_token")
        client = self._client(self._bot_token)
        self.api = SlackApi(client, max_retries=self.cfg.max_rate_limit_retries,
                            max_retry_after=self.cfg.max_retry_after)
        auth = await self._setup_call("auth.test")
        self.team_id, self.bot_user_id = str(auth.get("team_id", "")), str(auth.get("user_id", ""))
        self._bot_id = str(auth.get("bot_id", ""))
        self.directory = Directory(self.api, self.cfg.role_map, self.cfg.usergroup_cache_ttl)
        await self.directory.refresh()
        http = self.cfg.mode == "http"
        self.app = self._build_app(http)
        if not http:
            app_token = self._secret("app_token")
            opened = await self._setup_call("apps.connections.open", app_token=app_token,
                                            token_key="app_token")
            self.handler = AsyncSocketModeHandler(self.app, app_token, web_client=client,
                                                  logger=logging.getLogger("hammer.slack.socket"),
                                                  ping_interval=self.cfg.ping_interval)
            self.handler.client.wss_uri = str(opened["url"])  # use the URL we just opened
            try:
                await asyncio.wait_for(self.handler.connect_async(), self.cfg.connect_timeout)
            except TimeoutError:
                raise SlackSetupError(f"could not open Slack's Socket Mode websocket within "
                                      f"{self.cfg.connect_timeout:.0f}s", "connect_timeout",
                                      "check that this host can reach wss-primary.slack.com "
                                      "(proxy, firewall)") from None
        for problem in await doctor.channel_checks(self.api, self.cfg.channels):
            if not problem.ok:
                log.warning("%s; fix: %s", problem.what, problem.fix, extra={"adapter": PLATFORM})
        log.info("Slack adapter connected to workspace %s as %s (%s mode)", auth.get("team", self.team_id),
                 auth.get("user", self.bot_user_id), self.cfg.mode, extra={"adapter": PLATFORM})

    def _build_app(self, http: bool) -> AsyncApp:
        async def authorize(enterprise_id: str | None, team_id: str | None,
                            user_id: str | None) -> AuthorizeResult:
            """Answered from the auth.test done at start: no API call stands between a
            request and its 3-second ack."""
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id or self.team_id,
                                   bot_user_id=self.bot_user_id, bot_id=self._bot_id,
                                   bot_token=self._bot_token, user_id=user_id)

        # bolt gets a token-less client (the token comes from `authorize`); hammer's own
        # calls go through `self.api`, which adds the rate-limit handling.
        bolt_client = AsyncWebClient(base_url=self.cfg.api_url, session=self._session, timeout=30,
                                     logger=logging.getLogger("hammer.slack.sdk"))
        app = AsyncApp(client=bolt_client, authorize=authorize, process_before_response=False,
                       signing_secret=self._secret("signing_secret") if http else "",
                       request_verification_enabled=http, name="hammer",
                       logger=logging.getLogger("hammer.slack.bolt"))
        assert self.directory is not None
        Inbound(directory=self.directory, deliver=self._deliver, seen=self.seen, prefix=self.prefix,
                slash_command=self.cfg.slash_command, channels=self.cfg.channels,
                direct_messages=self.cfg.direct_messages, channel_name=self._channel_name,
                attachments=self._save_attachments).register(app)
        return app

    async def _setup_call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        assert self.api is not None
        try:
            return await self.api.call(method, **kwargs)
        except SlackError as exc:
            log.error("Slack adapter cannot start: %s; fix: %s", exc.message, exc.fix,
                      extra={"adapter": PLATFORM})
            raise SlackSetupError(exc.message, exc.code, exc.fix) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SlackSetupError(f"cannot reach the Slack API at {self.cfg.api_url} ({exc!r})",
                                  "unreachable",
                                  "check the network, proxy settings and chat.slack.api_url") from None

    async def stop(self) -> None:
        if self.handler is not None:
            handler, self.handler = self.handler, None
            try:
                await asyncio.wait_for(handler.close_async(), 5)
            except Exception as exc:
                log.debug("closing Slack socket mode: %s", exc)
        self.app = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, item: InboxItem) -> None:
        if self._inbox is not None:
            await self._inbox.put(item)

    async def _on_http(self, request: web.Request) -> web.StreamResponse:
        if self.app is None:
            return web.json_response({"error": "hammer's Slack adapter is not running"}, status=503)
        bolt_resp = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_resp)

    async def _channel_name(self, channel: str) -> str:
        if channel not in self._channel_names and self.api is not None:
            try:
                info = await self.api.call("conversations.info", channel=channel)
                self._channel_names[channel] = str((info.get("channel") or {}).get("name", ""))
            except SlackError as exc:
                log.warning("Slack: cannot read the name of channel %s (%s); list channels by ID in "
                            "chat.slack.channels", channel, exc, extra={"adapter": PLATFORM})
                self._channel_names[channel] = ""
        return self._channel_names.get(channel, "")

    async def _save_attachments(self, message: ChatMessage, files: list[dict[str, Any]]) -> None:
        """Save each dataset file of `message` and say so (or why not) in its thread. Never
        raises: whatever happens here, the message's command still goes to the gateway."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        saver = SlackFiles(api_url=self.cfg.api_url, token=self._bot_token, session=self._session,
                           uploads_dir=user_dir(self.services.data_dir / "uploads", message.actor))
        who = message.actor.display_name or message.actor.user_id
        for file in files:
            filename = str(file.get("name") or "")
            try:
                name, size = await saver.save(file)
            except UploadError as exc:
                out = OutboundMessage(title="Dataset not saved", text=str(exc), level="error")
            except Exception:
                log.exception("Slack: saving the attachment %r failed", filename[:100], extra={"adapter": PLATFORM})
                out = OutboundMessage(title="Dataset not saved", level="error",
                                      text=f"hammer could not save {filename[:100]!r}; the log says why")
            else:
                log.info("Slack: %s uploaded %s (%d bytes)", message.actor.key, name, size,
                         extra={"adapter": PLATFORM})
                title, text = announcement(who, name, size)
                out = OutboundMessage(title=title, text=text, level="success")
            try:
                await self.reply(message, out)
            except Exception as exc:
                log.warning("Slack: could not answer about the attachment %r: %s", filename[:100], exc,
                            extra={"adapter": PLATFORM})

    # -- outbound ------------------------------------------------------------------------
    def _api(self) -> SlackApi:
        if self.api is None:
            raise SlackError("the Slack adapter is not started", "not_started",
                             "start hammer's Slack adapter first")
        return self.api

    async def _post(self, channel: str, msg: OutboundMessage, thread: str | None, context: str = "") -> str:
        kwargs: dict[str, Any] = {"channel": channel, "text": fallback_text(msg),
                                  "blocks": render_blocks(msg, context), "unfurl_links": False}
        if thread:
            kwargs["thread_ts"] = thread
        body = await self._api().call("chat.postMessage", **kwargs)
        return str(body.get("ts", ""))

    async def reply(self, message: ChatMessage, msg: OutboundMessage) -> MessageRef:
        handle = _handle(message.reply_handle)
        conv = message.conversation
        if handle.get("k") == "slash":
            context = f"<@{message.actor.user_id}> ran `{escape(str(handle.get('cmd', '')))}`"
            try:
                ts = await self._post(conv.channel, msg, None, context)
            except SlackError as exc:
                if is_channel_problem(exc.code) and handle.get("response_url"):
                    await self._via_response_url(str(handle["response_url"]), msg, exc)
                raise
            ref = MessageRef(PLATFORM, conv.in_thread(ts), ts, {"context": context})
        else:
            thread = str(handle.get("thread_ts") or conv.thread or message.message_id) or None
            ts = await self._post(conv.channel, msg, thread)
            ref = MessageRef(PLATFORM, conv.in_thread(thread), ts)
        if msg.image is not None:
            await self.upload(ref.conversation, msg.image, msg.image_title or msg.image.name)
        return ref

    async def send(self, conversation: Conversation, msg: OutboundMessage) -> MessageRef:
        if msg.image is not None:
            try:
                data = await asyncio.to_thread(safe_copy.read_regular, Path(msg.image))
                if data is None:
                    raise OSError(f"{msg.image} is not a regular file")
                file_id = await self._upload(conversation, data, Path(msg.image).name,
                                             msg.image_title or Path(msg.image).name, mrkdwn(msg))
                return MessageRef(PLATFORM, conversation, file_id, {"file_id": file_id})
            except Exception as exc:  # the words matter more than the picture: post them anyway
                log.warning("Slack: uploading %s failed (%s); posting the report without it", msg.image, exc,
                            extra={"adapter": PLATFORM})
        ts = await self._post(conversation.channel, msg, conversation.thread)
        return MessageRef(PLATFORM, conversation, ts)

    async def edit(self, ref: MessageRef, msg: OutboundMessage) -> None:
        """Latest state wins: an edit waiting behind a slower one (a 429 pause) is skipped
        when a newer edit of the same message arrived meanwhile; the newest is always sent."""
        if ref.extra.get("file_id"):
            log.debug("Slack: file messages cannot be edited (%s)", ref.message_id)
            return
        key = f"{ref.conversation.channel}:{ref.message_id}"
        version = self._edit_latest[key] = self._edit_latest.get(key, 0) + 1
        lock = self._edit_locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                if self._edit_latest.get(key) != version:
                    return
                await self._api().call("chat.update", channel=ref.conversation.channel, ts=ref.message_id,
                                       text=fallback_text(msg),
                                       blocks=render_blocks(msg, str(ref.extra.get("context", ""))))
        finally:
            if self._edit_latest.get(key) == version:  # nobody newer is waiting: forget the slot
                self._edit_latest.pop(key, None)
                self._edit_locks.pop(key, None)

    async def respond(self, interaction: Interaction, msg: OutboundMessage) -> None:
        handle = _handle(interaction.reply_handle)
        channel = str(handle.get("channel") or interaction.conversation.channel)
        kwargs: dict[str, Any] = {"channel": channel, "user": interaction.actor.user_id,
                                  "text": fallback_text(msg), "blocks": render_blocks(msg)}
        thread = handle.get("thread_ts") or interaction.conversation.thread
        if thread:
            kwargs["thread_ts"] = str(thread)
        try:
            await self._api().call("chat.postEphemeral", **kwargs)
        except SlackError as exc:
            if not handle.get("response_url"):
                raise
            await self._via_response_url(str(handle["response_url"]), msg, exc)

    async def upload(self, conversation: Conversation, path: Path, title: str) -> MessageRef:
        data = await asyncio.to_thread(safe_copy.read_regular, Path(path))
        if data is None:
            raise SlackError(f"{path} is not a regular file; hammer never uploads through a link", "not_a_file",
                             "this is a bug in hammer: tell an admin")
        file_id = await self._upload(conversation, data, Path(path).name, title, None)
        return MessageRef(PLATFORM, conversation, file_id, {"file_id": file_id})

    async def _upload(self, conversation: Conversation, data: bytes, filename: str, title: str,
                      comment: str | None) -> str:
        kwargs: dict[str, Any] = {"channel": conversation.channel, "content": data, "filename": filename,
                                  "title": title}
        if conversation.thread:
            kwargs["thread_ts"] = conversation.thread
        if comment:
            kwargs["initial_comment"] = comment
        body = await self._api().call("files.upload_v2", **kwargs)
        return str((body.get("file") or {}).get("id") or "")

    async def _via_response_url(self, url: str, msg: OutboundMessage, exc: SlackError) -> None:
        """Where the app cannot post (not in the channel), the slash command's response_url
        still reaches the user privately: show the answer and how to fix the channel."""
        note = f"\n\n:warning: {escape(exc.message)}. {escape(exc.fix)}"
        try:
            client = AsyncWebhookClient(url, session=self._session, timeout=10)
            await client.send(text=mrkdwn(msg) + note, response_type="ephemeral")
        except Exception as err:
            log.warning("Slack response_url fallback failed: %s", err, extra={"adapter": PLATFORM})

    # -- doctor --------------------------------------------------------------------------
    async def check(self) -> list[Check]:
        return await doctor.run(self)


def _handle(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
