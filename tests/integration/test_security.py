"""The web door and the artifact path, tried as an attacker would (issue 10): one test per
finding, against a real gateway on 127.0.0.1 (and headless Chromium for the cross-site one)."""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.model import Actor, Conversation
from tests.conftest import wait_for
from tests.integration.test_web_chat import fields, open_page

ROOT = Path(__file__).resolve().parents[2]
ROWS = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


def _form(data: bytes, filename: str = "faq.jsonl") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return form


# -- 1. links out of a job's output ---------------------------------------------------------------

async def test_1_a_loss_curve_that_links_to_a_host_file_is_never_served(make_hammer, web_user) -> None:
    hammer = await make_hammer()
    page = await open_page(web_user, hammer, "alice")
    await page.send(type="command", text=".fakejob mode=links")
    await wait_for(lambda: any(m["msg"].get("title", "").endswith("finished") for m in page.bot_messages()), 20)
    report = next(m for m in page.bot_messages() if m["msg"].get("title", "").endswith("finished"))
    assert not report["msg"].get("image")  # no loss curve: it was a link to /etc/hostname
    async with page.user.session.get(fields(report)["Adapter"]) as resp:
        listing = await resp.text()
    assert "adapter_config.json" in listing and "leak.txt" not in listing and "etc" not in listing


# -- 2. cross-site WebSocket hijacking, CSRF, loopback as a credential, DNS rebinding -------------

async def test_2_other_origins_hosts_and_content_types_are_refused(make_hammer, web_user) -> None:
    hammer = await make_hammer("[cloud.fake]\nsteps = 400\ninterval = 0.05\n")
    url = hammer.services.public_url
    alice = await web_user(hammer, "alice")
    s = alice.session  # Alice's browser, cookie and all: the attacker's page rides on it
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await s.ws_connect(url + "/ws", headers={"Origin": "http://evil.example"})
    assert info.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await s.ws_connect(url + "/ws")  # no Origin at all: not a browser on our page
    async with s.post(url + "/api/commands", data='{"text": ".fakejob"}', headers={
            "Origin": "http://evil.example", "Content-Type": "text/plain"}) as resp:
        assert resp.status == 403
    async with s.post(url + "/api/commands", data='{"text": ".fakejob"}',
                      headers=alice.headers(**{"Content-Type": "text/plain"})) as resp:
        assert resp.status == 415  # JSON APIs take JSON only (no simple-request forms)
    async with s.post(url + "/web/upload", data=_form(ROWS), headers={"Origin": "http://evil.example"}) as resp:
        assert resp.status == 403
    async with s.post(url + "/web/upload", data=_form(ROWS), headers={"Origin": url}) as resp:
        assert resp.status == 403  # our origin, but no CSRF token
    assert await hammer.store.list_jobs() == [] and not (hammer.data_dir / "uploads" / "web-alice").exists()

    job = await hammer.dispatch.execute(".fakejob", Actor("web", "alice", "alice", ("member",)),
                                        Conversation("web", "main"))
    async with aiohttp.ClientSession() as anonymous:  # loopback is no credential
        async with anonymous.post(f"{url}/api/jobs/{job.id}/cancel") as resp:
            assert resp.status == 401
        async with anonymous.get(url + "/api/jobs", headers={"Host": "evil.example:80"}) as resp:
            assert resp.status == 421  # a rebinding name gets nothing
    async with s.get(url + "/api/jobs", headers={"Host": "rebind.attacker.test"}) as resp:
        assert resp.status == 421
    assert not (await hammer.store.get_job(job.id)).state.terminal


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run does)")
async def test_2_a_page_from_another_origin_gets_nothing_in_a_real_browser(make_hammer, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright
    hammer = await make_hammer()
    url = hammer.services.public_url
    evil_page = f"""<!doctype html><html><body><form id="f" method="post" action="{url}/api/commands"
      enctype="text/plain"><input name='{{"text": ".fakejob", "x": "' value='"}}'></form><script>
    window.results = {{}};
    const ws = new WebSocket("{url.replace('http', 'ws')}/ws");
    ws.onmessage = (e) => {{ window.results.ws = (window.results.ws || "") + e.data; }};
    ws.onerror = () => {{ window.results.wsError = true; }};
    ws.onopen = () => {{ window.results.wsOpen = true;
                         ws.send(JSON.stringify({{type: "command", text: ".fakejob"}})); }};
    const body = new FormData(); body.append("file", new Blob(['{ROWS.decode().strip()}']), "faq.jsonl");
    fetch("{url}/web/upload", {{method: "POST", body, credentials: "include"}})
      .then(r => {{ window.results.upload = r.status; }}).catch(() => {{ window.results.upload = "blocked"; }});
    setTimeout(() => document.getElementById("f").submit(), 3000);
    </script></body></html>"""

    async def serve_evil(request: web.Request) -> web.Response:
        return web.Response(text=evil_page, content_type="text/html")

    evil = web.Application()
    evil.router.add_get("/", serve_evil)
    runner = web.AppRunner(evil)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    evil_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                               args=["--no-sandbox", "--disable-gpu", "--disable-quic",
                                                     "--disable-background-networking", "--no-first-run"])
            try:
                context = await browser.new_context()
                victim = await context.new_page()  # the operator is signed in, in the same browser
                invite = await hammer.accounts.add("operator", "admin")
                await victim.goto(url + "/login?token=" + invite)
                await victim.click("form button")
                await victim.wait_for_selector("#composer:not([hidden])", timeout=10_000)
                attacker = await context.new_page()
                await attacker.goto(evil_url)
                await asyncio.sleep(2)  # the WebSocket and the fetch have been tried
                results = await attacker.evaluate("window.results")
                await asyncio.sleep(3)  # and the form post (it navigates the attacker's page away)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
    assert not results.get("ws")  # no room history reached the other site
    assert results.get("upload") in (403, "blocked")
    assert await hammer.store.list_jobs() == []  # neither the socket nor the form started anything
    assert not (hammer.data_dir / "uploads" / "web-operator").exists()
    history = (hammer.data_dir / "web" / "history.jsonl")
    assert not history.exists() or ".fakejob" not in history.read_text()  # the room shows nothing from it


