"""Discord chat adapter (entry point `discord`): prefix commands, slash commands,
progress embeds edited in place, buttons, job threads, attached datasets (`upload:NAME`).
See docs/discord.md.

discord.py is an optional extra: without it the plugin still loads, `hammer config
check` still validates `[chat.discord]`, and enabling the adapter fails with the
command that installs it instead of an ImportError at plugin load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.chat.discord.config import DiscordConfig
from gateway.contracts import Services
from gateway.hookspecs import RegisterChatAdapter, hookimpl

try:
    import discord as _discord  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installed extras
    _MISSING = "the Discord adapter needs discord.py: pip install 'hammer-gateway[discord]'"

    class DiscordAdapter:  # type: ignore[no-redef]
        """Stand-in that explains what to install."""

        name = "discord"
        config_model = DiscordConfig

        def __init__(self, config: Mapping[str, Any], services: Services) -> None:
            raise RuntimeError(_MISSING)

    class DiscordSetupError(Exception):  # type: ignore[no-redef]
        """Never raised without discord.py; defined so imports keep working."""
else:
    from adapters.chat.discord.adapter import DiscordAdapter  # type: ignore[assignment]
    from adapters.chat.discord.diagnose import DiscordSetupError

__all__ = ["DiscordAdapter", "DiscordConfig", "DiscordSetupError"]


@hookimpl
def hammer_chat_adapters(register: RegisterChatAdapter) -> None:
    register("discord", DiscordAdapter)
