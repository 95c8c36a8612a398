"""Dataset files attached to Discord messages -> `<data_dir>/uploads/`, usable as `upload:NAME`.

A message in a channel hammer listens to may carry .jsonl / .json attachments, with or
without a command. Each one is checked and stored through `gateway.uploads` (the rules
every chat shares) and answered in the message's channel or thread: the announcement
(level "success") or why it was not kept (level "error"). `Inbound` does this before the
message's command, if any, goes on the inbox, so `.finetune demo-lora upload:faq.jsonl`
with faq.jsonl attached finds the file. Other attachments (images...) are ignored.

The declared size is checked before anything is downloaded. The download goes through
discord.py (`Attachment.read()`, its HTTP session and proxy settings) and is bounded in
time; `save_upload` checks the real size again and writes the file in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
import discord

from adapters.chat.discord.render import render
from gateway import uploads
from gateway.model import Actor, OutboundMessage

log = logging.getLogger("hammer.discord")

DATASET_SUFFIXES = (".jsonl", ".json")
DOWNLOAD_TIMEOUT_S = 120.0

#: The adapter's retry wrapper (429s, 5xx) around one discord.py request.
Retry = Callable[[Callable[[], Awaitable[discord.Message]]], Awaitable[discord.Message]]


def dataset_attachments(message: discord.Message) -> list[discord.Attachment]:
    """The attachments that look like datasets (by extension); the rest are not hammer's."""
    return [a for a in message.attachments if a.filename.lower().endswith(DATASET_SUFFIXES)]


class Attachments:
    """Saves a message's dataset attachments and answers each one in the chat."""

    def __init__(self, uploads_dir: Path, retry: Retry, *,
                 download_timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
        self.uploads_dir = uploads_dir
        self.retry = retry
        self.download_timeout = download_timeout

    async def save_all(self, message: discord.Message, files: Sequence[discord.Attachment]) -> None:
        """One after the other; every attachment gets its own answer. Never raises for
        a bad file or a failed answer: the message's command must still go through."""
        who = message.author.display_name
        folder = uploads.user_dir(self.uploads_dir, Actor("discord", str(message.author.id)))
        for attachment in files:
            try:
                name, size = await self.save(attachment, folder)
            except uploads.UploadError as exc:
                log.info("Discord: attachment %r from %s not saved: %s", attachment.filename[:100],
                         message.author.id, exc)
                answer = OutboundMessage(title="Attachment not saved", text=str(exc), level="error")
            else:
                log.info("Discord: %s uploaded %s (%d bytes)", message.author.id, name, size)
                title, text = uploads.announcement(who, name, size)
                answer = OutboundMessage(title=title, text=text, level="success")
            await self._answer(message, answer)

    async def save(self, attachment: discord.Attachment, folder: Path) -> tuple[str, int]:
        """Name, then declared size, then download and store; UploadError says what is wrong.
        A name with a folder in it (`../x.jsonl`) is refused rather than cut down to its last
        part: Discord never sends one, so it is not a file someone simply attached."""
        name = uploads.check_name(attachment.filename)
        if name != attachment.filename:
            raise uploads.UploadError(f"{attachment.filename[:100]!r}: a dataset name has no folders; name it "
                                      "with letters, digits, '.', '_' or '-', ending in .jsonl (or .json)")
        if attachment.size > uploads.MAX_UPLOAD_BYTES:
            raise uploads.UploadError(f"{name} is larger than {uploads.MAX_UPLOAD_BYTES >> 20} MiB; "
                                      "use a hub dataset id for big data")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                data = await asyncio.wait_for(attachment.read(), self.download_timeout)
            except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("Discord: downloading attachment %s (%s) failed: %r", attachment.id, name, exc)
                raise uploads.UploadError(f"{name}: hammer could not download it from Discord "
                                          f"({_reason(exc)}); attach it again.") from None
            yield data

        try:
            return await uploads.save_upload(folder, attachment.filename, chunks())
        except OSError as exc:  # writing: the gateway's disk, not the user's file
            log.error("Discord: storing upload %s in %s failed: %s", name, self.uploads_dir, exc)
            raise uploads.UploadError(f"hammer could not store {name} ({exc.strerror or exc}); "
                                      "tell whoever runs hammer.") from None

    async def _answer(self, message: discord.Message, msg: OutboundMessage) -> None:
        """A reply to the message, in its channel or thread."""
        rendered = render(msg)
        reference = message.to_reference(fail_if_not_exists=False)
        try:
            await self.retry(lambda: message.channel.send(reference=reference, **rendered.send_kwargs()))
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            log.error("Discord: answering the attachment in message %s failed: %s (%s)",
                      message.id, exc, msg.title)


def _reason(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "it took too long"
    if isinstance(exc, discord.HTTPException):
        return f"HTTP {exc.status}"
    return type(exc).__name__
