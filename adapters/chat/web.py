"""hammer's own web chat: the embedded default chat adapter.

One shared room served by the gateway's aiohttp server: `/` is a static page (no build
step), `/ws` a WebSocket that carries commands and clicks in and messages, edits and
private answers out. A job's messages are threaded under the command that started it.

Who is typing is the signed-in web account (gateway/webauth.py), never a name the page
sends: the gateway's middleware has checked the session cookie, the `Host` and the
`Origin` (and, for uploads, the CSRF token) before a request reaches this adapter. An
account's role (viewer, member, trainer, admin) is its hammer role.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp.http_exceptions
from aiohttp import BodyPartReader, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field

from adapters.chat.web_history import WebHistory
from gateway import safe_copy, uploads
from gateway.contracts import ChatAdapterBase, InboxItem, Services
from gateway.hookspecs import RegisterChatAdapter, hookimpl
from gateway.http import PAGE_CSP, actor_of, identity
from gateway.model import (
    Actor,
    ChatMessage,
    Conversation,
    Interaction,
    MessageRef,
    OutboundMessage,
    RateLimits,
)

log = logging.getLogger("hammer.chat.web")
ROOM = "main"
PNG = b"\x89PNG\r\n\x1a\n"
MAX_FRAME = 8 * 1024


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = "hammer"
    history: int = Field(500, ge=10, le=100_000)


@dataclass
class _Client:
    ws: web.WebSocketResponse
    actor: Actor
    id: str = ""

    @property
    def name(self) -> str:
        return self.actor.user_id


@dataclass
class _Record:
    id: str
    thread: str | None
    author: str
    kind: str  # "user" | "bot"
    ts: float
    msg: dict[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "thread": self.thread, "author": self.author, "kind": self.kind, "ts": self.ts,
                "msg": self.msg}


class WebChatAdapter(ChatAdapterBase):
    name = "web"
    config_model = WebConfig
    rate_limits = RateLimits(min_edit_interval_s=0.25, max_message_chars=20_000)

    def __init__(self, config: Mapping[str, Any], services: Services) -> None:
        cfg = WebConfig.model_validate(dict(config))
        self.title = cfg.title
        self.store = WebHistory(services.data_dir / "web" / "history.jsonl", cfg.history)
        highest = self.store.load()
        self.history: deque[_Record] = deque((_Record(**r) for r in self.store.records.values()),
                                             maxlen=cfg.history)
        self.clients: dict[str, _Client] = {}
        self.images: dict[str, Path] = {k: Path(v) for k, v in self.store.images.items()}
        self._ids = itertools.count(highest + 1)
        self._inbox: asyncio.Queue[InboxItem] | None = None
        services.add_route("GET", "/", self._index)
        services.add_route("GET", "/ws", self._socket)
        services.add_route("GET", "/web/static/{name}", self._static)
        services.add_route("GET", "/web/images/{image_id}", self._image)
        services.add_route("POST", "/web/upload", self._upload)
        self.uploads_dir = services.data_dir / "uploads"

    # -- ChatAdapter ------------------------------------------------------------------------
    async def start(self, inbox: asyncio.Queue[InboxItem]) -> None:
        self._inbox = inbox

    async def stop(self) -> None:
        for client in list(self.clients.values()):
            await client.ws.close()
        self.clients.clear()

    async def send(self, conversation: Conversation, msg: OutboundMessage) -> MessageRef:
        rec = self._record(conversation.thread, "hammer", "bot", msg)
        await self._save(rec)
        await self._broadcast({"type": "message", "message": rec.wire()})
        return MessageRef("web", conversation, rec.id)

    async def reply(self, message: ChatMessage, msg: OutboundMessage) -> MessageRef:
        thread = message.conversation.thread or message.message_id or None
        conv = message.conversation.in_thread(thread)
        if msg.private:  # to the asking page only, never into the room or its history
            client = self.clients.get(message.reply_handle or "")
            ident = f"e{next(self._ids)}"
            if client is not None:
                await self._send_to(client, {"type": "ephemeral", "message": {
                    "id": ident, "thread": thread, "author": "hammer", "kind": "bot", "ts": time.time(),
                    "msg": self._render(msg), "ephemeral": True}})
            return MessageRef("web", conv, ident)
        return await self.send(conv, msg)

    async def edit(self, ref: MessageRef, msg: OutboundMessage) -> None:
        for rec in self.history:
            if rec.id == ref.message_id:
                rec.msg = self._render(msg)
                await self._save(rec)
                await self._broadcast({"type": "edit", "message": rec.wire()})
                return
        # Not in memory any more (a restart): post the state as a new message instead.
        await self.send(ref.conversation, msg)

    async def respond(self, interaction: Interaction, msg: OutboundMessage) -> None:
        client = self.clients.get(interaction.reply_handle or "")
        if client is not None:
            await self._send_to(client, {"type": "ephemeral", "message": {
                "id": f"e{next(self._ids)}", "thread": interaction.conversation.thread, "author": "hammer",
                "kind": "bot", "ts": time.time(), "msg": self._render(msg), "ephemeral": True}})

    async def upload(self, conversation: Conversation, path: Path, title: str) -> MessageRef:
        return await self.send(conversation, OutboundMessage(title=title, image=path, image_title=title))

    # -- internals ----------------------------------------------------------------------------
    def _render(self, msg: OutboundMessage) -> dict[str, Any]:
        out = msg.to_dict()
        if msg.image is not None:
            image_id = f"i{next(self._ids)}"
            self.images[image_id] = msg.image
            out["image"] = f"/web/images/{image_id}"
        return out

    async def _save(self, rec: _Record) -> None:
        image = rec.msg.get("image")
        if isinstance(image, str) and image.startswith("/web/images/"):
            image_id = image.rsplit("/", 1)[1]
            if image_id not in self.store.images and image_id in self.images:
                await self.store.image(image_id, self.images[image_id])
        await self.store.put(rec.wire())

    def _record(self, thread: str | None, author: str, kind: str, msg: OutboundMessage) -> _Record:
        rec = _Record(f"m{next(self._ids)}", thread, author, kind, time.time(), self._render(msg))
        self.history.append(rec)
        return rec

    async def _send_to(self, client: _Client, payload: dict[str, Any]) -> None:
        try:
            await client.ws.send_json(payload)
        except (ConnectionError, RuntimeError):
            self.clients.pop(client.id, None)

    async def _broadcast(self, payload: dict[str, Any]) -> None:
        await asyncio.gather(*(self._send_to(c, payload) for c in list(self.clients.values())))

    async def _index(self, request: web.Request) -> web.Response:
        page = resources.files("adapters.chat").joinpath("static/index.html").read_text(encoding="utf-8")
        response = web.Response(text=page.replace("{{TITLE}}", html.escape(self.title)), content_type="text/html")
        response.headers["Content-Security-Policy"] = PAGE_CSP
        return response

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ("app.js", "style.css"):
            raise web.HTTPNotFound()
        body = resources.files("adapters.chat").joinpath(f"static/{name}").read_text(encoding="utf-8")
        return web.Response(text=body, content_type="text/javascript" if name.endswith(".js") else "text/css")

    async def _image(self, request: web.Request) -> web.FileResponse:
        path = self.images.get(request.match_info["image_id"])
        if path is None or safe_copy.read_regular(path, limit=8) != PNG:  # a regular PNG, never via a link
            raise web.HTTPNotFound(text="image no longer available")
        return web.FileResponse(path, headers={"Content-Type": "image/png"})

    async def _upload(self, request: web.Request) -> web.Response:
        """A dataset file for `upload:NAME` (multipart field `file`), the uploader's own,
        announced in the room under the uploader's account name."""
        ident = identity(request)
        if ident is None:
            raise web.HTTPUnauthorized(text="sign in first")
        actor = actor_of(ident)
        try:
            reader = await request.multipart()
            part = await reader.next()
            filename = part.filename if isinstance(part, BodyPartReader) else None
        except (ValueError, AssertionError, UnicodeDecodeError, aiohttp.http_exceptions.HttpProcessingError):
            # a malformed part header (a NUL byte in the file name, say) is the sender's mistake
            return web.json_response({"ok": False, "error": "the upload's file name or form is malformed (a NUL "
                                      "or control character?); rename the file and try again"}, status=400)
        if not isinstance(part, BodyPartReader) or part.name != "file" or not filename:
            return web.json_response({"ok": False, "error": "send the file as multipart field 'file'"}, status=400)

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await part.read_chunk(1 << 16):
                yield chunk

        try:
            name, size = await uploads.save_upload(uploads.user_dir(self.uploads_dir, actor), filename, chunks())
        except uploads.UploadError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=exc.status)
        title, text = uploads.announcement(actor.user_id, name, size)
        await self.send(Conversation("web", ROOM), OutboundMessage(title=title, text=text, level="success"))
        return web.json_response({"ok": True, "ref": f"upload:{name}", "bytes": size})

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ident = identity(request)
        if ident is None:  # the gateway's guard already refused it; never serve the room anonymously
            raise web.HTTPUnauthorized(text="sign in first")
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_FRAME)
        await ws.prepare(request)
        client = _Client(ws, actor_of(ident), id=f"c{next(self._ids)}")
        self.clients[client.id] = client
        await self._send_to(client, {"type": "welcome", "name": client.name, "role": ident.account.role})
        await self._send_to(client, {"type": "history", "title": self.title,
                                     "messages": [r.wire() for r in self.history]})
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                await self._on_frame(client, frame.data)
        finally:
            self.clients.pop(client.id, None)
        return ws

    async def _error(self, client: _Client, text: str) -> None:
        await self._send_to(client, {"type": "ephemeral", "message": {
            "id": f"e{next(self._ids)}", "thread": None, "author": "hammer", "kind": "bot", "ts": time.time(),
            "ephemeral": True, "msg": OutboundMessage(title=text, level="error").to_dict()}})

    async def _on_frame(self, client: _Client, data: str) -> None:
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict):
                raise ValueError
        except (ValueError, RecursionError):  # deeply nested JSON is refused like any other garbage
            await self._error(client, "The page sent something hammer could not read; reload it.")
            return
        kind = obj.get("type")
        if kind == "hello":  # names come from the sign-in, never from the page
            await self._send_to(client, {"type": "welcome", "name": client.name})
            return
        actor = client.actor
        if kind == "command":
            text = str(obj.get("text", ""))[:4000]
            if not text.strip():
                return
            rec = _Record(f"m{next(self._ids)}", None, client.name, "user", time.time(), {"text": text})
            self.history.append(rec)
            await self._save(rec)
            await self._broadcast({"type": "message", "message": rec.wire()})
            if self._inbox is not None:
                await self._inbox.put(ChatMessage(actor, Conversation("web", ROOM), text, message_id=rec.id,
                                                  reply_handle=client.id))
        elif kind == "click":
            if self._inbox is not None:
                await self._inbox.put(Interaction(
                    actor, Conversation("web", ROOM, thread=obj.get("thread") or None),
                    str(obj.get("action_id", ""))[:32], str(obj.get("value", ""))[:64],
                    message_id=str(obj.get("message_id", ""))[:32], reply_handle=client.id))
        else:
            await self._error(client, f"Unknown request {str(kind)[:20]!r}; reload the page.")


@hookimpl
def hammer_chat_adapters(register: RegisterChatAdapter) -> None:
    register("web", WebChatAdapter)
