"""`hammer run`, `hammer jobs`, `hammer logs`, `hammer cancel`."""

from __future__ import annotations

import asyncio
import json
import time

from rich.table import Table

from gateway import messages
from gateway.cli.common import api, die, open_store, out, print_event
from gateway.config import Settings
from gateway.model import JobState


async def run(settings: Settings, text: str, *, detach: bool, url: str | None) -> int:
    status, body = await api(settings, "POST", "/api/commands", url, {"text": text})
    if not body.get("ok"):
        e = body.get("error", {})
        return die(f"{e.get('message', status)}\n{e.get('hint', '')}".strip())
    if "job" not in body:
        out.print(body.get("text", ""), markup=False)
        return 0
    job_id = body["job"]["id"]
    out.print(f"job {job_id} started", markup=False)
    if detach:
        return 0
    since = 0
    while True:
        _, ev = await api(settings, "GET", f"/api/jobs/{job_id}/events?since={since}", url)
        for e in ev.get("events", []):
            since = e["seq"] + 1
            print_event(e)
        _, job = await api(settings, "GET", f"/api/jobs/{job_id}", url)
        state = job["state"]
        if JobState(state).terminal:
            out.print(f"job {job_id} {state}", markup=False)
            if job.get("error"):
                out.print(f"{job['error'].get('message')}\n{job['error'].get('hint', '')}", markup=False)
            for name, link in ((job.get("result") or {}).get("links") or {}).items():
                out.print(f"{name}: {link}", markup=False)
            return 0 if state == "succeeded" else 1
        await asyncio.sleep(1.0)


async def jobs(settings: Settings, limit: int, *, as_json: bool) -> int:
    store = await open_store(settings)
    try:
        items = await store.list_jobs(limit=limit)
    finally:
        await store.close()
    if as_json:
        from gateway.http import job_summary
        print(json.dumps([job_summary(j) for j in items], default=str))
        return 0
    table = Table("id", "state", "what", "who", "age")
    for j in items:
        age = messages.duration(time.time() - j.created_at)
        table.add_row(j.id, j.state.value, messages.describe(j), j.requester_key, age)
    out.print(table)
    return 0


async def logs(settings: Settings, job_id: str, *, follow: bool, as_json: bool) -> int:
    store = await open_store(settings)
    try:
        job = await store.get_job(job_id)
        if job is None:
            return die(f"there is no job {job_id}; see `hammer jobs`")
        since = 0
        while True:
            for e in await store.events(job_id, since):
                since = e.seq + 1
                print(json.dumps(e.to_dict())) if as_json else print_event(e.to_dict())
            job = await store.get_job(job_id)
            if not follow or job is None or job.state.terminal:
                break
            await asyncio.sleep(1.0)
        if job is not None and job.state.terminal and not as_json:
            out.print(f"job {job_id} {job.state.value}", markup=False)
        return 0
    finally:
        await store.close()


async def cancel(settings: Settings, job_id: str, *, url: str | None) -> int:
    status, body = await api(settings, "POST", f"/api/jobs/{job_id}/cancel", url)
    if not body.get("ok"):
        e = body.get("error", {})
        return die(f"{e.get('message', status)} {e.get('hint', '')}".strip())
    out.print(f"job {job_id} {body['job']['state']}", markup=False)
    return 0
