"""FakeDiscord: the REST routes and the gateway websocket, plus what tests do to it
(users posting, using slash commands, clicking) and what tests ask of it (requests seen)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import discord
import yarl
from aiohttp import WSMsgType, web
from discord.gateway import DiscordWebSocket

from tests.fakes.discord import payloads as p
from tests.fakes.discord.payloads import API, EPHEMERAL, MESSAGE_CONTENT_INTENT, SEND_MESSAGES, error

PAYLOAD: web.RequestKey[Any] = web.RequestKey("payload", object)
FILES: web.RequestKey[list[tuple[str, str, int]]] = web.RequestKey("files", list)


@dataclass(frozen=True)
class FakeFile:
    """A file a user attaches to a message (`say(..., files=[...])`). `size` is what
    Discord declares (default: the real length); `served=False` makes the download 404."""

    name: str
    data: bytes
    size: int | None = None
    served: bool = True


@dataclass
class Recorded:
    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    payload: Any
    files: list[tuple[str, str, int]]  # (form field, filename, size)
    status: int = 0
    response: Any = None  # the JSON the fake answered
    t: float = field(default_factory=time.monotonic)


class FakeDiscord:
    GUILD = 910000000000000001
    EXPERIMENTS = 910000000000000010
    GENERAL = 910000000000000011
    READONLY = 910000000000000012  # the bot may not send here
    ADMIN_ROLE = 910000000000000020  # "ML Admins"
    APP = 910000000000000100  # the application id; the bot user has the same id
    USER = 910000000000000200
    OTHER = 910000000000000201

    def __init__(self, token: str = "fake-bot-token", *, message_content_enabled: bool = True) -> None:
        self.token = token
        self.message_content_enabled = message_content_enabled
        self.requests: list[Recorded] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.threads: dict[int, dict[str, Any]] = {}
        self.interactions: dict[str, dict[str, Any]] = {}  # token -> INTERACTION_CREATE payload
        self.cdn: dict[int, bytes] = {}  # attachment id -> the bytes users attached
        self.cdn_delay = 0.0  # seconds before a download answers (a slow CDN)
        self.dispatched_at: dict[int, float] = {}  # interaction id -> when it was sent
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> commands
        self.identify: dict[str, Any] | None = None
        self._limits: list[list[Any]] = []  # [method, regex, times left, retry_after]
        self._ids = itertools.count(920000000000000000)
        self._seq = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.bot_user = p.user(self.APP, "hammer", bot=True)
        names = [(self.EXPERIMENTS, "experiments"), (self.GENERAL, "general"), (self.READONLY, "readonly")]
        self.channels = {cid: p.text_channel(self.GUILD, cid, name, i) for i, (cid, name) in enumerate(names)}
        self.channels[self.READONLY]["permission_overwrites"] = [
            {"id": str(self.GUILD), "type": 0, "allow": "0", "deny": str(SEND_MESSAGES)}]

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware], client_max_size=32 * 1024 * 1024)
        r = app.router
        r.add_get("/gateway", self._gateway)
        r.add_get("/gateway/", self._gateway)
        r.add_get("/attachments/{aid}/{name}", self._download)
        r.add_get(API + "/users/@me", self._me)
        r.add_get(API + "/oauth2/applications/@me", self._app_info)
        r.add_get(API + "/channels/{cid}", self._get_channel)
        r.add_post(API + "/channels/{cid}/messages", self._create_message)
        r.add_patch(API + "/channels/{cid}/messages/{mid}", self._edit_message)
        r.add_post(API + "/channels/{cid}/messages/{mid}/threads", self._start_thread)
        r.add_post(API + "/interactions/{iid}/{token}/callback", self._callback)
        r.add_post(API + "/webhooks/{app}/{token}", self._followup)
        r.add_patch(API + "/webhooks/{app}/{token}/messages/{mid}", self._edit_followup)
        r.add_put(API + "/applications/{app}/commands", self._put_commands)
        r.add_put(API + "/applications/{app}/guilds/{gid}/commands", self._put_commands)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def install(self, monkeypatch: Any) -> None:
        """Point discord.py (REST and gateway) at this server for the test."""
        monkeypatch.setattr(discord.http.Route, "BASE", self.api_base)
        monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(self.gateway_url + "/"))

    # -- what tests ask ---------------------------------------------------------------------------
    def rate_limit(self, method: str, path_regex: str, times: int = 1, retry_after: float = 0.3) -> None:
        """Answer the next `times` matching requests with 429 and `retry_after`."""
        self._limits.append([method, re.compile(path_regex), times, retry_after])

    def find(self, method: str, path_regex: str, status: int | None = 200) -> list[Recorded]:
        """Requests seen; `status=200` means any 2xx, None any status."""
        rx = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and rx.fullmatch(r.path)
                and (status is None or r.status == status or (status == 200 and 200 <= r.status < 300))]

    async def wait_for(self, method: str, path_regex: str, count: int = 1, within: float = 10.0,
                       status: int | None = 200) -> list[Recorded]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.find(method, path_regex, status)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {count}x {method} {path_regex} within {within}s; saw "
                             f"{[(r.method, r.path, r.status) for r in self.requests]}")

    def callbacks(self, interaction: dict[str, Any]) -> list[Recorded]:
        return self.find("POST", rf"/interactions/{interaction['id']}/{interaction['token']}/callback")

    def followups(self, interaction: dict[str, Any]) -> list[Recorded]:
        return self.find("POST", rf"/webhooks/{self.APP}/{interaction['token']}")

    # -- what users do ------------------------------------------------------------------------------
    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": self._seq, "d": data})
        for ws in list(self._sockets):
            await ws.send_str(frame)

    async def say(self, content: str, *, channel: int | None = None, user: int | None = None,
                  roles: tuple[int, ...] = (), bot: bool = False,
                  files: Sequence[FakeFile] = ()) -> dict[str, Any]:
        """A user posts a message (MESSAGE_CREATE), with `files` attached (served by the
        fake at each attachment's `url`)."""
        member = p.member(user or self.USER, roles)
        author = dict(member.pop("user"), **({"bot": True} if bot else {}))
        msg = self._store(channel or self.EXPERIMENTS, {"content": content}, [], author)
        for f in files:
            aid = next(self._ids)
            size = len(f.data) if f.size is None else f.size
            msg["attachments"].append(p.attachment(aid, f.name, size, self.base_url))
            if f.served:
                self.cdn[aid] = f.data
        await self.dispatch("MESSAGE_CREATE", dict(msg, guild_id=str(self.GUILD), member=member))
        return msg

    async def interact(self, kind: int, data: dict[str, Any], *, channel: int | None = None,
                       user: int | None = None, roles: tuple[int, ...] = (),
                       message: dict[str, Any] | None = None) -> dict[str, Any]:
        """A user uses a slash command (2), clicks a button (3) or types into an option (4)."""
        iid, token = next(self._ids), f"itoken-{next(self._ids)}"
        cid = channel or self.EXPERIMENTS
        where = self.channels.get(cid) or self.threads[cid]
        payload = p.interaction(iid, token, self.APP, kind, self.GUILD, where,
                                p.member(user or self.USER, roles), data)
        if message is not None:
            payload["message"] = message
        self.interactions[token] = payload
        self.dispatched_at[iid] = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def slash(self, name: str, options: dict[str, Any], **kw: Any) -> dict[str, Any]:
        types = {bool: 5, int: 4, float: 10}
        opts = [{"name": k, "type": types.get(type(v), 3), "value": v} for k, v in options.items()]
        return await self.interact(2, {"id": "1", "name": name, "type": 1, "options": opts}, **kw)

    async def click(self, message: dict[str, Any], custom_id: str, **kw: Any) -> dict[str, Any]:
        return await self.interact(3, {"custom_id": custom_id, "component_type": 2}, message=message,
                                   channel=int(message["channel_id"]), **kw)

    # -- state ---------------------------------------------------------------------------------------
    def _store(self, cid: int, payload: dict[str, Any], files: list[tuple[str, str, int]],
               author: dict[str, Any] | None = None, *, webhook: bool = False) -> dict[str, Any]:
        mid = next(self._ids)
        msg = p.message(mid, cid, author or self.bot_user, payload, self._attachments(files),
                        webhook_id=self.APP if webhook else None)
        self.messages[mid] = msg
        return msg

    def _attachments(self, files: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
        return [p.attachment(next(self._ids), name, size, self.base_url) for _, name, size in files]

    def _update(self, mid: int, payload: dict[str, Any], files: list[tuple[str, str, int]]) -> web.Response:
        msg = self.messages.get(mid)
        if msg is None:
            return error(10008, "Unknown Message", 404)
        for key in ("content", "embeds", "components", "flags"):
            if key in payload:
                msg[key] = payload[key]
        if "attachments" in payload or files:
            msg["attachments"] = self._attachments(files)
        msg["edited_timestamp"] = p.now()
        return p.json_response(msg)

    # -- HTTP ------------------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/gateway"):
            return await handler(request)
        payload, files = await p.read_body(request)
        rec = Recorded(request.method, request.path.removeprefix(API), dict(request.query), payload, files)
        self.requests.append(rec)
        request[PAYLOAD], request[FILES] = payload or {}, files
        # the token is the credential of interaction routes; CDN URLs need none
        open_route = rec.path.startswith(("/interactions/", "/webhooks/", "/attachments/"))
        if not open_route and request.headers.get("Authorization") != f"Bot {self.token}":
            resp: web.StreamResponse = p.json_response({"message": "401: Unauthorized", "code": 0}, 401)
        elif (retry_after := self._limited(rec)) is not None:
            resp = p.rate_limited(retry_after)
        else:
            resp = await handler(request)
        rec.status = resp.status
        if (isinstance(resp, web.Response) and resp.content_type == "application/json"
                and isinstance(resp.body, bytes) and resp.body):
            rec.response = json.loads(resp.body)
        return resp

    def _limited(self, rec: Recorded) -> float | None:
        for rule in self._limits:
            if rule[0] == rec.method and rule[2] > 0 and rule[1].fullmatch(rec.path):
                rule[2] -= 1
                return float(rule[3])
        return None

    async def _download(self, request: web.Request) -> web.Response:
        """The CDN: an attachment's bytes (not JSON), or 404."""
        if self.cdn_delay:
            await asyncio.sleep(self.cdn_delay)
        try:
            data = self.cdn.get(int(request.match_info["aid"]))
        except ValueError:
            data = None
        if data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _me(self, request: web.Request) -> web.Response:
        return p.json_response(self.bot_user)

    async def _app_info(self, request: web.Request) -> web.Response:
        return p.json_response(p.app_info(self.APP, self.bot_user, self.message_content_enabled))

    async def _get_channel(self, request: web.Request) -> web.Response:
        cid = int(request.match_info["cid"])
        ch = self.channels.get(cid) or self.threads.get(cid)
        return p.json_response(ch) if ch else error(10003, "Unknown Channel", 404)

    async def _create_message(self, request: web.Request) -> web.Response:
        cid = int(request.match_info["cid"])
        if cid not in self.channels and cid not in self.threads:
            return error(10003, "Unknown Channel", 404)
        if cid == self.READONLY:
            return error(50013, "Missing Permissions", 403)
        return p.json_response(self._store(cid, request[PAYLOAD], request[FILES]))

    async def _edit_message(self, request: web.Request) -> web.Response:
        return self._update(int(request.match_info["mid"]), request[PAYLOAD], request[FILES])

    async def _start_thread(self, request: web.Request) -> web.Response:
        cid, mid = int(request.match_info["cid"]), int(request.match_info["mid"])
        if mid in self.threads:
            return error(160004, "A thread has already been created for this message", 400)
        if mid not in self.messages:
            return error(10008, "Unknown Message", 404)
        body = request[PAYLOAD]
        thread = p.thread(self.GUILD, cid, mid, self.APP, body.get("name", "thread"),
                          body.get("auto_archive_duration", 1440))
        self.threads[mid] = thread
        await self.dispatch("THREAD_CREATE", dict(thread, newly_created=True))
        return p.json_response(thread, 201)

    async def _callback(self, request: web.Request) -> web.Response:
        it = self.interactions.get(request.match_info["token"])
        if it is None or it["id"] != request.match_info["iid"]:
            return error(10062, "Unknown interaction", 404)
        kind, data = request[PAYLOAD].get("type"), request[PAYLOAD].get("data") or {}
        resource: dict[str, Any] = {"type": kind}
        if kind == 4:  # CHANNEL_MESSAGE_WITH_SOURCE
            resource["message"] = self._store(int(it["channel_id"]), data, request[FILES], webhook=True)
        return p.json_response({
            "interaction": {"id": it["id"], "type": it["type"], "response_message_loading": kind == 5,
                            "response_message_ephemeral": bool((data.get("flags") or 0) & EPHEMERAL)},
            "resource": resource})

    async def _followup(self, request: web.Request) -> web.Response:
        it = self.interactions.get(request.match_info["token"])
        if it is None:
            return error(10015, "Unknown Webhook", 404)
        msg = self._store(int(it["channel_id"]), request[PAYLOAD], request[FILES], webhook=True)
        return p.json_response(msg)

    async def _edit_followup(self, request: web.Request) -> web.Response:
        if request.match_info["token"] not in self.interactions:
            return error(10015, "Unknown Webhook", 404)
        return self._update(int(request.match_info["mid"]), request[PAYLOAD], request[FILES])

    async def _put_commands(self, request: web.Request) -> web.Response:
        key = request.match_info.get("gid", "global")
        self.commands[key] = [dict(c, id=str(next(self._ids)), application_id=str(self.APP), version="1")
                              for c in request[PAYLOAD] or []]
        return p.json_response(self.commands[key])

    # -- gateway -----------------------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """HELLO; IDENTIFY -> READY + GUILD_CREATE (or close 4004 / 4014); heartbeats ACKed."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            msg = json.loads(frame.data)
            if msg.get("op") == 1:
                await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
            elif msg.get("op") == 2:
                self.identify = d = msg["d"]
                if d.get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                elif d.get("intents", 0) & MESSAGE_CONTENT_INTENT and not self.message_content_enabled:
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                else:
                    self._sockets.add(ws)
                    ready = p.ready(self.bot_user, self.GUILD, self.APP, self.gateway_url)
                    await self.dispatch("READY", ready)
                    await self.dispatch("GUILD_CREATE", p.guild(
                        self.GUILD, self.USER, self.ADMIN_ROLE, list(self.channels.values()),
                        list(self.threads.values()), self.bot_user))
            elif msg.get("op") == 6:  # RESUME: not kept; ask for a fresh IDENTIFY
                await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
        self._sockets.discard(ws)
        return ws
