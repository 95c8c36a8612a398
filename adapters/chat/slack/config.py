"""The `[chat.slack]` table, validated (pydantic, unknown keys refused).

Kept free of any Slack SDK import so `hammer config check` can validate a Slack section
even where the `slack` extra is not installed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config import Duration, SecretRef, Strict

#: Slack's public Web API; tests point `api_url` at tests/fakes/slack.py instead.
SLACK_API_URL = "https://slack.com/api/"


class SlackConfig(Strict):
    """Every key of `[chat.slack]`; docs/slack.md explains each one."""

    enabled: bool = True
    #: "socket": hammer dials out to Slack (no public URL needed, the default for
    #: self-hosting); "http": Slack posts to `<public_url><events_path>` (signed requests).
    mode: Literal["socket", "http"] = "socket"
    bot_token: SecretRef = Field(..., description="xoxb- Bot User OAuth Token")
    app_token: SecretRef = ""  # xapp- app-level token with connections:write (socket mode)
    signing_secret: SecretRef = ""  # HTTP mode: verifies Slack's request signatures
    api_url: str = SLACK_API_URL
    events_path: str = Field("/slack/events", pattern=r"^/[A-Za-z0-9/_-]*$")
    slash_command: str = Field("/hammer", pattern=r"^/[a-z0-9_-]{1,31}$")
    #: Channels (IDs like C0123ABCD, or names like "ml-ops") where `.verb` messages are
    #: commands; empty = every channel the app is a member of. Slash commands and
    #: mentions work everywhere the app can post.
    channels: list[str] = []
    #: `.verb` messages in a direct message with the app are commands too.
    direct_messages: bool = True
    #: user group ID (S0...) or handle (ml-admins), or a user ID (U0...) -> hammer role.
    role_map: dict[str, str] = {}
    usergroup_cache_ttl: Duration = 300
    #: chat.update is Tier 3 (~50/min per app) with ~1 message/s per channel bursts.
    min_edit_interval: Duration = 1.2
    max_rate_limit_retries: int = Field(6, ge=0, le=50)
    max_retry_after: Duration = 30
    connect_timeout: Duration = 20
    ping_interval: float = Field(10, gt=0, le=300)
    #: How long an event id is remembered so a re-delivered event launches nothing twice.
    dedupe_ttl: Duration = 3600

    @field_validator("api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        """slack_sdk joins method names onto the base URL; without the slash it drops `/api`."""
        if not value.startswith(("https://", "http://")):
            raise ValueError("an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _tokens_for_mode(self) -> SlackConfig:
        if self.mode == "socket" and not self.app_token:
            raise ValueError("mode = \"socket\" needs app_token = \"env:SLACK_APP_TOKEN\" (an xapp- "
                             "app-level token with the connections:write scope, from the app's "
                             "Basic Information page)")
        if self.mode == "http" and not self.signing_secret:
            raise ValueError("mode = \"http\" needs signing_secret = \"env:SLACK_SIGNING_SECRET\" (Basic "
                             "Information > App Credentials > Signing Secret) so forged requests are refused")
        return self
