"""Calls to the Slack Web API with Slack's rate limits honoured.

Slack answers an over-eager client with HTTP 429 and `Retry-After: <seconds>`. hammer
waits exactly that long (capped by `max_retry_after`) and tries again, up to
`max_rate_limit_retries` times, and every other call to the same method waits out the
same pause, so parallel jobs do not keep hammering a limited method. A call is never
silently dropped: it either succeeds or raises `SlackError` with the cause and the fix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.chat.slack.errors import SlackError, error_for

log = logging.getLogger("hammer.slack")


def retry_after(headers: Mapping[str, Any] | None, default: float = 1.0) -> float:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return default
    return default


class SlackApi:
    """A thin wrapper: `await api.call("chat.update", channel=..., ts=..., blocks=...)`."""

    def __init__(self, client: AsyncWebClient, *, max_retries: int = 6,
                 max_retry_after: float = 30.0) -> None:
        self.client = client
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self._quiet_until: dict[str, float] = {}
        #: (method, seconds) of every pause taken; tests and metrics read it.
        self.pauses: list[tuple[str, float]] = []

    async def call(self, method: str, *, token_key: str = "bot_token", **kwargs: Any) -> dict[str, Any]:
        """Call `method` (dotted name) with keyword arguments; returns the response body."""
        fn = getattr(self.client, method.replace(".", "_"))
        channel = str(kwargs.get("channel") or kwargs.get("channel_id") or "")
        for attempt in range(self.max_retries + 1):
            wait = self._quiet_until.get(method, 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                resp = await fn(**kwargs)
                return dict(resp.data) if isinstance(resp.data, dict) else {"ok": True}
            except SlackApiError as exc:
                body = exc.response.data if isinstance(exc.response.data, dict) else {}
                code = str(body.get("error", "unknown_error"))
                if exc.response.status_code == 429 or code == "ratelimited":
                    if attempt >= self.max_retries:
                        raise error_for(method, "ratelimited", body, channel=channel) from None
                    pause = min(retry_after(exc.response.headers), self.max_retry_after)
                    until = time.monotonic() + pause
                    self._quiet_until[method] = max(self._quiet_until.get(method, 0.0), until)
                    self.pauses.append((method, pause))
                    log.info("Slack rate-limited %s; waiting %.1fs as Retry-After asks (attempt %d)",
                             method, pause, attempt + 1, extra={"adapter": "slack"})
                    continue
                raise error_for(method, code, body, token_key=token_key, channel=channel) from None
        raise SlackError(f"Slack API {method} failed")  # unreachable: the loop returns or raises
