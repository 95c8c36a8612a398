"""Dataset files attached on Discord: saved under <data_dir>/uploads/<the sender>/, answered in the
channel, usable as `upload:NAME` by a command in the same message (tests/fakes/discord
serves the attachments on 127.0.0.1, as Discord's CDN would)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.chat.discord import DiscordAdapter
from gateway.contracts import InboxItem
from gateway.model import ChatMessage, JobState, Mount
from gateway.uploads import MAX_UPLOAD_BYTES
from tests.fakes.discord import FakeDiscord, FakeFile
from tests.integration.test_discord import DISCORD_TOML, adapter_for, embed, next_item, only_job, until_ended

D = FakeDiscord
CHANNEL = rf"/channels/{D.EXPERIMENTS}/messages"
CDN = r"/attachments/\d+/.*"
ROWS = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 3
SUCCESS, ERROR = 0x57F287, 0xED4245


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    f = await FakeDiscord(token="token-value").start()
    f.install(monkeypatch)
    yield f
    await f.close()


@pytest.fixture
async def bot(
    fake: FakeDiscord, tmp_path: Path
) -> AsyncIterator[tuple[DiscordAdapter, asyncio.Queue[InboxItem]]]:
    adapter = adapter_for(tmp_path)
    inbox: asyncio.Queue[InboxItem] = asyncio.Queue()
    await adapter.start(inbox)
    yield adapter, inbox
    await adapter.stop()


def uploads_of(tmp_path: Path) -> list[str]:
    d = tmp_path / "uploads" / "discord-910000000000000200"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


# -- adapter level ------------------------------------------------------------------------------
async def test_attached_dataset_is_saved_and_announced(fake: FakeDiscord, bot: Any, tmp_path: Path) -> None:
    _, inbox = bot
    sent = await fake.say("here is my data", files=[FakeFile("faq.jsonl", ROWS)])
    [answer] = await fake.wait_for("POST", CHANNEL)
    assert (tmp_path / "uploads" / "discord-910000000000000200" / "faq.jsonl").read_bytes() == ROWS
    e = embed(answer)
    assert "faq.jsonl" in e["title"] and f"{len(ROWS):,} bytes" in e["title"] and e["color"] == SUCCESS
    assert "upload:faq.jsonl" in e["description"]
    assert str(answer.payload["message_reference"]["message_id"]) == sent["id"]
    assert len(fake.find("GET", CDN)) == 1
    await asyncio.sleep(0.1)
    assert inbox.empty(), "a message without a command puts nothing on the inbox"


async def test_command_in_the_same_message_comes_after_the_file(
    fake: FakeDiscord, bot: Any, tmp_path: Path
) -> None:
    _, inbox = bot
    fake.cdn_delay = 0.3
    await fake.say(".finetune demo-lora upload:faq.jsonl",
                   files=[FakeFile("faq.jsonl", ROWS), FakeFile("cat.png", b"\x89PNG\r\n\x1a\n")])
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage) and item.text == ".finetune demo-lora upload:faq.jsonl"
    saved = tmp_path / "uploads" / "discord-910000000000000200" / "faq.jsonl"
    assert saved.read_bytes() == ROWS, "saved before the command is queued"
    assert [embed(r)["color"] for r in fake.find("POST", CHANNEL)] == [SUCCESS], "announced first"
    assert [r.path.rsplit("/", 1)[1] for r in fake.find("GET", CDN)] == ["faq.jsonl"], "the image is ignored"
    assert uploads_of(tmp_path) == ["faq.jsonl"]


async def test_a_command_sent_right_after_an_attachment_waits_for_it(
    fake: FakeDiscord, bot: Any, tmp_path: Path
) -> None:
    _, inbox = bot
    fake.cdn_delay = 0.3
    await fake.say("", files=[FakeFile("faq.jsonl", ROWS)])
    await fake.say(".finetune demo-lora upload:faq.jsonl")
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage) and item.text.startswith(".finetune")
    assert (tmp_path / "uploads" / "discord-910000000000000200" / "faq.jsonl").is_file()


@pytest.mark.parametrize(
    ("file", "says", "downloaded"),
    [
        (FakeFile("../evil.jsonl", ROWS), "ending in .jsonl", False),
        (FakeFile("big.jsonl", ROWS, size=MAX_UPLOAD_BYTES + 1), "larger than 64 MiB", False),
        (FakeFile("empty.jsonl", b""), "empty.jsonl is empty", True),
        (FakeFile("gone.jsonl", ROWS, served=False), "could not download it from Discord (HTTP 404)", True),
    ],
    ids=["path-in-name", "declared-too-big", "empty", "download-fails"],
)
async def test_refused_attachment_gets_the_reason_and_no_file(
    fake: FakeDiscord, bot: Any, tmp_path: Path, file: FakeFile, says: str, downloaded: bool
) -> None:
    _, inbox = bot
    await fake.say(".jobs", files=[file])
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage) and item.text == ".jobs", "the command still goes through"
    [answer] = fake.find("POST", CHANNEL)
    assert embed(answer)["color"] == ERROR and says in embed(answer)["description"]
    assert bool(fake.find("GET", CDN, status=None)) is downloaded
    assert uploads_of(tmp_path) == []


async def test_a_stalled_download_is_given_up(fake: FakeDiscord, bot: Any, tmp_path: Path) -> None:
    adapter, _ = bot
    adapter.attachments.download_timeout = 0.2
    fake.cdn_delay = 2.0
    await fake.say("", files=[FakeFile("slow.jsonl", ROWS)])
    [answer] = await fake.wait_for("POST", CHANNEL)
    assert embed(answer)["color"] == ERROR and "took too long" in embed(answer)["description"]
    assert uploads_of(tmp_path) == []


async def test_attachments_outside_configured_channels_are_ignored(
    fake: FakeDiscord, bot: Any, tmp_path: Path
) -> None:
    _, inbox = bot
    await fake.say("", channel=D.GENERAL, files=[FakeFile("faq.jsonl", ROWS)])
    await fake.say("", bot=True, files=[FakeFile("bot.jsonl", ROWS)])
    await fake.say(".jobs")
    await next_item(inbox)
    await asyncio.sleep(0.2)
    assert not fake.find("GET", CDN, status=None) and not fake.find("POST", r"/channels/\d+/messages")
    assert uploads_of(tmp_path) == []


# -- the whole gateway -----------------------------------------------------------------------------
@pytest.fixture
async def gateway(fake: FakeDiscord, make_hammer: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", fake.token)
    hammer = await make_hammer(DISCORD_TOML, web=False)
    assert "discord" in hammer.chat, hammer.problems.items
    return hammer


async def test_finetune_on_a_dataset_attached_to_the_same_message(fake: FakeDiscord, gateway: Any) -> None:
    hammer = gateway
    command = await fake.say(".finetune demo-lora upload:faq.jsonl", files=[FakeFile("faq.jsonl", ROWS)])
    job = await only_job(hammer)
    host = hammer.data_dir / "uploads" / "discord-910000000000000200" / "faq.jsonl"
    assert host.read_bytes() == ROWS
    assert Mount(str(host), "/data/faq.jsonl", True) in job.spec.mounts
    assert await until_ended(hammer, job.id) == JobState.SUCCEEDED
    await fake.wait_for("POST", rf"/channels/{command['id']}/messages")  # the report, in the job's thread
    announced, progress = fake.find("POST", CHANNEL)
    assert "faq.jsonl" in embed(announced)["title"] and embed(announced)["color"] == SUCCESS
    assert job.id in embed(progress)["title"]


async def test_a_refused_attachment_leaves_the_command_to_say_the_upload_is_missing(
    fake: FakeDiscord, gateway: Any
) -> None:
    hammer = gateway
    big = FakeFile("faq.jsonl", ROWS, size=MAX_UPLOAD_BYTES + 1)
    await fake.say(".finetune demo-lora upload:faq.jsonl", files=[big])
    refused, missing = await fake.wait_for("POST", CHANNEL, count=2)
    assert embed(refused)["color"] == ERROR and "larger than" in embed(refused)["description"]
    assert embed(missing)["color"] == ERROR and "no uploaded file named faq.jsonl" in embed(missing)["title"]
    assert not fake.find("GET", CDN, status=None)
    assert not (hammer.data_dir / "uploads" / "discord-910000000000000200" / "faq.jsonl").exists()
    assert not await hammer.store.list_jobs()
