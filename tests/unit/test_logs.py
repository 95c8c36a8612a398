"""JSON logs, the audit log and job archives; secrets are redacted in every sink."""

from __future__ import annotations

import gzip
import io
import json
import logging
from pathlib import Path

import pytest

from gateway import logs
from gateway.commands import CommandError
from gateway.config import resolve_secret
from gateway.model import Actor, Conversation, Job, SandboxEvent
from tests.conftest import wait_for

SECRET = "xoxb-very-secret-token-42"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HAMMER_TEST_TOKEN", SECRET)
    assert resolve_secret("env:HAMMER_TEST_TOKEN") == SECRET  # registers it for redaction
    return SECRET


def test_gateway_log_is_json_lines_with_context_and_redacted(secret: str) -> None:
    buf = io.StringIO()
    logs.setup_logging("info", stream=buf)
    logging.getLogger("hammer.test").info("token is %s", secret, extra={"job_id": "j1", "actor": "web:a",
                                                                        "platform": "web"})
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert line["msg"] == "token is ***"
    assert {"ts", "level", "logger", "msg", "job_id", "actor", "platform"} <= set(line)
    assert secret not in buf.getvalue()


def test_audit_and_archive_are_redacted(secret: str, tmp_path: Path) -> None:
    audit = logs.AuditLog(tmp_path / "audit.jsonl")
    audit.record("command", text=f".infer demo prompt={secret}")
    assert secret not in (tmp_path / "audit.jsonl").read_text()
    assert audit.read()[0]["text"] == ".infer demo prompt=***"
    path = logs.write_archive(tmp_path / "a.jsonl.gz", [{"type": "log", "line": f"Authorization: {secret}"}])
    text = gzip.open(path, "rt").read()
    assert secret not in text and "***" in text


def test_archive_key_is_dated() -> None:
    assert logs.archive_key("abc", 1796046176.0) == "archive/2026/11/abc.jsonl.gz"


async def test_secrets_never_reach_any_sink_of_a_running_gateway(make_hammer, secret: str) -> None:
    hammer = await make_hammer()
    actor, conv = Actor("web", "alice"), Conversation("web", "main")
    with pytest.raises(CommandError):
        await hammer.dispatch.execute(f".fintune {secret}", actor, conv)
    job = await hammer.dispatch.execute(".fakejob", actor, conv)
    assert isinstance(job, Job)
    await wait_for(lambda: job.state.terminal)
    # a runner line that echoes the token (as a misbehaving script might)
    await hammer.store.add_event(job, SandboxEvent(job.last_seq + 1, "log", {"line": f"token={secret}"}))
    await hammer.orchestrator._archive(job)
    assert secret not in (hammer.data_dir / "audit.jsonl").read_text()
    archive = next((hammer.settings.artifacts_dir / "archive").rglob(f"{job.id}.jsonl.gz"))
    text = gzip.open(archive, "rt").read()
    assert secret not in text and "token=***" in text
    records = [json.loads(x) for x in text.splitlines()]
    assert records[0]["type"] == "job" and any(r.get("type") == "progress" for r in records)
