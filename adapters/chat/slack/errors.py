"""Slack API error codes -> what went wrong and exactly how to fix it.

Slack answers most setup mistakes with a terse code (`invalid_auth`, `missing_scope`,
`not_in_channel`); an operator reading hammer's log or `hammer doctor` should see the
cause and the fix, not the code alone. One table, used by the adapter's logs, its
exceptions and its `check()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MANIFEST = "adapters/chat/slack_manifest.yaml"
_BAD_TOKEN = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
              "no_permission", "org_login_required", "ekm_access_denied"}
_NO_CHANNEL = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


class SlackError(Exception):
    """A Slack call failed in a way hammer cannot fix by retrying; `code` is Slack's
    error code, `fix` what the operator (or user) should do next."""

    def __init__(self, message: str, code: str = "", fix: str = "") -> None:
        super().__init__(f"{message} — {fix}" if fix else message)
        self.code, self.fix, self.message = code, fix, message

    @property
    def hint(self) -> str:
        """The name the gateway's doctor and problem reports look for."""
        return self.fix


class SlackSetupError(SlackError):
    """Raised from `start()`: the adapter cannot run with this configuration."""


def explain(method: str, code: str, response: Mapping[str, Any] | None = None, *,
            token_key: str = "bot_token", channel: str = "") -> tuple[str, str]:
    """(cause, fix) for a failed Slack call."""
    response = response or {}
    where = f" {channel}" if channel else ""
    if code in _BAD_TOKEN:
        if token_key == "app_token":
            return (f"Slack refused the app-level token ({code}) in apps.connections.open",
                    "set chat.slack.app_token to a reference to an app-level token (xapp-...) with the "
                    "connections:write scope: app settings > Basic Information > App-Level Tokens")
        return (f"Slack refused the bot token ({code}) in {method}",
                "set chat.slack.bot_token to a reference (env:SLACK_BOT_TOKEN) holding the Bot User OAuth "
                "Token (xoxb-...) from app settings > OAuth & Permissions; if the app was reinstalled or "
                "the token revoked, copy the new one")
    if code == "not_allowed_token_type":
        if method == "apps.connections.open":
            return ("chat.slack.app_token is not an app-level token (not_allowed_token_type)",
                    "use an xapp-... token from Basic Information > App-Level Tokens, with connections:write")
        return (f"{method} needs a bot token, got another kind (not_allowed_token_type)",
                "set chat.slack.bot_token to the xoxb-... Bot User OAuth Token")
    if code == "missing_scope":
        needed = response.get("needed", "?")
        provided = response.get("provided", "")
        return (f"the Slack token lacks the scope {needed} needed for {method}"
                + (f" (it has: {provided})" if provided else ""),
                f"add {needed} under app settings > OAuth & Permissions > Scopes (or recreate the app from "
                f"{MANIFEST}), reinstall the app to the workspace, and update the token if it changed")
    if code == "not_in_channel":
        return (f"the app is not a member of channel{where}",
                f"invite it: type `/invite @hammer` in that channel{where}")
    if code == "channel_not_found":
        return (f"channel{where} does not exist, or is private and the app is not in it",
                "check the channel ID in chat.slack.channels (channel details > About, at the bottom) "
                "and invite the app there with `/invite @hammer`")
    if code == "is_archived":
        return (f"channel{where} is archived", "unarchive it or use another channel")
    if code in ("invalid_blocks", "invalid_blocks_format", "msg_too_long"):
        return (f"Slack refused the message layout in {method} ({code})",
                "this is a hammer bug; report it with the log line above")
    if code in ("paid_teams_only", "plan_upgrade_required"):
        return ("user groups need a paid Slack plan (usergroups.list failed)",
                "map user IDs (U0...) instead of user groups in chat.slack.role_map")
    if code == "ratelimited":
        return (f"Slack kept rate-limiting {method}", "hammer retries with Retry-After; if this persists, "
                "fewer parallel jobs per channel or a larger chat.slack.min_edit_interval help")
    return (f"Slack API {method} failed: {code}", "see https://api.slack.com/methods/" + method)


def error_for(method: str, code: str, response: Mapping[str, Any] | None = None, **kw: Any) -> SlackError:
    cause, fix = explain(method, code, response, **kw)
    return SlackError(cause, code, fix)


def is_token_problem(code: str) -> bool:
    return code in _BAD_TOKEN or code == "not_allowed_token_type"


def is_channel_problem(code: str) -> bool:
    return code in _NO_CHANNEL
