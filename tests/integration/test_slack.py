"""The Slack adapter against tests/fakes/slack.py, with the real slack-bolt / slack_sdk
clients: Socket Mode envelopes and acks, signed HTTP requests, Block Kit progress with
chat.update, 429 Retry-After, files_upload_v2 into the thread, retries, identity and the
setup errors an operator would meet. Adapter-level tests drive the adapter with a bare
inbox queue; the end-to-end tests run it inside a real gateway (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.chat.slack import SlackAdapter
from adapters.chat.slack.blocks import render_blocks
from adapters.chat.slack.errors import SlackError, SlackSetupError
from gateway.app import standalone_services
from gateway.contracts import Services
from gateway.model import Button, ChatMessage, Interaction, OutboundMessage
from tests.fakes.slack import FakeSlack

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
Pair = tuple[SlackAdapter, asyncio.Queue[Any]]
REFS = {"env:SLACK_BOT_TOKEN": "bot_token", "env:SLACK_APP_TOKEN": "app_token",
        "env:SLACK_SIGNING_SECRET": "signing_secret"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    f = await FakeSlack().start()
    yield f
    await f.stop()


def services(fake: FakeSlack, tmp_path: Path, http: web.Application | None = None, **wrong: str) -> Services:
    """Secrets resolve to the fake's tokens, except the ones given in `wrong`."""
    return standalone_services(tmp_path, public_url="http://127.0.0.1:1", http_app=http,
                               secret=lambda ref: wrong.get(REFS[ref]) or getattr(fake, REFS[ref]))


def config(fake: FakeSlack, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"bot_token": "env:SLACK_BOT_TOKEN", "app_token": "env:SLACK_APP_TOKEN",
                           "api_url": fake.api_url, "connect_timeout": 5, "max_retry_after": 3}
    cfg.update(over)
    return cfg


@pytest.fixture
async def socket_adapter(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Pair]:
    fake.usergroups = [{"id": "S0ADMINS", "handle": "ml-admins", "users": ["U0ADMIN"]}]
    adapter = SlackAdapter(config(fake, role_map={"ml-admins": "admin"}), services(fake, tmp_path))
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    await adapter.start(inbox)
    yield adapter, inbox
    await adapter.stop()


async def next_item(inbox: asyncio.Queue[Any], within: float = 3.0) -> Any:
    return await asyncio.wait_for(inbox.get(), within)


async def nothing_more(inbox: asyncio.Queue[Any], wait: float = 0.4) -> None:
    await asyncio.sleep(wait)
    assert inbox.empty(), f"unexpected inbox item: {inbox.get_nowait()!r}"


# -- Socket Mode ---------------------------------------------------------------------------

