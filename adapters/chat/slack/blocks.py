"""OutboundMessage -> Slack Block Kit (and mrkdwn text where blocks cannot go).

Slack refuses a whole message when one block breaks a limit (header 150 chars, section
text 3,000, 10 fields per section, 50 blocks), so every limit is enforced here by
truncating, never by letting chat.postMessage fail with `invalid_blocks` mid-job.
Buttons carry `action_id = hammer_<action>` and `value = <job id>`: the inbound side
recognises hammer's own buttons by that prefix.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.model import OutboundMessage

ACTION_PREFIX = "hammer_"
_ACTION_RE = re.compile(r"^hammer_([a-z][a-z0-9_]*?)(?:__\d+)?$")
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_PER_SECTION = 10
MAX_BLOCKS = 50
FALLBACK_MAX = 3000
_LEVEL_EMOJI = {"success": ":white_check_mark:", "warning": ":warning:", "error": ":x:"}
_STYLES = {"primary", "danger"}
_URL = re.compile(r"https?://[^\s<>]+")


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters (links, mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress_bar(fraction: float, width: int = 20) -> str:
    f = min(1.0, max(0.0, fraction))
    full = int(f * width + 0.5)
    return "█" * full + "░" * (width - full) + f" {f * 100:.0f}%"


def action_of(action_id: str) -> str | None:
    """`hammer_cancel` -> `cancel`; None for actions that are not hammer's."""
    m = _ACTION_RE.match(action_id)
    return m.group(1) if m else None


def value_mrkdwn(value: str) -> str:
    """A field value; a bare URL (an artifact link, often a long signed one) becomes a
    short clickable link instead of a wall of query string."""
    if _URL.fullmatch(value):
        short = re.sub(r"^https?://", "", value).split("?", 1)[0]
        return f"<{escape(value).replace('|', '%7C')}|{escape(clip(short, 60)).replace('|', '/')}>"
    return escape(value)


def _title(msg: OutboundMessage) -> str:
    emoji = _LEVEL_EMOJI.get(msg.level, "")
    return f"{emoji} {msg.title}".strip() if msg.title else ""


def render_blocks(msg: OutboundMessage, context: str = "") -> list[dict[str, Any]]:
    """The message as blocks; `context` (mrkdwn, already escaped) goes on top, e.g. who
    ran the slash command, because Slack shows no trace of a slash command itself."""
    blocks: list[dict[str, Any]] = []
    if context:
        blocks.append(_context(clip(context, SECTION_MAX)))
    if msg.title:
        blocks.append({"type": "header",
                       "text": {"type": "plain_text", "text": clip(_title(msg), HEADER_MAX), "emoji": True}})
    if msg.text:
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": clip(escape(msg.text), SECTION_MAX)}})
    if msg.progress is not None:
        blocks.append(_context(f"`{progress_bar(msg.progress)}`"))
    fields = [{"type": "mrkdwn", "text": clip(f"*{escape(k)}*\n{value_mrkdwn(v)}", FIELD_MAX)}
              for k, v in msg.fields]
    for i in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": fields[i:i + FIELDS_PER_SECTION]})
    if msg.footer:
        blocks.append(_context(clip(escape(msg.footer), SECTION_MAX)))
    if msg.buttons:
        elements: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for b in msg.buttons[:25]:
            n = seen[b.action_id] = seen.get(b.action_id, 0) + 1
            button: dict[str, Any] = {
                "type": "button",
                "action_id": ACTION_PREFIX + b.action_id + (f"__{n}" if n > 1 else ""),
                "text": {"type": "plain_text", "text": clip(b.label, 75), "emoji": True},
                "value": clip(b.value, 2000),
            }
            if b.style in _STYLES:
                button["style"] = b.style
            elements.append(button)
        blocks.append({"type": "actions", "block_id": "hammer_actions", "elements": elements})
    if len(blocks) > MAX_BLOCKS:  # keep the head and the buttons, drop the middle
        blocks = blocks[: MAX_BLOCKS - 1] + blocks[-1:]
    return blocks


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def fallback_text(msg: OutboundMessage) -> str:
    """`text` of a message: shown in notifications and by clients without Block Kit."""
    return clip(escape(msg.plain_text()) or " ", FALLBACK_MAX)


def mrkdwn(msg: OutboundMessage, context: str = "", limit: int = 3900) -> str:
    """The message as one mrkdwn text: the caption of an uploaded file (files cannot
    carry blocks) and ephemeral answers."""
    lines = [context] if context else []
    if msg.title:
        lines.append(f"*{escape(_title(msg))}*")
    if msg.text:
        lines.append(escape(msg.text))
    if msg.progress is not None:
        lines.append(f"`{progress_bar(msg.progress)}`")
    lines += [f"*{escape(k)}:* {value_mrkdwn(v)}" for k, v in msg.fields]
    if msg.footer:
        lines.append(f"_{escape(msg.footer)}_")
    return clip("\n".join(lines) or " ", limit)
