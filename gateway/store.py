"""Persistence: jobs, their state transitions and every sandbox event (SQLite + WAL).

Known secret values are redacted here, on the way in (gateway.logs), so no table ever
holds one. The orchestrator writes here *before* it acts: a transition is recorded, then announced;
an event is stored (unique per job and sequence number), then shown. That ordering is
what lets a restarted gateway resume exactly where the previous one stopped, with no
event lost or recorded twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.logs import redact, redact_obj
from gateway.model import (
    TRANSITIONS,
    Job,
    JobSpec,
    JobState,
    MessageRef,
    Placement,
    SandboxEvent,
)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, requester TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, spec TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_requester ON jobs(requester, state);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, type TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (job_id, seq));
CREATE TABLE IF NOT EXISTS transitions (
    job_id TEXT NOT NULL, ts REAL NOT NULL, from_state TEXT, to_state TEXT NOT NULL, reason TEXT);
-- web accounts and their credentials (gateway/webauth.py); secrets are stored hashed
CREATE TABLE IF NOT EXISTS web_users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, created_at REAL NOT NULL, signed_in_at REAL);
CREATE TABLE IF NOT EXISTS web_credentials (
    hash TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, created_at REAL NOT NULL,
    expires_at REAL, used_at REAL);
CREATE INDEX IF NOT EXISTS web_credentials_name ON web_credentials(name, kind);
"""
#: A job row plus its highest stored event (log events do not rewrite the row; see add_event).
_SELECT_JOBS = "SELECT *, (SELECT MAX(seq) FROM events e WHERE e.job_id = jobs.id) AS max_seq FROM jobs"
_MUTABLE = ("placement", "progress_ref", "last_seq", "progress", "loss_history", "error", "result",
            "artifacts", "samples", "started_at", "finished_at", "last_progress_at")


class StoreError(Exception):
    """The store cannot be used; the message says why and what to do."""