async def test_socket_slash_command_is_acked_then_progress_updates_and_upload_in_thread(
        fake: FakeSlack, socket_adapter: Pair, tmp_path: Path) -> None:
    adapter, inbox = socket_adapter
    t0 = time.monotonic()
    command = fake.slash_command("finetune demo-lora demo", user="U0ADMIN")
    env = await fake.send_envelope("slash_commands", command)
    await fake.wait_ack(env, within=3.0)
    assert time.monotonic() - t0 < 3.0
    msg = await next_item(inbox)
    assert isinstance(msg, ChatMessage)
    assert msg.text == "finetune demo-lora demo"
    assert (msg.actor.platform, msg.actor.user_id, msg.actor.roles) == ("slack", "U0ADMIN", ("admin",))
    assert msg.conversation.channel == "C0GENERAL" and msg.conversation.workspace == fake.team_id

    cancel = Button("cancel", "Cancel", "job42", "danger")
    ref = await adapter.reply(msg, OutboundMessage(title="Job job42", fields=(("Phase", "queued"),),
                                                   buttons=(cancel,)))
    [post] = fake.calls_to("chat.postMessage")
    assert post.args["channel"] == "C0GENERAL" and "thread_ts" not in post.args  # a new message, top level
    assert ref.conversation.thread == ref.message_id == fake.messages[ref.message_id]["ts"]
    for step in (1, 2, 3):
        await adapter.edit(ref, OutboundMessage(title="Job job42", fields=(("Step", f"{step}/3"),),
                                                progress=step / 3, buttons=(cancel,)))
    updates = fake.calls_to("chat.update")
    assert [u.args["ts"] for u in updates] == [ref.message_id] * 3
    shown = fake.messages[ref.message_id]
    assert "3/3" in json.dumps(shown["blocks"])
    assert "U0ADMIN" in json.dumps(shown["blocks"])  # who ran the command stays on top
    actions = [b for b in shown["blocks"] if b["type"] == "actions"][0]["elements"]
    assert actions[0]["action_id"] == "hammer_cancel" and actions[0]["value"] == "job42"

    png = tmp_path / "loss_curve.png"
    png.write_bytes(PNG)
    report = OutboundMessage(title="Job job42 finished", text="Prompt: hi\nAnswer: hello",
                             fields=(("Adapter", "http://127.0.0.1:1/a/job42.zip"),),
                             image=png, image_title="Loss curve")
    await adapter.send(ref.conversation, report)
    [upload] = fake.uploads
    assert upload["data"] == PNG and upload["filename"] == "loss_curve.png"
    assert upload["channel"] == "C0GENERAL" and upload["thread_ts"] == ref.message_id
    assert "Answer: hello" in upload["initial_comment"] and "job42.zip" in upload["initial_comment"]
    assert len(fake.calls_to("chat.postMessage")) == 1


async def test_message_command_and_mention_reply_in_thread_and_are_not_doubled(
        fake: FakeSlack, socket_adapter: Pair) -> None:
    adapter, inbox = socket_adapter
    fake.users["U0ALICE"] = {"id": "U0ALICE", "name": "alice", "profile": {"display_name": "Alice"}}
    ev = fake.message_event(".finetune demo-lora demo")
    await fake.wait_ack(await fake.send_envelope("events_api", ev))
    msg = await next_item(inbox)
    assert msg.text == ".finetune demo-lora demo" and msg.actor.display_name == "Alice"
    assert msg.message_id == ev["event"]["ts"] and msg.actor.roles == ()
    ref = await adapter.reply(msg, OutboundMessage(text="working"))
    assert fake.calls_to("chat.postMessage")[-1].args["thread_ts"] == ev["event"]["ts"]
    assert ref.conversation.thread == ev["event"]["ts"]

    # Slack sends `message` and `app_mention` for one message that mentions the app.
    ts = "1800000000.000200"
    mention = fake.message_event(f"<@{fake.bot_user_id}> .status", ts=ts, kind="app_mention")
    plain = fake.message_event(f"<@{fake.bot_user_id}> .status", ts=ts)
    await fake.send_envelope("events_api", mention)
    await fake.send_envelope("events_api", plain)
    got = await next_item(inbox)
    assert got.text == ".status" and got.message_id == ts
    # Chatter that is not a command, and the bot's own messages, are not forwarded.
    await fake.send_envelope("events_api", fake.message_event("lunch?"))
    bot_says = {"type": "message", "subtype": "bot_message", "text": ".help", "bot_id": "B1",
                "channel": "C0GENERAL", "ts": "1.2"}
    await fake.send_envelope("events_api", fake.event(bot_says))
    await nothing_more(inbox)


async def test_socket_envelope_retry_does_not_deliver_twice(
        fake: FakeSlack, socket_adapter: Pair) -> None:
    _, inbox = socket_adapter
    ev = fake.message_event(".finetune demo-lora demo", event_id="Ev0RETRY")
    await fake.wait_ack(await fake.send_envelope("events_api", ev))
    await next_item(inbox)
    retry = await fake.send_envelope("events_api", ev, retry_attempt=1, retry_reason="timeout")
    await fake.wait_ack(retry)  # still acked, so Slack stops retrying
    await nothing_more(inbox)