# -- 3. identities are accounts, not names ------------------------------------------------------------

async def test_3_bob_cannot_cancel_alices_job_by_any_route_and_an_admin_can(make_hammer, web_user) -> None:
    hammer = await make_hammer("[cloud.fake]\nsteps = 400\ninterval = 0.05\n")
    url = hammer.services.public_url
    alice = await open_page(web_user, hammer, "alice")
    bob = await open_page(web_user, hammer, "bob")
    await bob.send(type="hello", name="alice")  # a name typed into the page confers nothing
    await alice.send(type="command", text=".fakejob")
    await wait_for(lambda: any(m["msg"]["buttons"] for m in alice.bot_messages()), 10)
    card = next(m for m in alice.bot_messages() if m["msg"]["buttons"])
    job_id = card["msg"]["buttons"][0]["value"]
    await bob.send(type="click", action_id="cancel", value=job_id, message_id=card["id"])
    await bob.send(type="command", text=f".cancel {job_id}")
    bob_token = await hammer.accounts.api_token("bob")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {bob_token}"}) as api:
        async with api.post(f"{url}/api/jobs/{job_id}/cancel") as resp:
            assert resp.status == 409 and "Only the person" in (await resp.json())["error"]["message"]
        async with api.post(f"{url}/api/commands", json={"text": f".cancel {job_id}", "user": "alice"}) as resp:
            assert resp.status == 422  # `user` in the body is ignored: the token says who it is
    await wait_for(lambda: len(bob.of("ephemeral")) >= 1, 5)
    assert not (await hammer.store.get_job(job_id)).state.terminal
    audit = [r for r in hammer.audit.read() if r.get("kind") == "command" and r.get("verb") == "cancel"]
    assert {r["actor"] for r in audit} == {"web:bob"}
    boss = await open_page(web_user, hammer, "boss", role="admin")
    await boss.send(type="click", action_id="cancel", value=job_id, message_id=card["id"])
    await wait_for(lambda: any(fields(m).get("Phase") == "cancelled" for m in alice.bot_messages()), 10)


