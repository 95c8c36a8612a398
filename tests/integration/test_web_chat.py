"""The web chat end to end, against a real gateway on 127.0.0.1: commands over the
page's WebSocket, replies, live progress edits, buttons, and a headless browser."""

from __future__ import annotations

import shutil
from typing import Any

import aiohttp
import pytest

from tests.conftest import wait_for
from tests.webclient import Page


async def open_page(web_user: Any, hammer: Any, name: str, role: str = "member") -> Page:
    """Sign `name` in (an account made for the test) and open the chat page as them."""
    user = await web_user(hammer, name, role)
    page = await user.page()
    page.user = user  # type: ignore[attr-defined]
    return page


def fields(message: dict[str, Any]) -> dict[str, str]:
    return dict(message["msg"]["fields"])


async def test_command_reply_and_live_progress_over_the_websocket(make_hammer, web_user) -> None:
    hammer = await make_hammer("[cloud.fake]\nsteps = 20\ninterval = 0.05\n")
    url = hammer.services.public_url
    alice = await open_page(web_user, hammer, "alice")
    watcher = await open_page(web_user, hammer, "bob")  # someone else in the room sees it too
    session = alice.user.session
    async with session.get(url + "/") as resp:
        assert resp.status == 200 and "app.js" in await resp.text()
    await alice.send(type="command", text=".fakejob")
    await wait_for(lambda: any(m["msg"].get("title", "").endswith("finished") for m in alice.bot_messages()), 20)

    command_id = next(f["message"]["id"] for f in alice.of("message") if f["message"]["kind"] == "user")
    created = [f["message"] for f in alice.of("message") if f["message"]["kind"] == "bot"]
    progress_id = created[0]["id"]
    assert created[0]["thread"] == command_id  # the job's messages are threaded under the command
    edits = [f["message"] for f in alice.of("edit") if f["message"]["id"] == progress_id]
    assert len(edits) >= 2
    steps = [fields(e).get("Step") for e in edits if "Step" in fields(e)]
    assert steps and steps[-1] == "20/20"
    assert fields(edits[-1])["Phase"] == "succeeded"
    assert edits[-1]["msg"]["buttons"] == []  # no Cancel once it ended
    report = created[-1]
    assert report["thread"] == command_id and "Final loss" in fields(report)
    assert fields(report)["Adapter"].startswith(url + "/artifacts/jobs/")
    async with session.get(fields(report)["Adapter"]) as resp:
        assert resp.status == 200 and "adapter_config.json" in await resp.text()
    async with session.get(url + report["msg"]["image"]) as resp:
        assert resp.status == 200 and (await resp.read()).startswith(b"\x89PNG")
    assert any(m["id"] == progress_id for m in watcher.bot_messages())


async def test_cancel_button_only_works_for_the_requester(make_hammer, web_user) -> None:
    hammer = await make_hammer("[cloud.fake]\nsteps = 400\ninterval = 0.05\n")
    alice = await open_page(web_user, hammer, "alice")
    mallory = await open_page(web_user, hammer, "mallory")
    await alice.send(type="command", text=".fakejob")
    await wait_for(lambda: any(m["msg"]["buttons"] for m in alice.bot_messages()), 10)
    progress = next(m for m in alice.bot_messages() if m["msg"]["buttons"])
    button = progress["msg"]["buttons"][0]
    assert button["action_id"] == "cancel"
    await mallory.send(type="click", action_id="cancel", value=button["value"], message_id=progress["id"])
    await wait_for(lambda: mallory.of("ephemeral"), 5)
    refusal = mallory.of("ephemeral")[0]["message"]["msg"]
    assert "Only the person who started" in refusal["title"] + refusal["text"]
    assert not alice.of("ephemeral")  # the refusal is private
    await alice.send(type="click", action_id="cancel", value=button["value"], message_id=progress["id"])
    await wait_for(lambda: any(fields(m).get("Phase") == "cancelled" for m in alice.bot_messages()), 10)
    job = await hammer.store.get_job(button["value"])
    assert job.state.value == "cancelled"


async def test_an_expensive_job_waits_until_an_admin_clicks_approve(make_hammer, web_user) -> None:
    from tests.unit.test_core_remote import GPU_CATALOG
    hammer = await make_hammer(GPU_CATALOG + "[policy]\nrequire_approval_over_usd = 0.01\n")
    alice = await open_page(web_user, hammer, "alice")
    boss = await open_page(web_user, hammer, "boss", role="admin")
    await alice.send(type="command", text=".finetune qwen-7b-lora alpaca-zh#1000")
    await wait_for(lambda: any(m["msg"]["buttons"] for m in alice.bot_messages()), 10)
    card = next(m for m in alice.bot_messages() if m["msg"]["buttons"])
    assert fields(card)["Phase"] == "pending approval" and "estimated $" in card["msg"]["text"]
    assert [b["action_id"] for b in card["msg"]["buttons"]] == ["approve", "deny"]
    job_id = card["msg"]["buttons"][0]["value"]
    await alice.send(type="click", action_id="approve", value=job_id, message_id=card["id"])
    await wait_for(lambda: alice.of("ephemeral"), 5)
    assert "admin" in alice.of("ephemeral")[0]["message"]["msg"]["title"]
    assert (await hammer.store.get_job(job_id)).state.value == "pending_approval"
    await boss.send(type="click", action_id="approve", value=job_id, message_id=card["id"])
    await wait_for(lambda: any(m["id"] == card["id"] and fields(m).get("Phase") == "succeeded"
                               for m in alice.bot_messages()), 20)
    assert (await hammer.store.get_job(job_id)).state.value == "succeeded"


