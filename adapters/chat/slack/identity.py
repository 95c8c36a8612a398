"""Who is typing: Slack user id + user-group membership -> hammer `Actor` roles.

`role_map` keys may be a user group ID (S0...), a user group handle (`ml-admins` or
`@ml-admins`) or a single user ID (U0.../W0...). Group membership comes from one
`usergroups.list(include_users=true)` call, cached for `usergroup_cache_ttl`, so a
command costs no extra API call on the hot path; when the call fails (no
`usergroups:read` scope, free plan) the reason is logged once and people simply get no
group roles — never someone else's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping

from adapters.chat.slack.api import SlackApi
from adapters.chat.slack.errors import SlackError
from gateway.model import Actor

log = logging.getLogger("hammer.slack")
_MAX_NAMES = 5000


def is_user_id(key: str) -> bool:
    return key[:1] in ("U", "W") and key[1:].isalnum() and key.upper() == key


class Directory:
    def __init__(self, api: SlackApi, role_map: Mapping[str, str], ttl: float) -> None:
        self.api = api
        self.role_map = {k.lstrip("@"): v for k, v in role_map.items()}
        self.ttl = ttl
        self._members: dict[str, set[str]] = {}  # group id and handle -> user ids
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._warned = False
        self._names: OrderedDict[str, str] = OrderedDict()
        self.problem: SlackError | None = None

    @property
    def needs_groups(self) -> bool:
        return any(not is_user_id(k) for k in self.role_map)

    async def refresh(self, force: bool = False) -> None:
        if not self.needs_groups:
            return
        async with self._lock:
            if not force and time.monotonic() - self._loaded_at < self.ttl:
                return
            self._loaded_at = time.monotonic()
            try:
                body = await self.api.call("usergroups.list", include_users=True)
            except SlackError as exc:
                self.problem = exc
                if not self._warned:
                    self._warned = True
                    log.warning("Slack role_map: cannot read user groups: %s", exc,
                                extra={"adapter": "slack"})
                return
            self.problem = None
            members: dict[str, set[str]] = {}
            for group in body.get("usergroups", []):
                users = set(group.get("users") or ())
                for key in (group.get("id"), group.get("handle")):
                    if key:
                        members[str(key)] = users
            self._members = members

    def unknown_keys(self) -> list[str]:
        """role_map keys that match no user group (for `hammer doctor`)."""
        return [k for k in self.role_map if not is_user_id(k) and k not in self._members]

    async def roles(self, user_id: str) -> tuple[str, ...]:
        await self.refresh()
        found: list[str] = []
        for key, role in self.role_map.items():
            if key == user_id or user_id in self._members.get(key, ()):
                if role not in found:
                    found.append(role)
        return tuple(found)

    async def display_name(self, user_id: str, hint: str = "") -> str:
        """Best effort: the payload's name, else users.info (cached); the id on failure."""
        if hint:
            self._remember(user_id, hint)
            return hint
        if user_id in self._names:
            return self._names[user_id]
        name = user_id
        try:
            body = await asyncio.wait_for(self.api.call("users.info", user=user_id), timeout=2.0)
            user = body.get("user") or {}
            profile = user.get("profile") or {}
            name = profile.get("display_name") or user.get("real_name") or user.get("name") or user_id
        except Exception as exc:  # a name is a nicety; the id is always right
            log.debug("users.info %s failed: %s", user_id, exc)
        self._remember(user_id, name)
        return name

    def _remember(self, user_id: str, name: str) -> None:
        self._names[user_id] = name
        self._names.move_to_end(user_id)
        while len(self._names) > _MAX_NAMES:
            self._names.popitem(last=False)

    async def actor(self, user_id: str, name_hint: str = "") -> Actor:
        roles = await self.roles(user_id)
        return Actor("slack", user_id, await self.display_name(user_id, name_hint), roles)