async def test_3_accounts_links_sessions_and_tokens(make_hammer, tmp_path: Path) -> None:
    hammer = await make_hammer()
    url = hammer.services.public_url
    invite = await hammer.accounts.add("carol", "trainer")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(url + "/login", data={"token": invite}, headers={"Origin": url},
                          allow_redirects=False) as resp:
            assert resp.status == 303
            cookie = resp.cookies["hammer_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with s.get(url + "/web/session") as resp:
            assert (await resp.json())["role"] == "trainer"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(url + "/login", data={"token": invite}, headers={"Origin": url}) as resp:
            assert resp.status == 403 and "not valid any more" in await resp.text()  # one time only
    await hammer.accounts.reset("carol")
    assert await hammer.accounts.from_cookie(cookie.value) is None  # a reset signs out everywhere
    env = {**os.environ, "HAMMER_CONFIG": str(_config_of(hammer, tmp_path))}

    def users(*args: str) -> subprocess.CompletedProcess[str]:  # the CLI, while the gateway runs
        return subprocess.run([sys.executable, "-m", "gateway.cli", "users", *args], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=60)

    add = await asyncio.to_thread(users, "add", "dave", "--role", "member")
    assert add.returncode == 0 and "/login?token=" in add.stdout, add.stderr
    listed = await asyncio.to_thread(users, "list")
    assert "dave" in listed.stdout and "carol" in listed.stdout and "admin" in listed.stdout
    dup = await asyncio.to_thread(users, "add", "dave")
    assert dup.returncode == 2 and "already an account" in dup.stderr and "Traceback" not in dup.stderr


def _config_of(hammer: Any, tmp_path: Path) -> Path:
    path = tmp_path / "same-data.toml"
    path.write_text(f'[gateway]\ndata_dir = "{hammer.data_dir}"\n')
    return path


async def test_3_first_start_makes_an_admin_and_the_cli_acts_as_it(make_hammer) -> None:
    hammer = await make_hammer()
    assert hammer.sign_in and "/login?token=" in hammer.sign_in
    assert [(a.name, a.role) for a in await hammer.accounts.list()] == [("admin", "admin")]
    token_file = hammer.data_dir / "operator.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    ident = await hammer.accounts.from_token(token_file.read_text().strip())
    assert ident is not None and ident.account.name == "admin"


# -- 4. secrets are redacted before anything is stored ---------------------------------------------------

async def test_4_a_canary_secret_appears_nowhere(make_hammer, web_user, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from gateway.logs import JsonFormatter
    from tests.fakes.slack import FakeSlack
    canary = f"xoxb-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("HAMMER_CANARY", canary)
    fake = await FakeSlack(bot_token=canary).start()
    log_file = tmp_path / "gateway.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        hammer = await make_hammer(
            '[cloud.fake]\nsteps = 3\ninterval = 0.01\n[cloud.fake.secrets]\nHF_TOKEN = "env:HAMMER_CANARY"\n'
            f'[chat.slack]\nbot_token = "env:HAMMER_CANARY"\napp_token = "env:HAMMER_CANARY_APP"\n'
            f'api_url = "{fake.api_url}"\n', data_dir=tmp_path / "data")
        page = await open_page(web_user, hammer, "alice")
        await page.send(type="command", text=".fakejob mode=leak")
        await wait_for(lambda: any(m["msg"].get("title", "").endswith("failed") for m in page.bot_messages()), 20)
        job = (await hammer.store.list_jobs())[0]
        assert job.error and "***" in job.error["message"]  # the error is there, the secret is not
        seen = [str(page.frames)]
        token = (hammer.data_dir / "operator.token").read_text().strip()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as api:
            for path in ("/api/jobs", f"/api/jobs/{job.id}", f"/api/jobs/{job.id}/events"):
                async with api.get(hammer.services.public_url + path) as resp:
                    seen.append(await resp.text())
            async with api.post(hammer.services.public_url + "/api/commands",
                                json={"text": f".logs {job.id}"}) as resp:
                seen.append(await resp.text())
        await wait_for(lambda: list((hammer.settings.artifacts_dir / "archive").rglob("*.jsonl.gz")), 10)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        await fake.stop()
    await hammer.stop()
    data = tmp_path / "data"
    for path in data.rglob("*"):
        if path.is_file() and "fake-cloud" not in path.parts:  # the job's own machine, not hammer's records
            raw = path.read_bytes()
            if path.name.endswith(".gz"):
                raw = gzip.decompress(raw)
            assert canary.encode() not in raw, f"the canary is in {path}"
    assert any("***" in text for text in seen)
    assert all(canary not in text for text in seen)
    assert canary not in log_file.read_text()
    assert fake.calls and all(canary not in str(call.args) for call in fake.calls)  # only as Slack's own token


# -- 5. job output is never active content on the chat's origin ------------------------------------------

async def test_5_artifacts_are_downloads_and_the_page_sends_a_strict_policy(make_hammer, web_user) -> None:
    hammer = await make_hammer()
    store = hammer.artifacts
    src = hammer.data_dir / "x.html"
    src.write_text("<script>alert(document.cookie)</script>")
    await store.put(src, "jobs/abc123/x.html")
    link = await store.url("jobs/abc123/x.html", 60)
    async with aiohttp.ClientSession() as anonymous:  # a signed link works without an account...
        async with anonymous.get(link) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/octet-stream"
            assert resp.headers["Content-Disposition"].startswith("attachment")
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        async with anonymous.get(link.replace("x.html", "y.html")) as resp:
            assert resp.status == 403  # ...for that key only
        async with anonymous.get(link.split("?")[0]) as resp:
            assert resp.status == 403
    expired = await store.url("jobs/abc123/x.html", -1)
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(expired) as resp:
            assert resp.status == 403 and "expired" in await resp.text()
    user = await web_user(hammer, "alice")
    async with user.session.get(hammer.services.public_url + "/") as resp:
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["X-Content-Type-Options"] == "nosniff"


# -- 6. uploads: one's own, whole, streamed, bounded ---------------------------------------------------------

async def test_6_concurrent_uploads_never_mix_and_nobody_replaces_anothers(make_hammer, web_user) -> None:
    hammer = await make_hammer()
    url = hammer.services.public_url
    alice = await web_user(hammer, "alice")
    bob = await web_user(hammer, "bob")
    bodies = [ROWS * (200 + i * 1000) for i in range(8)]

    async def upload(body: bytes) -> int:
        async with alice.session.post(url + "/web/upload", data=_form(body, "same.jsonl"),
                                      headers=alice.headers()) as resp:
            return resp.status

    statuses = await asyncio.gather(*(upload(b) for b in bodies))
    assert set(statuses) <= {200, 429} and 200 in statuses
    kept = (hammer.data_dir / "uploads" / "web-alice" / "same.jsonl").read_bytes()
    assert kept in bodies  # one whole upload, never a mix of two
    assert not list((hammer.data_dir / "uploads" / "web-alice").glob(".*partial"))
    async with bob.session.post(url + "/web/upload", data=_form(b'{"x": 1}\n', "same.jsonl"),
                                headers=bob.headers()) as resp:
        assert resp.status == 200
    assert (hammer.data_dir / "uploads" / "web-alice" / "same.jsonl").read_bytes() == kept  # Alice's is hers
    assert hammer.uploads.path(Actor("web", "bob"), "same.jsonl").read_bytes() == b'{"x": 1}\n'


async def test_6_an_upload_is_written_as_it_arrives(tmp_path: Path) -> None:
    from gateway import uploads
    folder = tmp_path / "u"
    seen: list[int] = []

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"x" * 100_000
            await asyncio.sleep(0)
            seen.append(sum(p.stat().st_size for p in folder.glob(".*partial")))

    name, size = await uploads.save_upload(folder, "big.jsonl", chunks())
    assert size == 500_000 and seen[-1] >= 400_000  # on disk while it still arrived, not held in memory


# -- 7. the history's compaction does not race the room -------------------------------------------------------

async def test_7_history_compaction_while_many_messages_arrive(tmp_path: Path) -> None:
    from adapters.chat.web_history import WebHistory
    history = WebHistory(tmp_path / "history.jsonl", keep=50)
    await asyncio.gather(*(history.put({"id": f"m{c}-{i}", "msg": {"text": "x" * 50}})
                           for c in range(3) for i in range(1500)))
    again = WebHistory(tmp_path / "history.jsonl", keep=50)
    again.load()
    assert len(again.records) == 50


# -- 8. a damaged database page: exit with a message, never hang -----------------------------------------------

def test_8_a_damaged_store_exits_non_zero_with_a_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "hammer.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE filler (x TEXT)")
    con.executemany("INSERT INTO filler VALUES (?)", [("y" * 1000,) for _ in range(300)])
    con.commit()
    con.close()
    raw = bytearray(db.read_bytes())
    raw[4096 * 3: 4096 * 3 + 200] = b"\xff" * 200  # one page in the middle
    db.write_bytes(bytes(raw))
    config = tmp_path / "c.toml"
    config.write_text(f'[gateway]\ndata_dir = "{data}"\n[http]\nport = 0\n[cloud.docker]\nenabled = false\n')
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "damaged" in r.stderr and "Traceback" not in r.stderr


