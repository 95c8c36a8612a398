"""The Discord adapter with the real discord.py client against tests/fakes/discord.py.

The first half drives the adapter directly (an asyncio.Queue inbox, the test playing
the gateway); the second half runs a whole gateway (`make_hammer`, fake cloud) behind it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.chat.discord import DiscordAdapter, DiscordSetupError
from gateway.app import standalone_services
from gateway.contracts import InboxItem
from gateway.model import Button, ChatMessage, Interaction, JobState, OutboundMessage
from tests.conftest import wait_for
from tests.fakes.discord import EPHEMERAL, FakeDiscord

D = FakeDiscord
MSG = r"/channels/(\d+)/messages"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    f = await FakeDiscord(token="token-value").start()
    f.install(monkeypatch)
    yield f
    await f.close()


def adapter_for(tmp_path: Path, **config: Any) -> DiscordAdapter:
    cfg = {
        "token": "env:DISCORD_BOT_TOKEN",
        "channels": ["experiments"],
        "guild_ready_timeout": 0.05,
        "connect_timeout": 10,
        "role_map": {"ML Admins": "admin"},
        **config,
    }
    services = standalone_services(tmp_path, public_url="http://127.0.0.1:1", secret=lambda ref: "token-value")
    return DiscordAdapter(cfg, services)


@pytest.fixture
async def bot(
    fake: FakeDiscord, tmp_path: Path
) -> AsyncIterator[tuple[DiscordAdapter, asyncio.Queue[InboxItem]]]:
    adapter = adapter_for(tmp_path)
    inbox: asyncio.Queue[InboxItem] = asyncio.Queue()
    await adapter.start(inbox)
    yield adapter, inbox
    await adapter.stop()


async def next_item(inbox: asyncio.Queue[InboxItem], within: float = 5.0) -> InboxItem:
    return await asyncio.wait_for(inbox.get(), within)


def embed(rec: Any) -> dict[str, Any]:
    return (rec.payload.get("embeds") or [{}])[0]


# -- adapter level ------------------------------------------------------------------------------
async def test_prefix_command_is_normalized_with_mapped_roles(fake: FakeDiscord, bot: Any) -> None:
    _, inbox = bot
    sent = await fake.say(".finetune demo-lora demo", roles=(D.ADMIN_ROLE,))
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage)
    assert item.text == ".finetune demo-lora demo"
    assert item.message_id == sent["id"]
    assert (item.actor.platform, item.actor.user_id, item.actor.roles) == ("discord", str(D.USER), ("admin",))
    assert (item.conversation.channel, item.conversation.workspace) == (str(D.EXPERIMENTS), str(D.GUILD))


async def test_messages_outside_configured_channels_are_ignored(fake: FakeDiscord, bot: Any) -> None:
    _, inbox = bot
    await fake.say(".finetune demo-lora demo", channel=D.GENERAL)
    await fake.say("finetune demo-lora demo, please")  # no prefix
    await fake.say(".finetune demo-lora demo", bot=True)  # another bot
    await fake.say(".jobs")
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage) and item.text == ".jobs"
    await asyncio.sleep(0.1)
    assert inbox.empty()


async def test_progress_embed_created_once_edited_in_place_report_in_thread(
    fake: FakeDiscord, bot: Any, tmp_path: Path
) -> None:
    adapter, inbox = bot
    command = await fake.say(".finetune demo-lora demo")
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage)
    start = OutboundMessage(
        title="Job abc123 · sft demo-lora on demo",
        fields=(("Phase", "queued"),),
        progress=0.0,
        buttons=(Button("cancel", "Cancel", "abc123", "danger"),),
    )
    ref = await adapter.reply(item, start)
    for step in (3, 7, 10):
        await adapter.edit(
            ref,
            OutboundMessage(
                title=start.title,
                fields=(("Step", f"{step}/10"),),
                progress=step / 10,
                level="success" if step == 10 else "info",
            ),
        )
    png = tmp_path / "loss_curve.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    await adapter.send(
        ref.conversation, OutboundMessage(title="Job abc123 finished", image=png, level="success")
    )

    created = fake.find("POST", rf"/channels/{D.EXPERIMENTS}/messages")
    assert len(created) == 1, "one progress message per job"
    first = created[0]
    assert embed(first)["title"].startswith("Job abc123")
    assert str(first.payload["message_reference"]["message_id"]) == command["id"]
    button = first.payload["components"][0]["components"][0]
    assert (button["label"], button["custom_id"], button["style"]) == ("Cancel", "hammer:cancel:abc123", 4)
    edits = fake.find("PATCH", rf"/channels/{D.EXPERIMENTS}/messages/{ref.message_id}")
    assert len(edits) == 3
    assert "10/10" in embed(edits[-1])["fields"][0]["value"] and "100%" in embed(edits[-1])["description"]
    assert edits[-1].payload["components"] == []  # no Cancel once finished
    # follow-ups: a thread opened from the command message, the report inside it
    assert ref.conversation.thread == command["id"]
    assert fake.find("POST", rf"/channels/{D.EXPERIMENTS}/messages/{command['id']}/threads")
    report = fake.find("POST", rf"/channels/{command['id']}/messages")
    assert len(report) == 1 and [f[1] for f in report[0].files] == ["loss_curve.png"]
    assert embed(report[0])["image"]["url"] == "attachment://loss_curve.png"


async def test_slash_command_is_deferred_within_3s_then_followed_up(fake: FakeDiscord, bot: Any) -> None:
    adapter, inbox = bot
    it = await fake.slash("finetune", {"model": "demo-lora", "dataset": "demo", "options": "epochs=2"})
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage) and item.text == "finetune demo-lora demo epochs=2"
    [callback] = fake.callbacks(it)
    assert callback.payload["type"] == 5  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
    assert callback.t - fake.dispatched_at[int(it["id"])] < 3.0
    ref = await adapter.reply(item, OutboundMessage(title="Job abc123", text="queued"))
    [follow] = fake.followups(it)
    assert embed(follow)["title"] == "Job abc123"
    await adapter.edit(ref, OutboundMessage(title="Job abc123", text="running"))
    [edit] = fake.find("PATCH", rf"/webhooks/{D.APP}/{it['token']}/messages/{ref.message_id}")
    assert embed(edit)["description"] == "running"


async def test_edits_after_the_interaction_token_expired_go_through_the_channel(
    fake: FakeDiscord, bot: Any
) -> None:
    adapter, inbox = bot
    it = await fake.slash("jobs", {})
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage)
    ref = await adapter.reply(item, OutboundMessage(title="Jobs", text="none"))
    live, _ = adapter.inbound._live[int(it["id"])]
    adapter.inbound._live[int(it["id"])] = (live, 0.0)  # 15 minutes later
    await adapter.edit(ref, OutboundMessage(title="Jobs", text="one"))
    [edit] = fake.find("PATCH", rf"/channels/{D.EXPERIMENTS}/messages/{ref.message_id}")
    assert embed(edit)["description"] == "one"


async def test_a_thread_named_before_a_restart_is_opened_after_it(
    fake: FakeDiscord, bot: Any, tmp_path: Path
) -> None:
    adapter, inbox = bot
    command = await fake.say(".finetune demo-lora demo")
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage)
    ref = await adapter.reply(item, OutboundMessage(title="Job abc123"))
    restarted = adapter_for(tmp_path)  # knows nothing of the lazy thread
    await restarted.start(asyncio.Queue())
    try:
        await restarted.send(ref.conversation, OutboundMessage(title="Job abc123 finished"))
    finally:
        await restarted.stop()
    assert fake.find("POST", rf"/channels/{command['id']}/messages", status=404)
    assert fake.find("POST", rf"/channels/{D.EXPERIMENTS}/messages/{command['id']}/threads")
    [report] = fake.find("POST", rf"/channels/{command['id']}/messages")
    assert embed(report)["title"] == "Job abc123 finished"


async def test_slash_command_outside_configured_channels_is_refused_privately(
    fake: FakeDiscord, bot: Any
) -> None:
    _, inbox = bot
    it = await fake.slash("jobs", {}, channel=D.GENERAL)
    await fake.wait_for("POST", rf"/interactions/{it['id']}/.*/callback")
    [callback] = fake.callbacks(it)
    assert callback.payload["type"] == 4 and callback.payload["data"]["flags"] & EPHEMERAL
    assert "experiments" in callback.payload["data"]["content"]
    assert inbox.empty()


async def test_button_click_is_acknowledged_and_answered_ephemerally(fake: FakeDiscord, bot: Any) -> None:
    adapter, inbox = bot
    await fake.say(".finetune demo-lora demo")
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage)
    ref = await adapter.reply(
        item, OutboundMessage(title="Job abc123", buttons=(Button("cancel", "Cancel", "abc123", "danger"),))
    )
    it = await fake.click(fake.messages[int(ref.message_id)], "hammer:cancel:abc123", user=D.OTHER)
    click = await next_item(inbox)
    assert isinstance(click, Interaction)
    assert (click.action_id, click.value, click.actor.user_id) == ("cancel", "abc123", str(D.OTHER))
    assert click.message_id == ref.message_id
    assert [c.payload["type"] for c in fake.callbacks(it)] == [6]  # DEFERRED_UPDATE_MESSAGE
    await adapter.respond(
        click, OutboundMessage(text="Only the person who started job abc123 can cancel it.", level="error")
    )
    [answer] = fake.followups(it)
    assert answer.payload["flags"] & EPHEMERAL
    assert "Only the person" in embed(answer)["description"]


async def test_429_slows_edits_and_the_last_state_lands(fake: FakeDiscord, bot: Any) -> None:
    adapter, inbox = bot
    await fake.say(".finetune demo-lora demo")
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage)
    ref = await adapter.reply(item, OutboundMessage(title="Job abc123", text="step 0"))
    path = rf"/channels/{D.EXPERIMENTS}/messages/{ref.message_id}"
    fake.rate_limit("PATCH", path, times=2, retry_after=0.3)
    started = time.monotonic()
    await asyncio.gather(
        *(adapter.edit(ref, OutboundMessage(title="Job abc123", text=f"step {i}")) for i in range(1, 21))
    )
    patches = fake.find("PATCH", path, status=None)
    assert [p.status for p in patches[:2]] == [429, 429]
    assert patches[1].t - patches[0].t >= 0.25 and patches[2].t - patches[1].t >= 0.25
    assert time.monotonic() - started >= 0.55
    ok = [p for p in patches if p.status == 200]
    assert len(ok) < 20, "edits that waited behind a 429 are coalesced"
    assert embed(ok[-1])["description"] == "step 20"
    assert fake.messages[int(ref.message_id)]["embeds"][0]["description"] == "step 20"


async def test_429_beyond_discord_py_retries_is_retried_by_the_adapter(fake: FakeDiscord, bot: Any) -> None:
    adapter, inbox = bot
    await fake.say(".jobs")
    item = await next_item(inbox)
    assert isinstance(item, ChatMessage)
    ref = await adapter.reply(item, OutboundMessage(text="one"))
    path = rf"/channels/{D.EXPERIMENTS}/messages/{ref.message_id}"
    fake.rate_limit("PATCH", path, times=6, retry_after=0.01)  # discord.py itself tries 5 times
    await adapter.edit(ref, OutboundMessage(text="final"))
    assert [p.status for p in fake.find("PATCH", path, status=None)] == [429] * 6 + [200]
    assert fake.messages[int(ref.message_id)]["embeds"][0]["description"] == "final"


async def test_slash_commands_registered_with_typed_options_and_autocomplete(
    fake: FakeDiscord, bot: Any
) -> None:
    names = {c["name"]: c for c in fake.commands["global"]}
    assert set(names) == {"finetune", "infer", "plan", "jobs", "status", "logs", "cancel", "help"}
    model = next(o for o in names["finetune"]["options"] if o["name"] == "model")
    assert model["type"] == 3 and model["required"] and model["autocomplete"]
    it = await fake.interact(
        4,
        {
            "id": "1",
            "name": "finetune",
            "type": 1,
            "options": [{"name": "model", "type": 3, "value": "qwen-7", "focused": True}],
        },
    )
    await fake.wait_for("POST", rf"/interactions/{it['id']}/.*/callback")
    [callback] = fake.callbacks(it)
    assert callback.payload["type"] == 8
    choices = [c["value"] for c in callback.payload["data"]["choices"]]
    assert "qwen-7b-lora" in choices and all("qwen-7" in c for c in choices)


# -- start-up problems -------------------------------------------------------------------------
async def test_wrong_token_says_what_to_do(fake: FakeDiscord, tmp_path: Path) -> None:
    fake.token = "another-token"
    adapter = adapter_for(tmp_path)
    with pytest.raises(DiscordSetupError) as err:
        await adapter.start(asyncio.Queue())
    assert "401" in err.value.cause and "Reset Token" in err.value.fix
    [check] = await adapter.check()
    assert not check.ok and "rejected the bot token" in check.what and "Reset Token" in check.fix


async def test_missing_message_content_intent_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = await FakeDiscord(token="token-value", message_content_enabled=False).start()
    fake.install(monkeypatch)
    try:
        adapter = adapter_for(tmp_path)
        with pytest.raises(DiscordSetupError) as err:
            await adapter.start(asyncio.Queue())
        assert "4014" in err.value.cause and "MESSAGE CONTENT INTENT" in err.value.fix
    finally:
        await fake.close()


async def test_channel_the_bot_cannot_post_in_is_reported(fake: FakeDiscord, tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, channels=["experiments", "readonly", "no-such-channel"])
    await adapter.start(asyncio.Queue())
    try:
        problems = {c.what: c for c in adapter.channel_problems}
        assert len(problems) == 2
        readonly = next(c for w, c in problems.items() if "#readonly" in w)
        assert "Send Messages" in readonly.what and "Send Messages" in readonly.fix
        checks = await adapter.check()
        assert [c.ok for c in checks if "#experiments" in c.what] == [True]
        assert not next(c for c in checks if "no-such-channel" in c.what).ok
    finally:
        await adapter.stop()


# -- the whole gateway -----------------------------------------------------------------------------
DISCORD_TOML = """
[chat.discord]
token = "env:DISCORD_BOT_TOKEN"
channels = ["experiments"]
guild_ready_timeout = 0.05
edit_interval = 0.05
role_map = { "ML Admins" = "admin" }
"""


@pytest.fixture
async def gateway(fake: FakeDiscord, make_hammer: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", fake.token)

    async def build(extra: str = "[cloud.fake]\nsteps = 10\ninterval = 0.02\n") -> Any:
        hammer = await make_hammer(DISCORD_TOML + extra, web=False)
        assert "discord" in hammer.chat, hammer.problems.items
        return hammer

    return build


async def only_job(hammer: Any) -> Any:
    await wait_for(lambda: hammer.store.list_jobs(), timeout=10)
    [job] = await hammer.store.list_jobs()
    return job


async def until_ended(hammer: Any, job_id: str, within: float = 20) -> JobState:
    async def ended() -> bool:
        j = await hammer.store.get_job(job_id)
        return j is not None and j.state.terminal

    await wait_for(ended, timeout=within)
    return (await hammer.store.get_job(job_id)).state


async def test_finetune_message_runs_a_job_with_progress_and_report(fake: FakeDiscord, gateway: Any) -> None:
    hammer = await gateway()
    command = await fake.say(".finetune demo-lora demo")
    job = await only_job(hammer)
    assert await until_ended(hammer, job.id) == JobState.SUCCEEDED
    report = await fake.wait_for("POST", rf"/channels/{command['id']}/messages")  # in the job's thread
    progress = fake.find("POST", rf"/channels/{D.EXPERIMENTS}/messages")
    assert len(progress) == 1 and job.id in embed(progress[0])["title"]
    progress_id = progress[0].response["id"]
    edits = fake.find("PATCH", rf"/channels/{D.EXPERIMENTS}/messages/\d+")
    assert edits and {e.path.rsplit("/", 1)[1] for e in edits} == {progress_id}
    assert embed(edits[-1])["color"] == 0x57F287  # the last edit shows the final state
    assert [f[1] for f in report[0].files] == ["loss_curve.png"]


async def test_429s_during_a_job_delay_progress_but_lose_nothing(fake: FakeDiscord, gateway: Any) -> None:
    hammer = await gateway("[cloud.fake]\nsteps = 30\ninterval = 0.02\n")
    path = rf"/channels/{D.EXPERIMENTS}/messages/\d+"
    fake.rate_limit("PATCH", path, times=3, retry_after=0.25)
    command = await fake.say(".finetune demo-lora demo")
    job = await only_job(hammer)
    assert await until_ended(hammer, job.id) == JobState.SUCCEEDED
    await fake.wait_for("POST", rf"/channels/{command['id']}/messages")  # the report, after the last edit
    patches = fake.find("PATCH", path, status=None)
    assert [p.status for p in patches[:3]] == [429, 429, 429]
    assert patches[3].t - patches[0].t >= 0.7
    final = [p for p in patches if p.status == 200][-1]
    assert embed(final)["color"] == 0x57F287 and "30/30" in str(embed(final)["fields"])


async def test_malformed_command_gets_error_and_usage(fake: FakeDiscord, gateway: Any) -> None:
    await gateway()
    await fake.say(".finetune demo-lora")
    [answer] = await fake.wait_for("POST", rf"/channels/{D.EXPERIMENTS}/messages")
    e = embed(answer)
    assert "DATASET" in e["title"] and "Usage: .finetune MODEL DATASET" in e["description"]
    assert e["color"] == 0xED4245


async def test_slash_finetune_deferred_and_followed_up_by_the_gateway(
    fake: FakeDiscord, gateway: Any
) -> None:
    hammer = await gateway()
    it = await fake.slash("finetune", {"model": "demo-lora", "dataset": "demo"})
    follow = await fake.wait_for("POST", rf"/webhooks/{D.APP}/{it['token']}")
    [callback] = fake.callbacks(it)
    assert callback.payload["type"] == 5 and callback.t - fake.dispatched_at[int(it["id"])] < 3.0
    job = await only_job(hammer)
    assert job.id in embed(follow[0])["title"]
    assert await until_ended(hammer, job.id) == JobState.SUCCEEDED
    progress_id = follow[0].response["id"]
    # the report goes to a thread opened from the progress message, after its last edit
    [report] = await fake.wait_for("POST", rf"/channels/{progress_id}/messages")
    assert [f[1] for f in report.files] == ["loss_curve.png"]
    edits = fake.find("PATCH", rf"/webhooks/{D.APP}/{it['token']}/messages/{progress_id}")
    assert edits and embed(edits[-1])["color"] == 0x57F287


async def test_cancel_button_by_requester_cancels_by_someone_else_is_refused(
    fake: FakeDiscord, gateway: Any
) -> None:
    hammer = await gateway("[cloud.fake]\nsteps = 400\ninterval = 0.05\n")
    await fake.say(".finetune demo-lora demo")
    job = await only_job(hammer)
    [progress] = await fake.wait_for("POST", rf"/channels/{D.EXPERIMENTS}/messages")
    message = fake.messages[int(progress.response["id"])]
    stranger = await fake.click(message, f"hammer:cancel:{job.id}", user=D.OTHER)
    [refusal] = await fake.wait_for("POST", rf"/webhooks/{D.APP}/{stranger['token']}")
    assert refusal.payload["flags"] & EPHEMERAL and "Only the person" in embed(refusal)["title"]
    assert not (await hammer.store.get_job(job.id)).state.terminal
    await fake.click(message, f"hammer:cancel:{job.id}")
    assert await until_ended(hammer, job.id, within=15) == JobState.CANCELLED


async def test_a_failing_discord_adapter_leaves_the_others_running(
    fake: FakeDiscord, make_hammer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "wrong-token")
    hammer = await make_hammer(DISCORD_TOML, web=True)
    assert "discord" not in hammer.chat and "web" in hammer.chat
    [(where, what)] = [p for p in hammer.problems.items if p[0] == "chat.discord"]
    assert "Reset Token" in what


async def test_hammer_doctor_lists_discord_checks_with_fixes(
    fake: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.config import parse_settings
    from gateway.doctor import run_checks
    from tests.conftest import hammer_toml

    monkeypatch.setenv("DISCORD_BOT_TOKEN", fake.token)
    toml = DISCORD_TOML.replace('channels = ["experiments"]', 'channels = ["experiments", "readonly"]')
    results = await run_checks(parse_settings(hammer_toml(tmp_path / "data", toml, web=False)))
    discord_lines = [(c.ok, c.what, c.fix) for c in results if c.what.startswith("chat.discord")]
    assert any(ok and "token is valid" in what for ok, what, _ in discord_lines)
    [(ok, what, fix)] = [line for line in discord_lines if "#readonly" in line[1]]
    assert not ok and "Send Messages" in what and "Send Messages" in fix
