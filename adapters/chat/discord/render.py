"""OutboundMessage -> a Discord embed, button components and attachments.

Everything hammer says on Discord is one embed: the title, the text, the fields, a
progress bar and a colour for the level, with the loss curve as an attached image shown
inside the embed (`attachment://loss_curve.png`). Buttons carry their whole meaning in
the custom id (`hammer:<action>:<value>`), so a click is understood without any state
kept in memory: the buttons keep working after a gateway restart (what discord.py calls
a persistent view, without the view store).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord

from gateway import safe_copy
from gateway.model import Button, OutboundMessage

log = logging.getLogger("hammer.discord")

CUSTOM_ID_PREFIX = "hammer"
ACTIONS = frozenset({"cancel", "approve", "deny", "confirm"})
COLOURS = {"info": 0x5865F2, "success": 0x57F287, "warning": 0xFEE75C, "error": 0xED4245}
_STYLES = {"primary": discord.ButtonStyle.primary, "danger": discord.ButtonStyle.danger,
           "default": discord.ButtonStyle.secondary, "success": discord.ButtonStyle.success}
# Discord's embed limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
TITLE_MAX, DESCRIPTION_MAX, FOOTER_MAX = 256, 4096, 2048
FIELDS_MAX, FIELD_NAME_MAX, FIELD_VALUE_MAX = 25, 256, 1024
EMBED_TOTAL_MAX = 6000
_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress_bar(fraction: float, width: int = 20) -> str:
    """`██████░░░░░░░░░░░░░░ 30%`: readable on every client, no custom emoji needed."""
    f = min(1.0, max(0.0, fraction))
    full = int(f * width + 0.5)
    return f"`{'█' * full}{'░' * (width - full)}` {int(f * 100 + 0.5)}%"


def custom_id(button: Button) -> str:
    return clip(f"{CUSTOM_ID_PREFIX}:{button.action_id}:{button.value}", 100)


def parse_custom_id(value: str) -> tuple[str, str] | None:
    """`hammer:cancel:3f9c2a1b` -> ("cancel", "3f9c2a1b"); None for anything else."""
    prefix, _, rest = value.partition(":")
    action, _, arg = rest.partition(":")
    if prefix != CUSTOM_ID_PREFIX or action not in ACTIONS:
        return None
    return action, arg


def attachment_name(path: Path) -> str:
    name = _FILENAME.sub("_", path.name) or "image.png"
    return name if "." in name else name + ".png"


class StaticView(discord.ui.View):
    """Buttons to render, never to dispatch: clicks arrive as raw interactions and are
    routed by custom id, so discord.py need not keep one view per message in memory."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    def is_dispatchable(self) -> bool:
        return False


@dataclass
class Rendered:
    """The keyword arguments for discord.py's send/edit calls."""

    embed: discord.Embed
    view: discord.ui.View | None
    image: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def files(self) -> list[discord.File]:
        """Fresh file objects every call: a retried request must re-read the file."""
        if self.image is None:
            return []
        return [discord.File(self.image, filename=attachment_name(self.image))]

    def send_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"embed": self.embed, **self.extra}
        if self.view is not None:
            kwargs["view"] = self.view
        files = self.files()
        if files:
            kwargs["files"] = files
        return kwargs

    def edit_kwargs(self) -> dict[str, Any]:
        """An edit replaces the embed and the buttons (none left: the row disappears);
        attachments are replaced only when the new state carries an image."""
        kwargs: dict[str, Any] = {"embed": self.embed, "view": self.view}
        files = self.files()
        if files:
            kwargs["attachments"] = files
        return kwargs


def render(msg: OutboundMessage) -> Rendered:
    """Build the embed; text beyond Discord's limits is cut with an ellipsis."""
    parts = []
    if msg.progress is not None:
        parts.append(progress_bar(msg.progress))
    if msg.text:
        parts.append(msg.text)
    description = clip("\n".join(parts), DESCRIPTION_MAX)
    embed = discord.Embed(title=clip(msg.title, TITLE_MAX) or None, description=description or None,
                          colour=COLOURS.get(msg.level, COLOURS["info"]))
    budget = EMBED_TOTAL_MAX - len(msg.title[:TITLE_MAX]) - len(description) - len(msg.footer[:FOOTER_MAX])
    for name, value in msg.fields[:FIELDS_MAX]:
        n, v = clip(name or "\u200b", FIELD_NAME_MAX), clip(value or "–", FIELD_VALUE_MAX)
        if len(n) + len(v) > budget:
            break
        budget -= len(n) + len(v)
        embed.add_field(name=n, value=v, inline=len(v) <= 40)
    if msg.footer:
        embed.set_footer(text=clip(msg.footer, FOOTER_MAX))
    image = None
    if msg.image is not None:
        if safe_copy.is_regular_file(Path(msg.image)):  # never a link (a job's loss curve, in the end)
            image = Path(msg.image)
            embed.set_image(url=f"attachment://{attachment_name(image)}")
        else:
            log.warning("image %s does not exist; sending the message without it", msg.image)
    view = None
    if msg.buttons:
        view = StaticView()
        for b in msg.buttons[:25]:
            view.add_item(discord.ui.Button(label=clip(b.label, 80), custom_id=custom_id(b),
                                            style=_STYLES.get(b.style, discord.ButtonStyle.secondary)))
    return Rendered(embed, view, image)
