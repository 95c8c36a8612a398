"""The `[chat.discord]` table, validated (pydantic, unknown keys refused).

This module imports nothing from discord.py, so `hammer config check` can validate a
Discord section on a machine where the `discord` extra is not installed.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from gateway.config import Duration, SecretRef, Strict

_CHANNEL = re.compile(r"\*|[0-9]{15,21}|[a-z0-9][a-z0-9_-]{0,99}")
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,39}")


class DiscordConfig(Strict):
    """Every key of `[chat.discord]`; docs/discord.md explains each one."""

    enabled: bool = True
    #: A secret reference to the bot token (Developer Portal → Bot → Reset Token).
    token: SecretRef
    #: Channels where prefix commands are read: ids, names (`experiments`), or "*" for all.
    channels: list[str] = Field(min_length=1)
    #: Only these servers (guild ids) are served; slash commands are registered per server
    #: (instantly visible). Empty: every server the bot is in, slash commands global.
    guilds: list[str] = []
    #: Discord role id or name -> hammer role (`admin` is hammer's admin role).
    role_map: dict[str, str] = {}
    slash_commands: bool = True
    #: Open a thread from the command message for a job's follow-ups, where allowed.
    threads: bool = True
    #: Seconds between two edits of one progress message (Discord allows 5 per 5 s per channel).
    edit_interval: Duration = 1.5
    #: How long start-up may take (login, gateway connection, server data).
    connect_timeout: Duration = 30
    #: Seconds to wait for server data after connecting (discord.py's guild_ready_timeout).
    guild_ready_timeout: Duration = 2.0
    #: Extra dataset names offered by slash-command autocomplete.
    datasets: list[str] = []

    @field_validator("token")
    @classmethod
    def _token_given(cls, value: str) -> str:
        if not value:
            raise ValueError("a secret reference to the bot token, e.g. token = \"env:DISCORD_BOT_TOKEN\"")
        return value

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: list[str]) -> list[str]:
        out = []
        for entry in value:
            name = entry.strip().lstrip("#").lower()
            if not _CHANNEL.fullmatch(name):
                raise ValueError(f"{entry!r} is not a channel id (digits), a channel name or \"*\"")
            out.append(name)
        return out

    @field_validator("guilds")
    @classmethod
    def _guild_ids(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not re.fullmatch(r"[0-9]{15,21}", entry):
                raise ValueError(f"{entry!r} is not a server (guild) id; "
                                 "right-click the server → Copy Server ID")
        return value

    @field_validator("role_map")
    @classmethod
    def _roles(cls, value: dict[str, str]) -> dict[str, str]:
        for key, role in value.items():
            if not _ROLE.fullmatch(role):
                raise ValueError(f"role_map[{key!r}] = {role!r}: a hammer role is a lowercase name "
                                 "such as admin")
        return value
