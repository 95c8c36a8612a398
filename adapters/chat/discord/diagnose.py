"""What can go wrong when the bot connects, said as cause + fix.

The three usual mistakes: a wrong token, the Message Content intent not switched on in
the Developer Portal, and a channel the bot cannot post in. Each becomes a
`DiscordSetupError` (at start: the gateway logs it and keeps its other adapters) or a
failing `Check` (in `hammer doctor`), with the exact place to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import discord

from gateway.contracts import Check

PORTAL = "https://discord.com/developers/applications"
#: What the bot needs in every command channel, with the names Discord's UI shows.
NEEDED = (("view_channel", "View Channel"), ("send_messages", "Send Messages"),
          ("embed_links", "Embed Links"), ("attach_files", "Attach Files"),
          ("read_message_history", "Read Message History"))
FOR_THREADS = (("create_public_threads", "Create Public Threads"),
               ("send_messages_in_threads", "Send Messages in Threads"))


class DiscordSetupError(Exception):
    """A configuration problem that keeps the Discord adapter from running."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(f"Discord: {cause} Fix: {fix}")
        self.cause, self.fix = cause, fix
        self.hint = fix  # what `hammer doctor` shows for exceptions that carry one

    def check(self, what: str) -> Check:
        return Check(False, f"{what}: {self.cause}", self.fix)


def token_unreadable(ref: str, reason: str) -> DiscordSetupError:
    return DiscordSetupError(
        f"the bot token ({ref}) cannot be read: {reason}.",
        f"Put the token where chat.discord.token points (e.g. export DISCORD_BOT_TOKEN=...); the token is "
        f"at {PORTAL} → your application → Bot → Reset Token.")


def token_rejected() -> DiscordSetupError:
    return DiscordSetupError(
        "Discord rejected the bot token (401 Unauthorized): it is wrong, revoked or reset.",
        f"Open {PORTAL} → your application → Bot → Reset Token, store the new token where "
        "chat.discord.token points, and restart hammer.")


def intents_missing() -> DiscordSetupError:
    return DiscordSetupError(
        "Discord closed the connection (close code 4014): the bot asks for the Message Content intent, "
        "which is not enabled for this application, so it could not read `.finetune` messages.",
        f"Open {PORTAL} → your application → Bot → Privileged Gateway Intents, switch on MESSAGE CONTENT "
        "INTENT, save, and restart hammer.")


def unreachable(exc: BaseException) -> DiscordSetupError:
    return DiscordSetupError(
        f"cannot reach Discord ({type(exc).__name__}: {exc}).",
        "Check that this machine can open https://discord.com and wss://gateway.discord.gg "
        "(network, firewall, HTTPS proxy), then restart hammer.")


def closed(exc: discord.ConnectionClosed) -> DiscordSetupError:
    if exc.code == 4014:
        return intents_missing()
    if exc.code == 4004:
        return token_rejected()
    reason = exc.reason or "no reason"
    return DiscordSetupError(f"Discord closed the gateway connection with code {exc.code} ({reason}).",
                             "See https://discord.com/developers/docs/topics/opcodes-and-status-codes; "
                             "restart hammer once the cause is fixed.")


@dataclass(frozen=True)
class ChannelReport:
    entry: str
    channel: discord.abc.GuildChannel | None
    missing: tuple[str, ...] = ()
    missing_threads: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.channel is not None and not self.missing

    @property
    def label(self) -> str:
        if self.channel is None:
            return f"channel {self.entry!r}"
        return f"#{self.channel.name} ({self.channel.id}) in {self.channel.guild.name}"

    def check(self) -> Check:
        if self.channel is None:
            return Check(False, f"{self.label}: the bot cannot see it "
                         "(no server the bot is in has it)",
                         "Invite the bot to that server (invite URL in docs/discord.md), or correct "
                         "chat.discord.channels (Developer Mode on → right-click the channel → "
                         "Copy Channel ID).")
        if self.missing:
            return Check(False, f"{self.label}: the bot cannot post there; missing permission(s): "
                         f"{', '.join(self.missing)}",
                         "Server Settings → Roles → the bot's role (or the channel's Permissions tab): "
                         f"allow {', '.join(self.missing)}.")
        if self.missing_threads:
            return Check(True, f"{self.label}: usable, but jobs cannot open threads (missing "
                         f"{', '.join(self.missing_threads)}); follow-ups go to the channel",
                         f"Allow {', '.join(self.missing_threads)} for the bot's role to get one "
                         "thread per job.")
        return Check(True, f"{self.label}: the bot can read and post")


def channel_reports(client: discord.Client, entries: Iterable[str],
                    guild_ids: Iterable[str] = ()) -> list[ChannelReport]:
    """Resolve configured channels (ids or names) and what the bot may do in each."""
    wanted = set(guild_ids)
    guilds = [g for g in client.guilds if not wanted or str(g.id) in wanted]
    reports: list[ChannelReport] = []
    for entry in entries:
        if entry == "*":
            continue
        found = [c for g in guilds for c in g.text_channels if str(c.id) == entry or c.name.lower() == entry]
        if not found:
            reports.append(ChannelReport(entry, None))
            continue
        for ch in found:
            me = ch.guild.me
            if me is None:
                reports.append(ChannelReport(entry, ch, tuple(label for _, label in NEEDED)))
                continue
            perms = ch.permissions_for(me)
            missing = tuple(label for attr, label in NEEDED if not getattr(perms, attr))
            missing_threads = tuple(label for attr, label in FOR_THREADS if not getattr(perms, attr))
            reports.append(ChannelReport(entry, ch, missing, missing_threads))
    return reports


def invite_permissions() -> discord.Permissions:
    """What the invite URL asks for: the channel permissions above plus threads."""
    return discord.Permissions(**{attr: True for attr, _ in NEEDED + FOR_THREADS})


def invite_url(application_id: int | None) -> str:
    app = application_id or "YOUR_APPLICATION_ID"
    return (f"https://discord.com/oauth2/authorize?client_id={app}&scope=bot%20applications.commands"
            f"&permissions={invite_permissions().value}")
