"""Datasets attached to a Slack message -> `<data_dir>/uploads/NAME`, usable as `upload:NAME`.

Slack puts every file shared in a message into the event (`files`, subtype
`file_share`), each with a private download link (`url_private_download`, else
`url_private`). The link only answers with the file when the request carries the bot
token as `Authorization: Bearer xoxb-...` and the app has the `files:read` scope; without
them Slack sends its sign-in page (HTML) instead, which is reported as such here.

The bot token must never reach anyone but Slack, so a link is followed only when it
points at Slack's own file host: https on a host ending in `.slack.com`, or the scheme,
host and port of `chat.slack.api_url` (the local stand-in in tests). Redirects are
followed by hand (at most three), each checked the same way. Anything else is refused
with a logged warning and never requested.

Which files count: a name ending in `.jsonl` / `.json` (any case) is a dataset and gets
an answer (saved, or why not); images, PDFs and the rest are left alone. The rules for
names, sizes and the atomic write are `gateway.uploads`' (the same as the web chat's).
A declared size over the limit is refused before anything is downloaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from gateway import uploads
from gateway.uploads import MAX_UPLOAD_BYTES, UploadError

log = logging.getLogger("hammer.slack")

#: Longest one attachment may take from the first byte asked to the last one written.
DOWNLOAD_TIMEOUT_S = 300.0
#: Per-request limits inside that: connecting, and silence between two reads.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=30)
MAX_FILES = 10  # Slack allows 10 files per message
MAX_REDIRECTS = 3
CHUNK = 1 << 16
_REDIRECTS = {301, 302, 303, 307, 308}
_DATASET_SUFFIXES = (".jsonl", ".json")


class DownloadRefused(UploadError):
    """The link does not point at Slack's file host; nothing was requested."""


def dataset_files(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The files of a message event that are meant as datasets (by their name)."""
    files = event.get("files")
    if not isinstance(files, list):
        return []
    return [f for f in files[:MAX_FILES]
            if isinstance(f, dict) and str(f.get("name") or "").lower().endswith(_DATASET_SUFFIXES)]


def trusted_origin(url: str, api_url: str) -> bool:
    """May the bot token be sent to `url`? Slack's hosts over https, or exactly the
    configured API base's scheme, host and port."""
    try:
        target, api = URL(url), URL(api_url)
    except (TypeError, ValueError):
        return False
    if not target.is_absolute() or target.user or target.password:
        return False
    host = (target.host or "").lower().rstrip(".")
    if target.scheme == "https" and target.port == 443 and host.endswith(".slack.com"):
        return True
    return (target.scheme, host, target.port) == (api.scheme, (api.host or "").lower().rstrip("."), api.port)


class SlackFiles:
    """Downloads one message's dataset attachments with the bot token and saves them."""

    def __init__(self, *, api_url: str, token: str, session: aiohttp.ClientSession, uploads_dir: Path,
                 timeout_s: float = DOWNLOAD_TIMEOUT_S) -> None:
        self.api_url, self.token, self.session = api_url, token, session
        self.uploads_dir, self.timeout_s = uploads_dir, timeout_s

    async def save(self, file: Mapping[str, Any]) -> tuple[str, int]:
        """(name, size) of the saved dataset, or UploadError saying why it was not kept."""
        name = uploads.check_name(str(file.get("name") or ""))
        declared = file.get("size")
        if isinstance(declared, int) and not isinstance(declared, bool):
            if declared > MAX_UPLOAD_BYTES:
                raise UploadError(f"{name} is {declared:,} bytes, larger than {MAX_UPLOAD_BYTES >> 20} MiB; "
                                  "use a hub dataset id for big data")
            if declared == 0:
                raise UploadError(f"{name} is empty")
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        if not url:
            raise UploadError(f"Slack sent no download link for {name} (file mode "
                              f"{file.get('mode') or 'unknown'}); share it again as a file in the message")
        self._check_origin(url, name)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch(url, name)
        except aiohttp.ClientError as exc:  # before TimeoutError: aiohttp's read timeouts are both
            raise UploadError(f"could not download {name} from Slack ({type(exc).__name__}); try again") from None
        except TimeoutError:
            raise UploadError(f"downloading {name} from Slack took longer than {self.timeout_s:.0f}s; "
                              "try again") from None
        except OSError as exc:
            log.error("Slack: cannot write %s to %s: %s", name, self.uploads_dir, exc,
                      extra={"adapter": "slack"})
            raise UploadError(f"hammer could not store {name}; an operator has to look at its data "
                              "directory") from None

    def _check_origin(self, url: str, name: str) -> None:
        if not trusted_origin(url, self.api_url):
            shown = url.split("?", 1)[0][:200]
            log.warning("Slack: refused to download %s from %s: not Slack's file host (allowed: "
                        "https://*.slack.com and %s); the bot token is only sent to Slack",
                        name, shown, self.api_url, extra={"adapter": "slack"})
            raise DownloadRefused(f"{name} is not stored by Slack (its link points elsewhere); hammer only "
                                  "downloads files uploaded to Slack itself")

    async def _fetch(self, url: str, name: str) -> tuple[str, int]:
        headers = {"Authorization": f"Bearer {self.token}"}
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self.session.get(url, headers=headers, allow_redirects=False, timeout=REQUEST_TIMEOUT)
            try:
                if resp.status in _REDIRECTS:
                    location = resp.headers.get("Location", "")
                    url = str(URL(url).join(URL(location)))
                    self._check_origin(url, name)
                    continue
                if resp.status != 200:
                    raise UploadError(f"Slack answered HTTP {resp.status} when hammer downloaded {name}; "
                                      "try sharing it again")
                if resp.content_type == "text/html":
                    raise UploadError(f"Slack sent its sign-in page instead of {name}: the hammer app needs "
                                      "the files:read scope (add it under OAuth & Permissions and reinstall "
                                      "the app) and must be able to see the file")
                return await uploads.save_upload(self.uploads_dir, name, _body(resp))
            finally:
                resp.release()
        raise UploadError(f"Slack redirected the download of {name} too many times; try again")


async def _body(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in resp.content.iter_chunked(CHUNK):
        yield chunk
