"""`hammer doctor` for Slack: is every token, scope, channel and user group usable?

Each finding is a `Check` whose `fix` says exactly what to change (which setting, which
page of the Slack app's settings, which command to type in which channel), so an
operator never has to decode `invalid_auth` or `missing_scope` alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.chat.slack.api import SlackApi
from adapters.chat.slack.config import SlackConfig
from adapters.chat.slack.errors import MANIFEST, SlackError, SlackSetupError, explain
from adapters.chat.slack.identity import Directory, is_user_id
from gateway.contracts import Check, Services


class SlackAdapter(Protocol):
    """What the checks read of the adapter (structural: this module never imports it)."""

    cfg: SlackConfig
    services: Services
    _session: aiohttp.ClientSession | None

    def _secret(self, key: str) -> str: ...


BASE_SCOPES = ("chat:write", "commands", "app_mentions:read", "files:write", "files:read")
MESSAGE_SCOPES = ("channels:history",)
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")


def required_scopes(adapter: SlackAdapter) -> list[str]:
    scopes = list(BASE_SCOPES) + list(MESSAGE_SCOPES)
    if any(not _CHANNEL_ID.fullmatch(c.lstrip("#")) for c in adapter.cfg.channels):
        scopes.append("channels:read")
    if any(not is_user_id(k.lstrip("@")) for k in adapter.cfg.role_map):
        scopes.append("usergroups:read")
    return scopes


async def channel_checks(api: SlackApi, channels: Iterable[str]) -> list[Check]:
    """Configured channels given by ID: does each exist, and is the app a member?"""
    out: list[Check] = []
    for channel in channels:
        cid = channel.lstrip("#")
        if not _CHANNEL_ID.fullmatch(cid):
            continue  # a name: matched against events as they arrive
        try:
            info = (await api.call("conversations.info", channel=cid)).get("channel") or {}
        except SlackError as exc:
            if exc.code == "missing_scope":
                out.append(Check(False, f"Slack channel {cid}: {exc.message}", exc.fix))
            else:
                cause, fix = explain("conversations.info", exc.code, channel=cid)
                out.append(Check(False, f"Slack channel {cid}: {cause}", fix))
            continue
        name = info.get("name", cid)
        if info.get("is_archived"):
            out.append(Check(False, f"Slack channel #{name} ({cid}) is archived", "unarchive it or remove it "
                             "from chat.slack.channels"))
        elif info.get("is_member") is False:
            cause, fix = explain("chat.postMessage", "not_in_channel", channel=f"#{name} ({cid})")
            out.append(Check(False, f"Slack: {cause}", fix))
        else:
            out.append(Check(True, f"Slack channel #{name} ({cid}): the app is a member"))
    return out


async def run(adapter: SlackAdapter) -> list[Check]:
    checks: list[Check] = []
    try:
        bot_token = adapter._secret("bot_token")
    except SlackSetupError as exc:
        return [Check(False, exc.message, exc.fix)]
    own_session = adapter._session is None or adapter._session.closed
    session = aiohttp.ClientSession() if own_session else adapter._session
    try:
        client = AsyncWebClient(token=bot_token, base_url=adapter.cfg.api_url, session=session, timeout=15)
        api = SlackApi(client, max_retries=2, max_retry_after=5)
        try:
            resp = await client.auth_test()
        except SlackApiError as exc:
            cause, fix = explain("auth.test", str(exc.response.get("error", "")), exc.response.data
                                 if isinstance(exc.response.data, dict) else {})
            return [Check(False, cause, fix)]
        except (aiohttp.ClientError, TimeoutError) as exc:
            return [Check(False, f"cannot reach the Slack API at {adapter.cfg.api_url} ({exc!r})",
                          "check the network, proxy and chat.slack.api_url")]
        checks.append(Check(True, f"Slack bot token valid: workspace {resp.get('team')}, "
                                  f"bot @{resp.get('user')}"))
        granted = {s.strip() for s in str(_header(resp.headers, "x-oauth-scopes")).split(",") if s.strip()}
        if granted:
            missing = [s for s in required_scopes(adapter) if s not in granted]
            if missing:
                checks.append(Check(False, f"Slack bot token lacks scopes: {', '.join(missing)}",
                                    "add them under app settings > OAuth & Permissions > Bot Token Scopes "
                                    f"(or recreate the app from {MANIFEST}) and reinstall the app"))
            else:
                checks.append(Check(True, "Slack bot token has every scope hammer uses"))
        checks += await _mode_checks(adapter, api)
        checks += await channel_checks(api, adapter.cfg.channels)
        if adapter.cfg.role_map:
            directory = Directory(api, adapter.cfg.role_map, 0)
            await directory.refresh(force=True)
            if directory.problem is not None:
                problem = directory.problem
                checks.append(Check(False, f"Slack role_map: {problem.message}", problem.fix))
            elif unknown := directory.unknown_keys():
                checks.append(Check(False, f"Slack role_map: no user group {', '.join(unknown)}",
                                    "use a user group's ID (S0...) or handle, as in People > User groups"))
            else:
                checks.append(Check(True, f"Slack role_map: {len(adapter.cfg.role_map)} entries resolve"))
    finally:
        if own_session and session is not None:
            await session.close()
    return checks


async def _mode_checks(adapter: SlackAdapter, api: SlackApi) -> list[Check]:
    if adapter.cfg.mode == "socket":
        try:
            app_token = adapter._secret("app_token")
            await api.call("apps.connections.open", app_token=app_token, token_key="app_token")
        except SlackError as exc:
            return [Check(False, f"Slack Socket Mode: {exc.message}", exc.fix)]
        return [Check(True, "Slack Socket Mode: the app-level token opens a connection")]
    try:
        adapter._secret("signing_secret")
    except SlackSetupError as exc:
        return [Check(False, exc.message, exc.fix)]
    url = f"{adapter.services.public_url.rstrip('/')}{adapter.cfg.events_path}"
    if re.match(r"https?://(127\.|localhost|\[::1\])", url):
        return [Check(False, f"Slack HTTP mode: the events URL {url} is not reachable from Slack",
                      "set gateway.public_url to hammer's public https address, or use mode = \"socket\"")]
    return [Check(True, f"Slack HTTP mode: set {url} as the Request URL for Event Subscriptions, "
                        "Interactivity and the slash command")]


def _header(headers: object, name: str) -> str:
    for key, value in dict(headers or {}).items():  # type: ignore[call-overload]
        if str(key).lower() == name:
            return str(value[0] if isinstance(value, list | tuple) else value)
    return ""
