"""hammer's Slack chat adapter (entry point `slack`): see docs/slack.md.

The plugin always loads, so `[chat.slack]` can be validated and documented even where
the `slack` extra is missing; only building the adapter then fails, with the command
that fixes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.chat.slack.config import SlackConfig
from gateway.contracts import Services
from gateway.hookspecs import RegisterChatAdapter, hookimpl

try:
    from adapters.chat.slack.adapter import SlackAdapter
except ImportError as _exc:  # slack-bolt / slack-sdk not installed
    if (_exc.name or "").split(".")[0] not in ("slack_bolt", "slack_sdk"):
        raise
    _MISSING = str(_exc)

    class SlackAdapter:  # type: ignore[no-redef]
        """Stand-in that explains how to get the real adapter."""

        name = "slack"
        config_model = SlackConfig

        def __init__(self, config: Mapping[str, Any], services: Services) -> None:
            raise RuntimeError(f"the Slack adapter needs slack-bolt and slack-sdk ({_MISSING}): "
                               "pip install 'hammer-gateway[slack]'")


@hookimpl
def hammer_chat_adapters(register: RegisterChatAdapter) -> None:
    """Provide the `slack` chat adapter."""
    register("slack", SlackAdapter)


__all__ = ["SlackAdapter", "SlackConfig", "hammer_chat_adapters"]