# -- 9. a full disk: a clear answer, nothing half-written --------------------------------------------------------

async def test_9_a_full_disk_gets_a_clear_answer(make_hammer, web_user, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from gateway import logs, uploads
    hammer = await make_hammer()
    page = await open_page(web_user, hammer, "alice")

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(logs.AuditLog, "record", full)
    await page.send(type="command", text=".fakejob")
    await wait_for(lambda: any("disk is full" in m["msg"].get("title", "") for m in page.bot_messages()), 5)
    token = await hammer.accounts.api_token("alice")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as api:
        async with api.post(hammer.services.public_url + "/api/commands", json={"text": ".jobs"}) as resp:
            body = await resp.json()
            assert resp.status == 422 and body["error"]["code"] == "disk_full"
    monkeypatch.setattr(uploads.tempfile, "mkstemp", full)
    async with page.user.session.post(hammer.services.public_url + "/web/upload", data=_form(ROWS),
                                      headers=page.user.headers()) as resp:
        assert resp.status == 507 and "disk is full" in (await resp.json())["error"]
    assert await hammer.store.list_jobs() == []
    assert not list((hammer.data_dir / "uploads").rglob("*.jsonl"))


# -- 11. the small ones ---------------------------------------------------------------------------------------------

async def test_11_small_ones(make_hammer, web_user, tmp_path: Path) -> None:
    hammer = await make_hammer()
    url = hammer.services.public_url
    page = await open_page(web_user, hammer, "alice")
    await page.ws.send_str("[" * 3000 + "]" * 3000)  # deeply nested JSON
    await wait_for(lambda: page.of("ephemeral"), 5)
    assert not page.ws.closed
    await page.send(type="hello", name=None)
    await page.send(type="command", text=".jobs")
    await wait_for(lambda: any(m["msg"].get("title") == "Jobs" for m in page.bot_messages()), 5)
    assert all(m["author"] != "None" for m in (f["message"] for f in page.of("message")))
    nul = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.jsonl"\r\n\r\n' + ROWS
           + b"\r\n--B--\r\n")
    async with page.user.session.post(url + "/web/upload", data=nul, headers=page.user.headers(
            **{"Content-Type": "multipart/form-data; boundary=B"})) as resp:
        assert resp.status == 400 and "malformed" in (await resp.json())["error"]
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(url + "/healthz") as resp:
            assert await resp.json() == {"ok": True}  # nothing about the setup for strangers
    admin_token = (hammer.data_dir / "operator.token").read_text().strip()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin_token}"}) as api:
        async with api.get(url + "/healthz") as resp:
            assert "problems" in await resp.json()
    async with page.user.session.post(url + "/web/upload?name=boss", data=_form(ROWS, "n.jsonl"),
                                      headers=page.user.headers()) as resp:
        assert resp.status == 200
    await wait_for(lambda: any("n.jsonl" in m["msg"].get("title", "") for m in page.bot_messages()), 5)
    title = next(m["msg"]["title"] for m in page.bot_messages() if "n.jsonl" in m["msg"]["title"])
    assert title.startswith("alice uploaded")  # ?name= is not who uploaded


def test_11_a_command_being_handled_at_sigterm_is_answered(tmp_path: Path) -> None:
    """SIGTERM while a command waits in the queue: it is finished or answered, never dropped."""
    script = tmp_path / "drain.py"
    script.write_text(f'''
import asyncio, signal, sys
sys.path.insert(0, {str(ROOT)!r})
from gateway.app import Hammer
from gateway.config import parse_settings
from gateway.model import Actor, ChatMessage, Conversation
from tests.conftest import hammer_toml

async def main():
    h = Hammer(parse_settings(hammer_toml(__import__("pathlib").Path({str(tmp_path / "d")!r}))))
    await h.start()
    answers = []
    web = h.chat["web"]
    async def reply(message, msg):
        answers.append(msg.title)
    web.reply = reply
    for i in range(3):
        h.inbox.put_nowait(ChatMessage(Actor("web", "alice", "alice", ("member",)), Conversation("web", "main"),
                                       ".jobs", message_id=str(i)))
    await h.stop(drain_s=5)
    print("ANSWERS", len(answers), answers)

asyncio.run(main())
''')
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "ANSWERS 3" in r.stdout, r.stdout + r.stderr