async def test_socket_reconnects_when_slack_asks_and_keeps_delivering(
        fake: FakeSlack, socket_adapter: Pair) -> None:
    _, inbox = socket_adapter
    assert fake.connections == 1
    await fake.ask_to_reconnect()
    await fake.wait_for(lambda: fake.connections == 2 and len(fake.sockets) == 1, 5, "a new connection")
    assert len(fake.calls_to("apps.connections.open")) == 2
    env = await fake.send_envelope("slash_commands", fake.slash_command("jobs"))
    await fake.wait_ack(env)
    assert (await next_item(inbox)).text == "jobs"


async def test_block_action_becomes_interaction_and_respond_is_ephemeral(
        fake: FakeSlack, socket_adapter: Pair) -> None:
    adapter, inbox = socket_adapter
    payload = fake.block_action("hammer_cancel", "job42", user="U0BOB", message_ts="1700000001.000100")
    env = await fake.send_envelope("interactive", payload)
    await fake.wait_ack(env, within=3.0)
    ia = await next_item(inbox)
    assert isinstance(ia, Interaction)
    assert (ia.action_id, ia.value, ia.actor.user_id) == ("cancel", "job42", "U0BOB")
    assert ia.conversation.thread == "1700000001.000100" and ia.message_id == "1700000001.000100"
    await adapter.respond(ia, OutboundMessage(text="Only the person who started job job42 can cancel it.",
                                              level="error"))
    [eph] = fake.calls_to("chat.postEphemeral")
    assert eph.args["user"] == "U0BOB" and eph.args["channel"] == "C0GENERAL"
    assert "Only the person" in eph.args["text"]
    # A button that is not hammer's is acked and ignored.
    await fake.wait_ack(await fake.send_envelope("interactive", fake.block_action("other_app", "x")))
    await nothing_more(inbox)


# -- rate limits ------------------------------------------------------------------------------

async def test_429_retry_after_slows_edits_and_the_last_state_wins(
        fake: FakeSlack, socket_adapter: Pair) -> None:
    adapter, inbox = socket_adapter
    await fake.send_envelope("slash_commands", fake.slash_command("finetune demo-lora demo"))
    ref = await adapter.reply(await next_item(inbox), OutboundMessage(title="Job j", text="step 0"))
    fake.rate_limit("chat.update", times=1, retry_after=1)
    t0 = time.monotonic()
    await adapter.edit(ref, OutboundMessage(title="Job j", text="step 1"))
    assert time.monotonic() - t0 >= 0.95  # waited as Retry-After asked
    assert fake.messages[ref.message_id]["text"].endswith("step 1")
    # Edits that pile up behind a rate-limit pause: only the newest needs to be shown.
    fake.rate_limit("chat.update", times=2, retry_after=1)
    states = [OutboundMessage(title="Job j", text=f"step {n}") for n in range(2, 7)]
    await asyncio.wait_for(asyncio.gather(*(adapter.edit(ref, m) for m in states)), 10)
    assert fake.messages[ref.message_id]["text"].endswith("step 6")
    assert [c.status for c in fake.calls_to("chat.update")].count(429) == 3
    assert adapter.api is not None and [m for m, _ in adapter.api.pauses] == ["chat.update"] * 3


# -- HTTP mode -------------------------------------------------------------------------------

