"""Datasets attached to Slack messages, against tests/fakes/slack.py: downloaded from the
file's private link with the bot token, saved under `<data_dir>/uploads/<the sender>/`, confirmed in
the thread before the message's command runs; bad names, oversized or empty files and
links to anywhere but Slack are refused with a reply and nothing saved."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.chat.slack import SlackAdapter
from adapters.chat.slack.files import trusted_origin
from gateway.model import ChatMessage
from gateway.uploads import MAX_UPLOAD_BYTES
from tests.fakes.slack import ApiCall, FakeSlack
from tests.integration.test_slack import (
    config,
    final_state,
    next_item,
    nothing_more,
    only_job,
    services,
    slack_toml,
)

ROWS = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 3
Pair = tuple[SlackAdapter, asyncio.Queue[Any]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    f = await FakeSlack().start()
    yield f
    await f.stop()


@pytest.fixture
async def adapter(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Pair]:
    """Listens for `.verb` messages and files in #general only."""
    a = SlackAdapter(config(fake, channels=["C0GENERAL"]), services(fake, tmp_path))
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    await a.start(inbox)
    yield a, inbox
    await a.stop()


async def replies_in(fake: FakeSlack, thread: str, count: int = 1) -> list[ApiCall]:
    def found() -> list[ApiCall]:
        posts = [c for c in fake.calls_to("chat.postMessage", ok_only=True) if c.args.get("thread_ts") == thread]
        return posts if len(posts) >= count else []
    return await fake.wait_for(found, 5, f"{count} replies in thread {thread}")


def shown(call: ApiCall) -> str:
    return call.args["text"] + json.dumps(call.args.get("blocks"))


async def test_a_shared_jsonl_is_saved_and_confirmed_in_the_thread(
        fake: FakeSlack, adapter: Pair, tmp_path: Path) -> None:
    _, inbox = adapter
    files = [fake.share_file("faq.jsonl", ROWS), fake.share_file("loss.png", b"\x89PNG\r\n")]
    ev = fake.file_share_event("here is our FAQ data", files)
    await fake.wait_ack(await fake.send_envelope("events_api", ev), within=3.0)
    ts = ev["event"]["ts"]
    [post] = await replies_in(fake, ts)
    assert post.args["channel"] == "C0GENERAL"
    assert "faq.jsonl" in shown(post) and "upload:faq.jsonl" in shown(post)
    assert f"{len(ROWS):,} bytes" in shown(post) and ":white_check_mark:" in shown(post)
    assert (tmp_path / "uploads" / "slack-U0ALICE" / "faq.jsonl").read_bytes() == ROWS
    # Downloaded once, from the private link, with the bot token; the picture left alone.
    assert [(d["path"], d["token"]) for d in fake.downloads] == [
        (f"/files-pri/{fake.team_id}-{files[0]['id']}/download/faq.jsonl", fake.bot_token)]
    assert not (tmp_path / "uploads" / "slack-U0ALICE" / "loss.png").exists()
    await nothing_more(inbox)  # no command in the message: nothing for the gateway
    # Slack re-delivers the event: acked, not downloaded or announced again.
    await fake.wait_ack(await fake.send_envelope("events_api", ev, retry_attempt=1))
    await asyncio.sleep(0.3)
    assert len(fake.downloads) == 1 and len(fake.calls_to("chat.postMessage")) == 1

    # Files in a channel hammer does not listen to are not touched.
    elsewhere = fake.file_share_event("", [fake.share_file("other.jsonl", ROWS)], channel="C0MLOPS")
    await fake.wait_ack(await fake.send_envelope("events_api", elsewhere))
    await asyncio.sleep(0.3)
    assert len(fake.downloads) == 1 and not (tmp_path / "uploads" / "slack-U0ALICE" / "other.jsonl").exists()


async def test_bad_name_oversized_or_empty_files_get_an_error_and_the_command_still_runs(
        fake: FakeSlack, adapter: Pair, tmp_path: Path) -> None:
    _, inbox = adapter
    files = [fake.share_file("my data.jsonl", ROWS), fake.share_file("FAQ.JSONL", ROWS),
             fake.share_file("big.jsonl", ROWS, size=MAX_UPLOAD_BYTES + 1), fake.share_file("empty.jsonl", b"")]
    ev = fake.file_share_event(".status", files)
    await fake.send_envelope("events_api", ev)
    msg = await next_item(inbox)
    assert isinstance(msg, ChatMessage) and msg.text == ".status"
    posts = await replies_in(fake, ev["event"]["ts"], 4)  # all answered before the command went on
    texts = [shown(p) for p in posts]
    assert all(":x:" in t and "Dataset not saved" in t for t in texts)
    assert "ending in .jsonl" in texts[0] and "ending in .jsonl" in texts[1]
    assert "larger than 64 MiB" in texts[2] and f"{MAX_UPLOAD_BYTES + 1:,} bytes" in texts[2]
    assert "empty.jsonl is empty" in texts[3]
    assert fake.downloads == []  # every one refused before downloading anything
    assert list((tmp_path / "uploads" / "slack-U0ALICE").glob("*")) == []