async def test_malformed_command_gets_error_and_usage(make_hammer, web_user) -> None:
    hammer = await make_hammer()
    page = await open_page(web_user, hammer, "alice")
    await page.send(type="command", text=".fakejob mode=sideways")
    await wait_for(lambda: page.bot_messages(), 5)
    msg = page.bot_messages()[0]["msg"]
    assert msg["level"] == "error" and "sideways" in msg["title"] and "Usage: .fakejob" in msg["text"]
    await page.send(type="command", text=".help")
    await wait_for(lambda: len(page.bot_messages()) >= 2, 5)
    assert ".finetune MODEL DATASET" in page.bot_messages()[1]["msg"]["text"]
    await page.ws.send_str("not json")
    await wait_for(lambda: page.of("ephemeral"), 5)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
async def test_a_person_in_a_browser_runs_a_job_and_watches_it(make_hammer, tmp_path) -> None:
    from playwright.async_api import async_playwright
    hammer = await make_hammer("[cloud.fake]\nsteps = 30\ninterval = 0.05\n")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=_chromium(), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = await browser.new_page()
            invite = await hammer.accounts.add("alice", "member")
            await page.goto(hammer.services.public_url + "/login?token=" + invite)
            await page.click("form button")  # "Sign in": the one-time link becomes a session cookie
            await page.wait_for_selector("#composer:not([hidden])", timeout=10_000)
            await page.fill("#text", ".fakejob")
            await page.press("#text", "Enter")
            await page.wait_for_selector("text=Job", timeout=10_000)
            await page.wait_for_selector(".card.success h3:has-text('finished')", timeout=20_000)
            await page.screenshot(path=str(tmp_path / "web-chat.png"))
            text = await page.inner_text("#log")
            assert "30/30" in text and "Final loss" in text and "succeeded" in text
        finally:
            await browser.close()


async def test_uploading_a_dataset_makes_it_usable_as_upload_ref(make_hammer, web_user) -> None:
    hammer = await make_hammer()
    url = hammer.services.public_url
    rows = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    page = await open_page(web_user, hammer, "alice")
    user = page.user
    form = aiohttp.FormData()
    form.add_field("file", rows * 3, filename="faq.jsonl", content_type="application/jsonl")
    async with user.session.post(url + "/web/upload", data=form, headers=user.headers()) as resp:
        assert resp.status == 200 and (await resp.json())["ref"] == "upload:faq.jsonl"
    await wait_for(lambda: any("faq.jsonl" in m["msg"]["title"] for m in page.bot_messages()), 5)
    assert (hammer.data_dir / "uploads" / "web-alice" / "faq.jsonl").read_bytes() == rows * 3
    planned = await hammer.planner.plan(hammer.commands.parse(".finetune demo-lora upload:faq.jsonl", *_who()))
    assert any(m.target.startswith("/data/") for m in planned.spec.mounts)
    bad = aiohttp.FormData()
    bad.add_field("file", b"x", filename="../../evil.sh")
    async with user.session.post(url + "/web/upload", data=bad, headers=user.headers()) as resp:
        assert resp.status == 400 and "jsonl" in (await resp.json())["error"]


def _who() -> tuple[Any, Any]:
    from gateway.model import Actor, Conversation
    return Actor("web", "alice"), Conversation("web", "main")


async def test_the_room_and_its_progress_message_survive_a_gateway_restart(make_hammer, web_user, tmp_path) -> None:
    data = tmp_path / "shared"
    slow = "[cloud.fake]\nsteps = 40\ninterval = 0.05\n"
    first = await make_hammer(slow, data_dir=data)
    page = await open_page(web_user, first, "alice")
    await page.send(type="command", text=".fakejob")
    await wait_for(lambda: any("Step" in fields(m) for m in page.bot_messages()), 10)
    progress_id = page.bot_messages()[0]["id"]
    await page.ws.close()
    await first.stop()

    second = await make_hammer(slow, data_dir=data)
    page = await open_page(web_user, second, "alice")
    history = page.of("history")[0]["messages"]
    assert [m["kind"] for m in history][:2] == ["user", "bot"] and history[1]["id"] == progress_id
    await wait_for(lambda: any(m["msg"].get("title", "").endswith("finished") for m in page.bot_messages()), 20)
    finals = [f["message"] for f in page.of("edit") if f["message"]["id"] == progress_id]
    assert finals and fields(finals[-1])["Phase"] == "succeeded"  # edited in place, not re-posted
    created = [f["message"]["id"] for f in page.of("message")]
    assert progress_id not in created and len(created) == 1  # only the report is new
    await second.stop()

    third = await make_hammer(slow, data_dir=data)  # a later visitor sees it all, images included
    page = await open_page(web_user, third, "bob")
    history = page.of("history")[0]["messages"]
    report = next(m for m in history if m["msg"].get("title", "").endswith("finished"))
    async with page.user.session.get(third.services.public_url + report["msg"]["image"]) as resp:
        assert resp.status == 200