@pytest.fixture
async def http_adapter(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[tuple[SlackAdapter, Any, str]]:
    app = web.Application()
    adapter = SlackAdapter(config(fake, mode="http", app_token="", signing_secret="env:SLACK_SIGNING_SECRET"),
                           services(fake, tmp_path, http=app))
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    await adapter.start(inbox)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield adapter, inbox, f"http://127.0.0.1:{port}/slack/events"
    await adapter.stop()
    await runner.cleanup()


async def post(url: str, body: str, headers: dict[str, str], content_type: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.post(url, data=body.encode(), headers={
            **headers, "Content-Type": content_type}, timeout=aiohttp.ClientTimeout(total=5)) as r:
        return r.status, await r.text()


async def test_http_signed_requests_are_accepted_and_forged_or_stale_ones_get_401(
        fake: FakeSlack, http_adapter: tuple[SlackAdapter, asyncio.Queue[Any], str]) -> None:
    _, inbox, url = http_adapter
    body = json.dumps(fake.message_event(".finetune demo-lora demo", event_id="Ev0HTTP"))
    status, _ = await post(url, body, fake.sign(body), "application/json")
    assert status == 200
    assert (await next_item(inbox)).text == ".finetune demo-lora demo"

    tampered = body.replace("demo-lora", "qwen-72b-full")
    assert (await post(url, tampered, fake.sign(body), "application/json"))[0] == 401
    old = int(time.time()) - 6 * 60
    assert (await post(url, body, fake.sign(body, timestamp=old), "application/json"))[0] == 401
    assert (await post(url, body, fake.sign(body, secret="not-the-secret"), "application/json"))[0] == 401
    assert (await post(url, body, {}, "application/json"))[0] == 401

    # Slack re-delivers the same event (X-Slack-Retry-Num): acked, not launched again.
    status, _ = await post(url, body, {**fake.sign(body), "X-Slack-Retry-Num": "1",
                                       "X-Slack-Retry-Reason": "http_timeout"}, "application/json")
    assert status == 200
    await nothing_more(inbox)


async def test_http_slash_command_interaction_and_url_verification(
        fake: FakeSlack, http_adapter: tuple[SlackAdapter, asyncio.Queue[Any], str]) -> None:
    _, inbox, url = http_adapter
    form = fake.form_body(fake.slash_command("status"))
    t0 = time.monotonic()
    status, _ = await post(url, form, fake.sign(form), "application/x-www-form-urlencoded")
    assert status == 200 and time.monotonic() - t0 < 3.0
    assert (await next_item(inbox)).text == "status"
    form = fake.form_body(fake.block_action("hammer_approve", "job7", message_ts="1.5"), interactive=True)
    assert (await post(url, form, fake.sign(form), "application/x-www-form-urlencoded"))[0] == 200
    ia = await next_item(inbox)
    assert (ia.action_id, ia.value) == ("approve", "job7")
    challenge = json.dumps({"token": "legacy", "challenge": "abc123", "type": "url_verification"})
    status, text = await post(url, challenge, fake.sign(challenge), "application/json")
    assert status == 200 and "abc123" in text


# -- setup problems ----------------------------------------------------------------------------

async def test_bad_bot_token_fails_start_with_cause_and_fix(fake: FakeSlack, tmp_path: Path) -> None:
    adapter = SlackAdapter(config(fake), services(fake, tmp_path, bot_token="xoxb-revoked"))
    with pytest.raises(SlackSetupError) as err:
        await adapter.start(asyncio.Queue())
    assert err.value.code == "invalid_auth"
    assert "bot token" in str(err.value) and "OAuth & Permissions" in str(err.value)
    checks = await adapter.check()
    assert not checks[0].ok and "invalid_auth" in checks[0].what and "xoxb" in checks[0].fix


async def test_bad_app_token_fails_start(fake: FakeSlack, tmp_path: Path) -> None:
    adapter = SlackAdapter(config(fake), services(fake, tmp_path, app_token="xapp-other"))
    with pytest.raises(SlackSetupError) as err:
        await adapter.start(asyncio.Queue())
    assert "app-level token" in str(err.value) and "connections:write" in str(err.value)


async def test_missing_scope_and_channel_problems_are_explained(fake: FakeSlack, tmp_path: Path) -> None:
    fake.scopes.remove("files:write")
    fake.usergroups = [{"id": "S0ADMINS", "handle": "ml-admins", "users": []}]
    adapter = SlackAdapter(config(fake, channels=["C0GENERAL", "C0OUTSIDE", "C0GONE99"],
                                  role_map={"ml-admins": "admin", "no-such-group": "admin"}),
                           services(fake, tmp_path))
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    await adapter.start(inbox)  # problems with channels are warnings, not fatal
    try:
        checks = {c.what: c for c in await adapter.check()}
        text = "\n".join(f"{c.ok} {w} | {c.fix}" for w, c in checks.items())
        assert "False Slack bot token lacks scopes: files:write" in text
        assert "/invite @hammer" in text and "C0OUTSIDE" in text
        assert "C0GONE99" in text and "does not exist" in text
        assert "no user group no-such-group" in text
        assert "True Slack channel #general" in text and "True Slack Socket Mode" in text

        with pytest.raises(SlackError) as err:  # the scope problem at call time: cause and fix
            await adapter.upload(adapter_conv(), write_png(tmp_path), "Loss curve")
        assert "files:write" in str(err.value) and "reinstall" in str(err.value)
        # ... but a report is never lost for want of its picture: it is posted without it.
        await adapter.send(adapter_conv(), OutboundMessage(title="Job j finished", image=write_png(tmp_path)))
        [report] = fake.calls_to("chat.postMessage")
        assert report.args["thread_ts"] == adapter_conv().thread and "Job j finished" in report.args["text"]

        # A slash command where the app is not a member: the user hears why, privately.
        await fake.send_envelope("slash_commands", fake.slash_command("status", channel="C0OUTSIDE"))
        msg = await next_item(inbox)
        with pytest.raises(SlackError) as err:
            await adapter.reply(msg, OutboundMessage(text="status"))
        assert err.value.code == "not_in_channel"
        [note] = fake.response_url_posts
        assert note["response_type"] == "ephemeral" and "/invite @hammer" in note["text"]
    finally:
        await adapter.stop()


def adapter_conv() -> Any:
    from gateway.model import Conversation
    return Conversation("slack", "C0GENERAL", "T0HAMMER", "1700000001.000100")


def write_png(tmp_path: Path) -> Path:
    p = tmp_path / "loss_curve.png"
    p.write_bytes(PNG)
    return p


def test_config_validation_says_which_token_is_missing(fake: FakeSlack) -> None:
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="app_token"):
        SlackAdapter.config_model.model_validate({"bot_token": "env:X"})
    with pytest.raises(ValidationError, match="signing_secret"):
        SlackAdapter.config_model.model_validate({"bot_token": "env:X", "mode": "http"})
    with pytest.raises(ValidationError, match="secret reference"):
        SlackAdapter.config_model.model_validate({"bot_token": "xoxb-literal", "app_token": "env:A"})
    with pytest.raises(ValidationError, match="unknown|Extra"):
        SlackAdapter.config_model.model_validate({"bot_token": "env:X", "app_token": "env:A", "chanels": []})


def test_block_kit_rendering_respects_slack_limits() -> None:
    msg = OutboundMessage(title="T" * 400, text="<b>&" + "x" * 5000, progress=0.5,
                          fields=tuple((f"k{i}", "v") for i in range(23)), level="warning",
                          buttons=(Button("approve", "Approve", "j", "primary"),
                                   Button("deny", "Deny", "j", "danger")))
    blocks = render_blocks(msg)
    header = blocks[0]["text"]["text"]
    assert len(header) <= 150 and header.startswith(":warning:")
    assert blocks[1]["text"]["text"].startswith("&lt;b&gt;&amp;") and len(blocks[1]["text"]["text"]) <= 3000
    assert "50%" in blocks[2]["elements"][0]["text"]
    assert [len(b["fields"]) for b in blocks if "fields" in b] == [10, 10, 3]
    assert [e["action_id"] for e in blocks[-1]["elements"]] == ["hammer_approve", "hammer_deny"]
    assert [e.get("style") for e in blocks[-1]["elements"]] == ["primary", "danger"]


# -- end to end: a real gateway with the fake cloud ------------------------------------------

def slack_toml(fake: FakeSlack, **extra: str) -> str:
    lines = ["[chat.slack]", 'bot_token = "env:HAMMER_TEST_SLACK_BOT"',
             'app_token = "env:HAMMER_TEST_SLACK_APP"',
             'signing_secret = "env:HAMMER_TEST_SLACK_SIGNING"', f'api_url = "{fake.api_url}"',
             'min_edit_interval = 0.2', 'role_map = { "ml-admins" = "admin" }']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def slack_env(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> FakeSlack:
    monkeypatch.setenv("HAMMER_TEST_SLACK_BOT", fake.bot_token)
    monkeypatch.setenv("HAMMER_TEST_SLACK_APP", fake.app_token)
    monkeypatch.setenv("HAMMER_TEST_SLACK_SIGNING", fake.signing_secret)
    fake.usergroups = [{"id": "S0ADMINS", "handle": "ml-admins", "users": ["U0ADMIN"]}]
    return fake


async def only_job(hammer: Any, within: float = 10.0) -> Any:
    async def jobs() -> list[Any]:
        return list(await hammer.store.list_jobs())
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await jobs()
        if found:
            assert len(found) == 1, f"expected one job, got {[j.id for j in found]}"
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no job was started")


async def final_state(hammer: Any, job_id: str, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job = await hammer.store.get_job(job_id)
        if job is not None and job.state.terminal:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end within {within}s")


async def test_e2e_socket_slash_command_runs_a_job_with_progress_and_report_in_thread(
        slack_env: FakeSlack, make_hammer: Any) -> None:
    fake = slack_env
    hammer = await make_hammer(slack_toml(fake) + "[cloud.fake]\nsteps = 12\ninterval = 0.08\n", web=False)
    assert "slack" in hammer.chat, hammer.problems.items
    env = await fake.send_envelope("slash_commands", fake.slash_command("finetune demo-lora demo"))
    await fake.wait_ack(env, within=3.0)
    job = await final_state(hammer, (await only_job(hammer)).id)
    assert job.state.value == "succeeded" and job.spec.requester.key == "slack:U0ALICE"
    await fake.wait_for(lambda: fake.uploads, 10, "the loss curve upload")

    [post] = fake.calls_to("chat.postMessage")  # one message per job ...
    [ts] = fake.messages
    assert post.args["channel"] == "C0GENERAL" and job.progress_ref.message_id == ts
    updates = fake.calls_to("chat.update")  # ... edited in place
    assert len(updates) >= 2 and {u.args["ts"] for u in updates} == {ts}
    final = json.dumps(fake.messages[ts]["blocks"])
    assert "succeeded" in final and "hammer_cancel" not in final  # no Cancel on a finished job
    [upload] = fake.uploads
    assert upload["thread_ts"] == ts and upload["channel"] == "C0GENERAL"
    assert upload["filename"] == "loss_curve.png" and upload["data"].startswith(b"\x89PNG")
    assert job.id in upload["initial_comment"] and "finished" in upload["initial_comment"]


async def test_e2e_cancel_button_only_for_the_requester(slack_env: FakeSlack, make_hammer: Any) -> None:
    fake = slack_env
    hammer = await make_hammer(slack_toml(fake), web=False)
    await fake.send_envelope("slash_commands", fake.slash_command("fakejob mode=hang", user="U0ALICE"))
    job = await only_job(hammer)
    await fake.wait_for(lambda: fake.messages, 5, "the progress message")
    [ts] = fake.messages

    env = await fake.send_envelope("interactive", fake.block_action("hammer_cancel", job.id, user="U0BOB",
                                                                    message_ts=ts))
    await fake.wait_ack(env, within=3.0)
    [eph] = await fake.wait_for(lambda: fake.calls_to("chat.postEphemeral"), 5, "the refusal")
    assert eph.args["user"] == "U0BOB" and "Only the person who started" in eph.args["text"]
    assert not (await hammer.store.get_job(job.id)).state.terminal

    env = await fake.send_envelope("interactive", fake.block_action("hammer_cancel", job.id, user="U0ALICE",
                                                                    message_ts=ts))
    await fake.wait_ack(env, within=3.0)
    assert (await final_state(hammer, job.id)).state.value == "cancelled"
    await fake.wait_for(lambda: "cancelled" in json.dumps(fake.messages[ts]["blocks"]), 5, "the final state")


async def test_e2e_malformed_command_gets_error_and_usage_in_thread(
        slack_env: FakeSlack, make_hammer: Any) -> None:
    fake = slack_env
    hammer = await make_hammer(slack_toml(fake), web=False)
    ev = fake.message_event(".finetune demo-lora")
    await fake.wait_ack(await fake.send_envelope("events_api", ev))
    [post] = await fake.wait_for(lambda: fake.calls_to("chat.postMessage"), 5, "the error reply")
    assert post.args["thread_ts"] == ev["event"]["ts"]
    shown = json.dumps(fake.messages[next(iter(fake.messages))]["blocks"])
    assert "needs DATASET" in shown and "Usage: .finetune MODEL DATASET" in shown
    assert await hammer.store.list_jobs() == []


async def test_e2e_http_retried_event_launches_one_job(slack_env: FakeSlack, make_hammer: Any) -> None:
    fake = slack_env
    hammer = await make_hammer(slack_toml(fake, mode='"http"'), web=False)
    url = f"http://127.0.0.1:{hammer.port}/slack/events"
    body = json.dumps(fake.message_event(".finetune demo-lora demo", event_id="Ev0ONCE"))
    assert (await post(url, body, fake.sign(body), "application/json"))[0] == 200
    job = await only_job(hammer)
    for retry in ("1", "2"):
        headers = {**fake.sign(body), "X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"}
        assert (await post(url, body, headers, "application/json"))[0] == 200
    tampered = body.replace("Ev0ONCE", "Ev0FORGED")
    assert (await post(url, tampered, fake.sign(body), "application/json"))[0] == 401
    await final_state(hammer, job.id)
    assert [j.id for j in await hammer.store.list_jobs()] == [job.id]


async def test_e2e_rate_limited_updates_still_end_in_the_final_state(
        slack_env: FakeSlack, make_hammer: Any) -> None:
    fake = slack_env
    hammer = await make_hammer(slack_toml(fake) + "[cloud.fake]\nsteps = 10\ninterval = 0.05\n", web=False)
    fake.rate_limit("chat.update", times=2, retry_after=1)
    await fake.send_envelope("slash_commands", fake.slash_command("finetune demo-lora demo"))
    job = await final_state(hammer, (await only_job(hammer)).id)
    await fake.wait_for(lambda: fake.uploads, 15, "the report")
    limited = [c for c in fake.calls_to("chat.update") if c.status == 429]
    ok = fake.calls_to("chat.update", ok_only=True)
    assert len(limited) == 2 and ok and ok[0].at - limited[0].at >= 0.9  # waited for Retry-After
    assert "succeeded" in json.dumps(fake.messages[job.progress_ref.message_id]["blocks"])


async def test_e2e_bad_token_leaves_the_other_adapters_running_and_doctor_explains(
        slack_env: FakeSlack, make_hammer: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gateway.config import parse_settings
    from gateway.doctor import run_checks
    from tests.conftest import hammer_toml
    fake = slack_env
    monkeypatch.setenv("HAMMER_TEST_SLACK_BOT", "xoxb-revoked-long-ago")
    hammer = await make_hammer(slack_toml(fake), web=True)
    assert "slack" not in hammer.chat and "web" in hammer.chat
    [(where, what)] = [p for p in hammer.problems.items if p[0] == "chat.slack"]
    assert "invalid_auth" in what and "OAuth & Permissions" in what

    settings = parse_settings(hammer_toml(tmp_path / "doctor", slack_toml(fake), web=False), "test")
    results = [(c.ok, c.what, c.fix) for c in await run_checks(settings) if c.what.startswith("chat.slack")]
    assert results and not results[0][0]
    assert "invalid_auth" in results[0][1] and "xoxb" in results[0][2]


def test_manifest_grants_what_hammer_uses() -> None:
    yaml = pytest.importorskip("yaml")
    from adapters.chat.slack.config import SlackConfig
    from adapters.chat.slack.doctor import BASE_SCOPES, MESSAGE_SCOPES
    path = Path(__file__).resolve().parents[2] / "adapters" / "chat" / "slack_manifest.yaml"
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {*BASE_SCOPES, *MESSAGE_SCOPES, "channels:read", "usergroups:read", "users:read"} <= scopes
    default = SlackConfig(bot_token="env:X", app_token="env:Y")
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == [default.slash_command]
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.im"} <= events
    assert manifest["settings"]["interactivity"]["is_enabled"] and manifest["settings"]["socket_mode_enabled"]
