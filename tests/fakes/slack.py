"""A local stand-in for Slack: the Web API and the Socket Mode websocket, on 127.0.0.1.

The real slack-bolt / slack_sdk clients talk to it unchanged (`AsyncWebClient(base_url=
fake.api_url)`): bearer tokens, form or JSON bodies, `{"ok": false, "error": ...}`
answers, `x-oauth-scopes` headers, HTTP 429 with `Retry-After`, the three-step
`files_upload_v2` flow, and `apps.connections.open` handing out a ws:// URL where the
fake greets with `hello`, pushes envelopes (slash_commands, events_api, interactive) and
collects the client's acks. Every API call is recorded for assertions.

Files people share (`share_file` + `file_share_event`) are served at their
`url_private[_download]` on 127.0.0.1, as Slack's file host does: only to the bot token
with `files:read`; anyone else is redirected to an HTML sign-in page. Every download
attempt is recorded in `downloads`.

It also signs HTTP-mode requests the way Slack does (`v0:timestamp:body`, HMAC-SHA256).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

DEFAULT_SCOPES = ("chat:write", "commands", "app_mentions:read", "files:write", "files:read", "channels:history",
                  "channels:read", "groups:history", "im:history", "usergroups:read", "users:read")
SCOPE_OF = {
    "chat.postMessage": "chat:write", "chat.update": "chat:write", "chat.postEphemeral": "chat:write",
    "files.getUploadURLExternal": "files:write", "files.completeUploadExternal": "files:write",
    "usergroups.list": "usergroups:read", "users.info": "users:read", "conversations.info": "channels:read",
}
CHANNEL_METHODS = {"chat.postMessage", "chat.update", "chat.postEphemeral", "files.completeUploadExternal"}


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    token: str
    status: int = 200
    error: str = ""
    at: float = field(default_factory=time.monotonic)


class FakeSlack:
    def __init__(self, *, bot_token: str = "xoxb-test-token", app_token: str = "xapp-test-token",
                 signing_secret: str = "test-signing-secret", team_id: str = "T0HAMMER",
                 bot_user_id: str = "UHAMMERBOT", scopes: tuple[str, ...] = DEFAULT_SCOPES) -> None:
        self.bot_token, self.app_token, self.signing_secret = bot_token, app_token, signing_secret
        self.team_id, self.bot_user_id, self.scopes = team_id, bot_user_id, list(scopes)
        self.channels: dict[str, dict[str, Any]] = {
            "C0GENERAL": {"id": "C0GENERAL", "name": "general", "is_member": True},
            "C0MLOPS": {"id": "C0MLOPS", "name": "ml-ops", "is_member": True},
            "C0OUTSIDE": {"id": "C0OUTSIDE", "name": "outside", "is_member": False},
        }
        self.usergroups: list[dict[str, Any]] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.calls: list[ApiCall] = []
        self.messages: dict[str, dict[str, Any]] = {}  # ts -> message (with "updates")
        self.uploads: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.envelopes_sent: list[dict[str, Any]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.connected = asyncio.Event()
        self.connections = 0  # websocket connections accepted so far
        self.response_url_posts: list[dict[str, Any]] = []
        self._limits: dict[str, list[float]] = {}  # method -> Retry-After values still to answer
        self._faults: dict[str, list[dict[str, Any]]] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self.shared: dict[str, bytes] = {}  # file id -> content served at its url_private
        self.downloads: list[dict[str, Any]] = []  # {"path", "token", "status"} per request
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> FakeSlack:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/respond/{token}", self._respond)
        app.router.add_get("/link", self._link)
        app.router.add_get("/files-pri/{key}/{rest:.+}", self._download)
        app.router.add_get("/signin", self._signin)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    # -- behaviour switches --------------------------------------------------------------
    def rate_limit(self, method: str, times: int = 1, retry_after: float = 1) -> None:
        """The next `times` calls of `method` get HTTP 429 with `Retry-After`."""
        self._limits.setdefault(method, []).extend([retry_after] * times)

    def fail(self, method: str, error: str, times: int = 1, **extra: Any) -> None:
        """The next `times` calls of `method` answer `{"ok": false, "error": error, **extra}`."""
        self._faults.setdefault(method, []).extend([{"error": error, **extra}] * times)

    # -- the Web API ---------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else str(args.pop("token", ""))
        call = ApiCall(method, args, token)
        self.calls.append(call)
        if self._limits.get(method):
            call.status, call.error = 429, "ratelimited"
            wait = self._limits[method].pop(0)
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(int(wait))})
        try:
            body = self._answer(method, args, token)
        except _Refusal as r:
            call.error = r.body["error"]
            return web.json_response({"ok": False, **r.body}, headers=self._scope_header())
        return web.json_response({"ok": True, **body}, headers=self._scope_header())

    def _scope_header(self) -> dict[str, str]:
        return {"x-oauth-scopes": ",".join(self.scopes), "x-accepted-oauth-scopes": ""}

    def _answer(self, method: str, args: dict[str, Any], token: str) -> dict[str, Any]:
        if self._faults.get(method):
            raise _Refusal(self._faults[method].pop(0))
        if method == "apps.connections.open":
            if token == self.bot_token:
                raise _Refusal({"error": "not_allowed_token_type"})
            if token != self.app_token:
                raise _Refusal({"error": "invalid_auth"})
            return {"url": self.base.replace("http://", "ws://") + f"/link?ticket={next(self._ids)}"}
        if token != self.bot_token:
            raise _Refusal({"error": "invalid_auth" if token else "not_authed"})
        needed = SCOPE_OF.get(method)
        if needed and needed not in self.scopes:
            raise _Refusal({"error": "missing_scope", "needed": needed, "provided": ",".join(self.scopes)})
        channel = str(args.get("channel") or args.get("channel_id") or "")
        if method in CHANNEL_METHODS:
            if channel not in self.channels and not channel.startswith("D"):
                raise _Refusal({"error": "channel_not_found"})
            if channel in self.channels and not self.channels[channel].get("is_member"):
                raise _Refusal({"error": "not_in_channel"})
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(
            self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            raise _Refusal({"error": "unknown_method"})
        return handler(args)

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://hammer-test.slack.com/", "team": "hammer-test", "user": "hammer",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": "BHAMMER"}

    def _new_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self._new_ts()
        msg = {"ts": ts, "channel": args["channel"], "text": args.get("text", ""),
               "blocks": _json(args.get("blocks")), "thread_ts": args.get("thread_ts"), "updates": []}
        self.messages[ts] = msg
        return {"channel": args["channel"], "ts": ts, "message": {"text": msg["text"], "ts": ts}}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages.get(str(args.get("ts")))
        if msg is None or msg["channel"] != args.get("channel"):
            raise _Refusal({"error": "message_not_found"})
        msg["text"], msg["blocks"] = args.get("text", ""), _json(args.get("blocks"))
        msg["updates"].append({"text": msg["text"], "blocks": msg["blocks"], "at": time.monotonic()})
        return {"channel": msg["channel"], "ts": msg["ts"], "text": msg["text"]}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._new_ts()}

    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids):08d}"
        self._files[file_id] = {"id": file_id, "filename": args.get("filename"),
                                "length": int(args["length"]), "data": None}
        return {"upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        f = self._files.get(request.match_info["file_id"])
        if f is None:
            return web.Response(status=404, text="unknown file")
        f["data"] = await request.read()
        return web.Response(text=f"OK - {len(f['data'])}")

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        out = []
        for item in _json(args.get("files")) or []:
            f = self._files.get(item["id"])
            if f is None or f["data"] is None:
                raise _Refusal({"error": "file_not_found"})
            upload = {**f, "title": item.get("title"), "channel": args.get("channel_id"),
                      "thread_ts": args.get("thread_ts"), "initial_comment": args.get("initial_comment")}
            self.uploads.append(upload)
            out.append({"id": f["id"], "title": item.get("title"), "name": f["filename"]})
        return {"files": out}

    def _m_usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        include = str(args.get("include_users", "")).lower() in ("1", "true")
        return {"usergroups": [{k: v for k, v in g.items() if include or k != "users"}
                               for g in self.usergroups]}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        uid = str(args.get("user"))
        if uid not in self.users:
            raise _Refusal({"error": "user_not_found"})
        return {"user": self.users[uid]}

    def _m_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channels.get(str(args.get("channel")))
        if ch is None:
            raise _Refusal({"error": "channel_not_found"})
        return {"channel": ch}

    async def _respond(self, request: web.Request) -> web.Response:
        self.response_url_posts.append(await request.json())
        return web.Response(text="ok")

    # -- shared files (Slack's file host) ---------------------------------------------------
    def share_file(self, name: str, data: bytes, *, size: int | None = None, user: str = "U0ALICE",
                   url: str | None = None) -> dict[str, Any]:
        """A file as Slack lists it in a message event; `size` may claim another size and
        `url` point the download link elsewhere."""
        file_id = f"F{next(self._ids):08d}"
        self.shared[file_id] = data
        base = f"{self.base}/files-pri/{self.team_id}-{file_id}"
        return {"id": file_id, "created": int(time.time()), "name": name, "title": name,
                "mimetype": "application/octet-stream", "filetype": name.rsplit(".", 1)[-1],
                "user": user, "size": len(data) if size is None else size, "mode": "hosted",
                "is_external": False, "url_private": url or f"{base}/{name}",
                "url_private_download": url or f"{base}/download/{name}",
                "permalink": f"https://hammer-test.slack.com/files/{user}/{file_id}/{name}"}

    async def _download(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        file_id = request.match_info["key"].rpartition("-")[2]
        record = {"path": request.path, "token": token, "status": 200}
        self.downloads.append(record)
        if token != self.bot_token or "files:read" not in self.scopes:
            record["status"] = 302  # what Slack does: off to the sign-in page, no error code
            raise web.HTTPFound(f"/signin?redir={request.path}")
        if file_id not in self.shared:
            record["status"] = 404
            return web.Response(status=404, text="file not found")
        return web.Response(body=self.shared[file_id], content_type="application/octet-stream")

    async def _signin(self, request: web.Request) -> web.Response:
        return web.Response(text="<!DOCTYPE html><title>Sign in | Slack</title>", content_type="text/html")

    # -- Socket Mode -----------------------------------------------------------------------
    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        self.connections += 1
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets),
                            "debug_info": {"host": "fake-slack"}, "connection_info": {"app_id": "AHAMMER"}})
        self.connected.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                env_id = data.get("envelope_id")
                if env_id:
                    self.acks[env_id] = data
                    waiter = self._ack_waiters.pop(env_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(data)
        finally:
            self.sockets.remove(ws)
            if not self.sockets:
                self.connected.clear()
        return ws

    async def send_envelope(self, kind: str, payload: dict[str, Any], *, envelope_id: str | None = None,
                            retry_attempt: int | None = None, retry_reason: str | None = None) -> str:
        """Push one envelope to the connected app; returns its envelope_id."""
        await asyncio.wait_for(self.connected.wait(), 5)
        env_id = envelope_id or f"env-{next(self._ids)}"
        env: dict[str, Any] = {"envelope_id": env_id, "type": kind, "payload": payload,
                               "accepts_response_payload": kind != "events_api"}
        if retry_attempt is not None:
            env["retry_attempt"], env["retry_reason"] = retry_attempt, retry_reason or "timeout"
        self._ack_waiters[env_id] = asyncio.get_running_loop().create_future()
        self.envelopes_sent.append(env)
        await self.sockets[-1].send_json(env)
        return env_id

    async def ask_to_reconnect(self, reason: str = "refresh_requested") -> None:
        """What Slack does every few hours: a `disconnect` message; the client must open
        a new connection (apps.connections.open again) and carry on."""
        await asyncio.wait_for(self.connected.wait(), 5)
        await self.sockets[-1].send_json({"type": "disconnect", "reason": reason,
                                          "debug_info": {"host": "fake-slack"}})

    async def wait_ack(self, envelope_id: str, within: float = 3.0) -> dict[str, Any]:
        """The client's ack for an envelope; Slack's own deadline is 3 seconds."""
        if envelope_id in self.acks:
            return self.acks[envelope_id]
        return await asyncio.wait_for(asyncio.shield(self._ack_waiters[envelope_id]), within)

    # -- payload builders (what Slack would send) -------------------------------------------
    def slash_command(self, text: str, *, user: str = "U0ALICE", user_name: str = "alice",
                      channel: str = "C0GENERAL", command: str = "/hammer") -> dict[str, Any]:
        n = next(self._ids)
        return {"token": "legacy", "team_id": self.team_id, "team_domain": "hammer-test",
                "channel_id": channel, "channel_name": self.channels.get(channel, {}).get("name", ""),
                "user_id": user, "user_name": user_name, "command": command, "text": text,
                "api_app_id": "AHAMMER", "response_url": f"{self.base}/respond/r{n}",
                "trigger_id": f"trig.{n}"}

    def event(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        return {"token": "legacy", "team_id": self.team_id, "api_app_id": "AHAMMER", "type": "event_callback",
                "event": {"event_ts": event.get("ts", ""), **event},
                "event_id": event_id or f"Ev{next(self._ids):08d}", "event_time": int(time.time())}

    def message_event(self, text: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL",
                      ts: str | None = None, kind: str = "message", thread_ts: str | None = None,
                      event_id: str | None = None) -> dict[str, Any]:
        ev: dict[str, Any] = {"type": kind, "user": user, "text": text, "channel": channel,
                              "ts": ts or self._new_ts(),
                              "channel_type": "im" if channel.startswith("D") else "channel"}
        if thread_ts:
            ev["thread_ts"] = thread_ts
        return self.event(ev, event_id=event_id)

    def file_share_event(self, text: str, files: list[dict[str, Any]], *, user: str = "U0ALICE",
                         channel: str = "C0GENERAL", ts: str | None = None) -> dict[str, Any]:
        ev: dict[str, Any] = {"type": "message", "subtype": "file_share", "user": user, "text": text,
                              "channel": channel, "ts": ts or self._new_ts(), "files": files, "upload": True,
                              "display_as_bot": False,
                              "channel_type": "im" if channel.startswith("D") else "channel"}
        return self.event(ev)

    def block_action(self, action: str, value: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL",
                     message_ts: str = "", thread_ts: str | None = None) -> dict[str, Any]:
        n = next(self._ids)
        message: dict[str, Any] = {"type": "message", "ts": message_ts, "text": ""}
        if thread_ts:
            message["thread_ts"] = thread_ts
        return {"type": "block_actions", "team": {"id": self.team_id, "domain": "hammer-test"},
                "user": {"id": user, "username": user.lower(), "team_id": self.team_id},
                "api_app_id": "AHAMMER", "token": "legacy", "trigger_id": f"trig.{n}",
                "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                              "is_ephemeral": False},
                "channel": {"id": channel, "name": self.channels.get(channel, {}).get("name", "")},
                "message": message, "response_url": f"{self.base}/respond/a{n}",
                "actions": [{"action_id": action, "block_id": "hammer_actions", "type": "button",
                             "value": value, "action_ts": f"{time.time():.6f}",
                             "text": {"type": "plain_text", "text": action}}]}

    # -- HTTP mode signing ---------------------------------------------------------------------
    def sign(self, body: str, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        base = f"v0:{ts}:{body}".encode()
        digest = hmac.new((secret or self.signing_secret).encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}

    @staticmethod
    def form_body(payload: dict[str, Any], *, interactive: bool = False) -> str:
        return urlencode({"payload": json.dumps(payload)} if interactive else payload)

    # -- assertions helpers --------------------------------------------------------------------
    def calls_to(self, method: str, ok_only: bool = False) -> list[ApiCall]:
        return [c for c in self.calls
                if c.method == method and (not ok_only or (c.status == 200 and not c.error))]

    async def wait_for(self, predicate: Callable[[], Any], within: float = 5.0, what: str = "") -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out after {within}s waiting for {what or predicate}")


class _Refusal(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.body = body


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
