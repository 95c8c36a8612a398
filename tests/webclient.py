"""A signed-in person in a browser, for the tests: their own cookie jar, the session's
CSRF token, and requests with the gateway's own Origin (what hammer's page sends)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from gateway.webauth import AccountError
from tests.conftest import wait_for


class Page:
    """What the browser page does, over the same WebSocket protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(msg.json())

    async def send(self, **obj: Any) -> None:
        await self.ws.send_json(obj)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    def bot_messages(self) -> list[dict[str, Any]]:
        return [f["message"] for f in self.frames if f["type"] in ("message", "edit") and f["message"]["kind"] == "bot"]


class WebUser:
    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1
        self.csrf = ""

    @classmethod
    async def sign_in(cls, hammer: Any, name: str, role: str = "member") -> WebUser:
        try:
            invite = await hammer.accounts.add(name, role)
        except AccountError:
            invite = await hammer.accounts.reset(name)
        user = cls(hammer.services.public_url, name)
        async with user.session.post(user.url + "/login", data={"token": invite}, allow_redirects=False,
                                     headers={"Origin": user.url}) as resp:
            assert resp.status == 303, await resp.text()
        async with user.session.get(user.url + "/web/session") as resp:
            assert resp.status == 200
            user.csrf = (await resp.json())["csrf"]
        return user

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Origin": self.url, "X-CSRF-Token": self.csrf, **extra}

    async def page(self) -> Page:
        page = Page(await self.session.ws_connect(self.url + "/ws", headers={"Origin": self.url}))
        await wait_for(lambda: page.of("welcome") and page.of("history"), 5)
        return page

    async def close(self) -> None:
        await self.session.close()
