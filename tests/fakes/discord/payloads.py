"""Discord's object shapes, as the fake server sends them (the fields discord.py reads),
and the HTTP helpers that speak Discord's wire format."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

API = "/api/v10"
MESSAGE_CONTENT_INTENT = 1 << 15
APP_FLAG_MESSAGE_CONTENT = 1 << 18
# view channel, send, embed links, attach files, read history, use application commands,
# create public threads, send messages in threads
TEXT_PERMS = sum(1 << b for b in (10, 11, 14, 15, 16, 31, 35, 38))
SEND_MESSAGES = 1 << 11
EPHEMERAL = 64
REPLY = 19  # message type of a reply


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    out = {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name.title(),
           "avatar": None}
    return dict(out, bot=True, global_name=None) if bot else out


def member(user_id: int, roles: tuple[int, ...] = (), name: str = "ada") -> dict[str, Any]:
    return {"user": user(user_id, name), "roles": [str(r) for r in roles], "joined_at": now(), "deaf": False,
            "mute": False, "flags": 0, "permissions": str(TEXT_PERMS)}


def text_channel(guild: int, cid: int, name: str, position: int) -> dict[str, Any]:
    return {"id": str(cid), "type": 0, "guild_id": str(guild), "name": name, "position": position,
            "permission_overwrites": [], "nsfw": False, "parent_id": None, "rate_limit_per_user": 0,
            "topic": None, "last_message_id": None}


def thread(guild: int, parent: int, tid: int, owner: int, name: str, archive_minutes: int) -> dict[str, Any]:
    """A public thread; one started from a message has the message's id."""
    return {"id": str(tid), "type": 11, "guild_id": str(guild), "parent_id": str(parent),
            "owner_id": str(owner), "name": name, "message_count": 0, "member_count": 1,
            "rate_limit_per_user": 0, "flags": 0, "last_message_id": None,
            "thread_metadata": {"archived": False, "locked": False, "archive_timestamp": now(),
                                "auto_archive_duration": archive_minutes}}


def guild(gid: int, owner: int, admin_role: int, channels: list[dict[str, Any]],
          threads: list[dict[str, Any]], bot: dict[str, Any]) -> dict[str, Any]:
    """GUILD_CREATE: @everyone may do what the bot needs; "ML Admins" is a plain role."""
    role = {"color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
    return {"id": str(gid), "name": "Seed Lab", "owner_id": str(owner), "unavailable": False,
            "member_count": 3, "large": False, "features": [], "emojis": [], "stickers": [],
            "joined_at": now(),
            "roles": [dict(role, id=str(gid), name="@everyone", permissions=str(TEXT_PERMS), position=0),
                      dict(role, id=str(admin_role), name="ML Admins", permissions="0", position=1)],
            "channels": channels, "threads": threads, "voice_states": [], "presences": [],
            "members": [dict(member(int(bot["id"])), user=bot)]}


def message(mid: int, cid: int, author: dict[str, Any], payload: dict[str, Any],
            attachments: list[dict[str, Any]], *, webhook_id: int | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "id": str(mid), "channel_id": str(cid), "author": author, "content": payload.get("content") or "",
        "timestamp": now(), "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
        "mention_roles": [], "pinned": False, "attachments": attachments,
        "embeds": payload.get("embeds") or [], "components": payload.get("components") or [],
        "flags": payload.get("flags") or 0,
        "type": REPLY if payload.get("message_reference") else 0}
    if payload.get("message_reference"):
        msg["message_reference"] = payload["message_reference"]
    if webhook_id is not None:
        msg["webhook_id"] = msg["application_id"] = str(webhook_id)
    return msg


def attachment(aid: int, name: str, size: int, base: str) -> dict[str, Any]:
    """`url` points at the fake itself (`GET /attachments/<id>/<name>`, Discord's CDN)."""
    kind = {"png": "image/png", "json": "application/json", "jsonl": "application/jsonl"}
    url = f"{base}/attachments/{aid}/{name}"
    return {"id": str(aid), "filename": name, "size": size, "url": url, "proxy_url": url,
            "content_type": kind.get(name.rpartition(".")[2].lower(), "application/octet-stream")}


def interaction(iid: int, token: str, app: int, kind: int, gid: int, channel: dict[str, Any],
                who: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(iid), "application_id": str(app), "type": kind, "token": token, "version": 1,
            "guild_id": str(gid), "channel_id": channel["id"], "channel": channel, "member": who,
            "data": data, "app_permissions": str(TEXT_PERMS), "locale": "en-US", "guild_locale": "en-US",
            "entitlements": [], "context": 0, "authorizing_integration_owners": {"0": str(gid)},
            "attachment_size_limit": 8 * 1024 * 1024}


def app_info(app: int, bot: dict[str, Any], message_content: bool) -> dict[str, Any]:
    return {"id": str(app), "name": "hammer", "icon": None, "description": "", "bot_public": True,
            "bot_require_code_grant": False, "verify_key": "00", "owner": dict(bot, bot=False),
            "flags": APP_FLAG_MESSAGE_CONTENT if message_content else 0}


def ready(bot: dict[str, Any], gid: int, app: int, resume_url: str) -> dict[str, Any]:
    return {"v": 10, "user": bot, "guilds": [{"id": str(gid), "unavailable": True}],
            "session_id": "fake-session", "resume_gateway_url": resume_url,
            "application": {"id": str(app), "flags": APP_FLAG_MESSAGE_CONTENT}}


def rate_limited(retry_after: float) -> web.Response:
    """A 429 as Discord sends it. The `Via` header matters: without it discord.py takes a
    429 for a Cloudflare ban and raises instead of waiting."""
    return json_response(
        {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}, 429,
        {"Via": "1.1 google", "Retry-After": str(max(1, round(retry_after))), "X-RateLimit-Limit": "5",
         "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": str(retry_after),
         "X-RateLimit-Scope": "user"})


def error(code: int, text: str, status: int) -> web.Response:
    return json_response({"code": code, "message": text}, status)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with `Content-Type: application/json` exactly (no charset): discord.py
    compares the header verbatim and treats anything else as text."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


async def read_body(request: web.Request) -> tuple[Any, list[tuple[str, str, int]]]:
    """A JSON body, or a multipart one (`payload_json` plus `files[n]` parts)."""
    if request.content_type.startswith("multipart/"):
        payload: Any = None
        files: list[tuple[str, str, int]] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            data = await part.read()  # type: ignore[union-attr]
            if part.name == "payload_json":
                payload = json.loads(data)
            else:
                files.append((part.name or "", part.filename or "", len(data)))  # type: ignore[union-attr]
        return payload, files
    raw = await request.read()
    return (json.loads(raw) if raw else None), []