async def test_a_download_link_outside_slack_is_refused_and_never_requested(
        fake: FakeSlack, adapter: Pair, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, inbox = adapter
    seen: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(body=ROWS)

    app = web.Application()
    app.router.add_get("/{name}", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        files = [fake.share_file("steal.jsonl", ROWS, url=f"http://127.0.0.1:{port}/steal.jsonl"),
                 fake.share_file("evil.jsonl", ROWS, url="https://files.slack.com.evil.example/evil.jsonl")]
        with caplog.at_level(logging.WARNING, logger="hammer.slack"):
            ev = fake.file_share_event(".status", files)
            await fake.send_envelope("events_api", ev)
            assert (await next_item(inbox)).text == ".status"
            posts = await replies_in(fake, ev["event"]["ts"], 2)
    finally:
        await runner.cleanup()
    assert seen == [] and fake.downloads == []  # the bot token went nowhere
    assert all("not stored by Slack" in shown(p) and ":x:" in shown(p) for p in posts)
    refusals = [r for r in caplog.records if "refused to download" in r.getMessage()]
    assert len(refusals) == 2 and all(r.levelno == logging.WARNING for r in refusals)
    assert not (tmp_path / "uploads" / "slack-U0ALICE" / "steal.jsonl").exists()


async def test_without_files_read_slack_sends_a_sign_in_page_and_hammer_says_so(
        fake: FakeSlack, adapter: Pair, tmp_path: Path) -> None:
    fake.scopes.remove("files:read")
    ev = fake.file_share_event("", [fake.share_file("faq.jsonl", ROWS)])
    await fake.send_envelope("events_api", ev)
    [post] = await replies_in(fake, ev["event"]["ts"])
    assert "sign-in page" in shown(post) and "files:read" in shown(post)
    assert [d["status"] for d in fake.downloads] == [302]  # the redirect (same host) was followed
    assert not (tmp_path / "uploads" / "slack-U0ALICE" / "faq.jsonl").exists()
    checks = await adapter[0].check()
    assert any(not c.ok and "files:read" in c.what for c in checks)


@pytest.mark.parametrize(("url", "ok"), [
    ("https://files.slack.com/files-pri/T1-F1/download/a.jsonl", True),
    ("https://files-edu.slack.com/files-pri/T1-F1/a.jsonl", True),
    ("http://files.slack.com/files-pri/T1-F1/a.jsonl", False),
    ("https://files.slack.com:8443/a.jsonl", False),
    ("https://files.slack.com.evil.example/a.jsonl", False),
    ("https://evilslack.com/a.jsonl", False),
    ("https://user:pw@files.slack.com/a.jsonl", False),
    ("http://127.0.0.1:5000/files-pri/a.jsonl", True),  # the configured api_url's host and port
    ("http://127.0.0.1:5001/a.jsonl", False),
    ("https://127.0.0.1:5000/a.jsonl", False),
    ("/files-pri/a.jsonl", False),
    ("not a url", False),
])
def test_only_slack_file_hosts_are_trusted(url: str, ok: bool) -> None:
    assert trusted_origin(url, "http://127.0.0.1:5000/api/") is ok


# -- end to end: a real gateway with the fake cloud ------------------------------------------

@pytest.fixture
def slack_env(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> FakeSlack:
    monkeypatch.setenv("HAMMER_TEST_SLACK_BOT", fake.bot_token)
    monkeypatch.setenv("HAMMER_TEST_SLACK_APP", fake.app_token)
    monkeypatch.setenv("HAMMER_TEST_SLACK_SIGNING", fake.signing_secret)
    return fake


async def test_e2e_dataset_and_finetune_command_in_one_message_train_on_the_upload(
        slack_env: FakeSlack, make_hammer: Any) -> None:
    fake = slack_env
    hammer = await make_hammer(slack_toml(fake, channels='["C0GENERAL"]'), web=False)
    assert "slack" in hammer.chat, hammer.problems.items
    ev = fake.file_share_event(".finetune demo-lora upload:faq.jsonl", [fake.share_file("faq.jsonl", ROWS)])
    await fake.wait_ack(await fake.send_envelope("events_api", ev), within=3.0)
    job = await final_state(hammer, (await only_job(hammer)).id)
    assert job.state.value == "succeeded", job
    saved = hammer.data_dir / "uploads" / "slack-U0ALICE" / "faq.jsonl"
    assert saved.read_bytes() == ROWS
    mounts = {(m.source, m.target) for m in job.spec.mounts}
    assert (str(saved), "/data/faq.jsonl") in mounts
    ts = ev["event"]["ts"]
    first = fake.calls_to("chat.postMessage", ok_only=True)[0]  # the confirmation came first
    assert first.args["thread_ts"] == ts and "upload:faq.jsonl" in shown(first)
    assert job.progress_ref.conversation.thread == ts  # the job's progress in the same thread
