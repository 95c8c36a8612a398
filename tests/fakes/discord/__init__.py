"""A local stand-in for Discord: the REST API and the gateway websocket on 127.0.0.1.

The real discord.py client talks to it after `FakeDiscord.install(monkeypatch)` points
`discord.http.Route.BASE` and `DiscordWebSocket.DEFAULT_GATEWAY` here. It speaks the wire
protocol the client depends on: JSON bodies with `Content-Type: application/json`
exactly (discord.py parses nothing else), multipart uploads (`payload_json` +
`files[n]`), 429s with `retry_after` and a `Via` header (without one discord.py takes a
429 for a Cloudflare ban), interaction callbacks and follow-up webhooks, thread
creation, application command overwrites, and the gateway opcodes HELLO, IDENTIFY,
READY, HEARTBEAT with the GUILD_CREATE, MESSAGE_CREATE, INTERACTION_CREATE and
THREAD_CREATE dispatches. Files users attach are served at the attachment's `url`
(`/attachments/<id>/<name>` on the fake, standing in for Discord's CDN).

One server ("Seed Lab") with #experiments, #general and #readonly (the bot may not send
there), an "ML Admins" role, two users. Every request is recorded for assertions.

    fake = await FakeDiscord(token="t").start(); fake.install(monkeypatch)
    await fake.say(".finetune demo-lora demo")          # MESSAGE_CREATE
    await fake.say("", files=[FakeFile("faq.jsonl", rows)])  # with an attachment
    it = await fake.slash("finetune", {"model": "demo-lora", "dataset": "demo"})
    fake.rate_limit("PATCH", r"/channels/\\d+/messages/\\d+", times=2, retry_after=0.3)
    fake.find("PATCH", r"/channels/\\d+/messages/\\d+")  # what the bot sent
"""

from tests.fakes.discord.payloads import EPHEMERAL, TEXT_PERMS
from tests.fakes.discord.server import FakeDiscord, FakeFile, Recorded

__all__ = ["EPHEMERAL", "TEXT_PERMS", "FakeDiscord", "FakeFile", "Recorded"]