class IllegalTransition(Exception):
    pass


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> Store:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db: aiosqlite.Connection | None = None
        try:
            db = await aiosqlite.connect(self.path)
            db.row_factory = sqlite3.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            async with db.execute("PRAGMA quick_check") as cur:
                verdict = [r[0] for r in await cur.fetchall()]
            if verdict != ["ok"]:
                raise sqlite3.DatabaseError(f"damaged: {'; '.join(verdict[:3])}")
            await db.executescript(_SCHEMA)
            await db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            await db.commit()
        except sqlite3.DatabaseError as exc:
            if db is not None:
                await db.close()  # its worker thread would keep the process alive
            what = "is damaged" if "damaged" in str(exc) or "malformed" in str(exc) else "is not a hammer database"
            raise StoreError(
                f"{self.path} {what} ({exc}). Restore it from a backup, or move it aside (or point "
                "store.path at another file) and hammer will create a fresh one.") from None
        except OSError as exc:
            raise StoreError(f"cannot open {self.path}: {exc.strerror}; check store.path and its permissions") from None
        self._db = db
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    # -- jobs ------------------------------------------------------------------------
    async def create_job(self, spec: JobSpec, state: JobState = JobState.QUEUED) -> Job:
        now = time.time()
        job = Job(spec=spec, state=state, created_at=now, updated_at=now)
        await self.db.execute(
            "INSERT INTO jobs (id, state, requester, created_at, updated_at, spec, data) VALUES (?,?,?,?,?,?,?)",
            (spec.id, state.value, job.requester_key, now, now, json.dumps(redact_obj(spec.to_dict()), sort_keys=True),
             _data_json(job)))
        await self.db.execute("INSERT INTO transitions VALUES (?,?,?,?,?)",
                              (spec.id, now, None, state.value, "created"))
        await self.db.commit()
        return job

    async def save(self, job: Job) -> None:
        job.updated_at = time.time()
        await self.db.execute("UPDATE jobs SET state=?, updated_at=?, data=? WHERE id=?",
                              (job.state.value, job.updated_at, _data_json(job), job.id))
        await self.db.commit()

    async def transition(self, job: Job, new: JobState, reason: str = "") -> None:
        """Persist `job` in state `new`; refuses transitions DESIGN.md does not allow."""
        old = job.state
        if new not in TRANSITIONS[old]:
            raise IllegalTransition(f"job {job.id}: {old} -> {new} is not allowed")
        job.state = new
        if new.terminal:
            job.finished_at = job.finished_at or time.time()
        job.updated_at = time.time()
        await self.db.execute("UPDATE jobs SET state=?, updated_at=?, data=? WHERE id=?",
                              (new.value, job.updated_at, _data_json(job), job.id))
        await self.db.execute("INSERT INTO transitions VALUES (?,?,?,?,?)",
                              (job.id, job.updated_at, old.value, new.value, redact(reason)))
        await self.db.commit()

    async def get_job(self, job_id: str) -> Job | None:
        async with self.db.execute(_SELECT_JOBS + " WHERE id=?", (job_id,)) as cur:
            row = await cur.fetchone()
        return _row_to_job(row) if row else None

    async def list_jobs(self, *, requester: str | None = None, states: Iterable[JobState] | None = None,
                        limit: int = 50) -> list[Job]:
        sql, params = _SELECT_JOBS + " WHERE 1=1", []
        if requester:
            sql += " AND requester=?"
            params.append(requester)
        if states is not None:
            st = [s.value for s in states]
            sql += f" AND state IN ({','.join('?' * len(st))})"
            params += st
        sql += " ORDER BY created_at DESC LIMIT ?"
        params.append(limit)
        async with self.db.execute(sql, params) as cur:
            return [_row_to_job(r) for r in await cur.fetchall()]

    async def count_active(self, requester: str) -> int:
        active = [s.value for s in JobState if s.active or s == JobState.PENDING_APPROVAL]
        async with self.db.execute(
                f"SELECT COUNT(*) FROM jobs WHERE requester=? AND state IN ({','.join('?' * len(active))})",
                (requester, *active)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def transitions(self, job_id: str) -> list[tuple[str | None, str, str]]:
        async with self.db.execute("SELECT from_state, to_state, reason FROM transitions WHERE job_id=? "
                                   "ORDER BY rowid", (job_id,)) as cur:
            return [(r[0], r[1], r[2]) for r in await cur.fetchall()]

    # -- events ----------------------------------------------------------------------
    async def add_event(self, job: Job, event: SandboxEvent, *, view_changed: bool = True) -> bool:
        """Record an event; False (and nothing written) if this seq is already stored.

        With `view_changed` the job's folded view is written in the same transaction.
        Plain log lines (most of a job's events) change nothing but the last sequence
        number, which is read back from the events table, so they skip that write.
        """
        try:
            await self.db.execute("INSERT INTO events VALUES (?,?,?,?,?)",
                                  (job.id, event.seq, event.ts, event.type, json.dumps(redact_obj(dict(event.data)))))
        except sqlite3.IntegrityError:
            return False
        job.last_seq = max(job.last_seq, event.seq)
        if view_changed:
            job.updated_at = time.time()
            await self.db.execute("UPDATE jobs SET updated_at=?, data=? WHERE id=?",
                                  (job.updated_at, _data_json(job), job.id))
        await self.db.commit()
        return True

    async def events(self, job_id: str, since: int = 0, types: Iterable[str] | None = None) -> list[SandboxEvent]:
        sql, params = "SELECT seq, ts, type, data FROM events WHERE job_id=? AND seq>=?", [job_id, since]
        if types is not None:
            t = list(types)
            sql += f" AND type IN ({','.join('?' * len(t))})"
            params += t
        async with self.db.execute(sql + " ORDER BY seq", params) as cur:
            return [SandboxEvent(r[0], r[2], json.loads(r[3]), r[1]) for r in await cur.fetchall()]


def _data_json(job: Job) -> str:
    out: dict[str, Any] = {}
    for name in _MUTABLE:
        value = getattr(job, name)
        out[name] = value.to_dict() if hasattr(value, "to_dict") else value
    return json.dumps(redact_obj(out))


def _row_to_job(row: sqlite3.Row) -> Job:
    spec = JobSpec.from_dict(json.loads(row["spec"]))
    data = json.loads(row["data"])
    job = Job(spec=spec, state=JobState(row["state"]), created_at=row["created_at"], updated_at=row["updated_at"])
    for name in _MUTABLE:
        if name in data:
            setattr(job, name, data[name])
    if row["max_seq"] is not None:
        job.last_seq = max(job.last_seq, int(row["max_seq"]))
    job.placement = Placement.from_dict(data["placement"]) if data.get("placement") else None
    job.progress_ref = MessageRef.from_dict(data["progress_ref"]) if data.get("progress_ref") else None
    return job
