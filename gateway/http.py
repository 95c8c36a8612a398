"""hammer's aiohttp server: health, metrics, the REST API, and the routes adapters add
(the web chat at `/`, Slack's `/slack/events`, artifacts at `/artifacts/`).

When `http.token` is set every route but `/healthz` and signed webhooks (routes adapters
add with `Services.add_route(..., signed=True)`; they check their own signatures) needs it, as
`Authorization: Bearer TOKEN`, a `hammer_token` cookie, or `?token=` once (which sets the
cookie). It binds 127.0.0.1 unless configured, and refuses to bind elsewhere without one.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from gateway import config as config_mod
from gateway.commands import CommandError
from gateway.model import Actor, Conversation, Job, JobState, OutboundMessage

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.contracts import Services
    from gateway.dispatch import Dispatcher
    from gateway.jobs import Orchestrator
    from gateway.store import Store

log = logging.getLogger("hammer.http")
OPEN_PATHS = ("/healthz",)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ProblemList(Protocol):
    items: list[tuple[str, str]]

    def add(self, where: str, what: str) -> None: ...


class Gateway(Protocol):
    """What the HTTP routes use of the running gateway (gateway.app.Hammer)."""

    settings: Settings
    problems: ProblemList
    services: Services
    store: Store
    orchestrator: Orchestrator
    dispatch: Dispatcher
    chat: Mapping[str, Any]
    clouds: Mapping[str, Any]


HAMMER_KEY: web.AppKey[Gateway] = web.AppKey("hammer", Gateway)  # type: ignore[type-abstract]


def build_app(hammer: Gateway) -> web.Application:
    token = ""
    if hammer.settings.http.token:
        try:
            token = config_mod.resolve_secret(hammer.settings.http.token)
        except ValueError as exc:
            hammer.problems.add("http.token", str(exc))
            token = "\0unusable"  # fail closed: nobody gets in until it is fixed

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not token or request.path in OPEN_PATHS or request.path in hammer.services.open_paths:
            return await handler(request)
        given = (request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                 or request.cookies.get("hammer_token", "") or request.query.get("token", ""))
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPUnauthorized(text="hammer needs its access token: open the page with ?token=YOUR_TOKEN "
                                            "(http.token in the config)")
        response = await handler(request)
        if request.query.get("token") and isinstance(response, web.Response):
            response.set_cookie("hammer_token", given, httponly=True, samesite="Strict")
        return response

    app = web.Application(middlewares=[auth], client_max_size=64 * 1024 * 1024)
    app[HAMMER_KEY] = hammer
    app.router.add_get("/healthz", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/api/commands", _command)
    app.router.add_get("/api/jobs", _jobs)
    app.router.add_get("/api/jobs/{job_id}", _job)
    app.router.add_get("/api/jobs/{job_id}/events", _events)
    app.router.add_post("/api/jobs/{job_id}/cancel", _cancel)
    return app


def job_summary(job: Job) -> dict[str, Any]:
    return {"id": job.id, "state": job.state.value, "task": job.spec.task, "model": job.spec.model,
            "datasets": list(job.spec.datasets), "requester": job.requester_key, "created_at": job.created_at,
            "updated_at": job.updated_at, "progress": job.progress, "error": job.error, "result": job.result,
            "samples": job.samples, "artifacts": job.artifacts, "cloud": job.spec.cloud}


async def _health(request: web.Request) -> web.Response:
    hammer = request.app[HAMMER_KEY]
    return web.json_response({"ok": True, "chat": sorted(hammer.chat), "clouds": sorted(hammer.clouds),
                              "problems": [f"{w}: {m}" for w, m in hammer.problems.items]})


async def _metrics(request: web.Request) -> web.Response:
    hammer = request.app[HAMMER_KEY]
    counts: dict[str, int] = {s.value: 0 for s in JobState}
    async with hammer.store.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state") as cur:
        for state, n in await cur.fetchall():
            counts[state] = n
    lines = ["# HELP hammer_jobs Jobs by state.", "# TYPE hammer_jobs gauge"]
    lines += [f'hammer_jobs{{state="{s}"}} {n}' for s, n in counts.items()]
    launches = hammer.orchestrator.launches
    lines += ["# TYPE hammer_launches_total counter", f"hammer_launches_total {launches}"]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def _api_actor(request: web.Request, body: dict[str, Any]) -> Actor:
    user = str(body.get("user") or "cli")[:64]
    return Actor("api", user, user)


async def _command(request: web.Request) -> web.Response:
    """POST {"text": ".finetune demo-lora demo", "user": "alice"} -> the answer or the job."""
    hammer = request.app[HAMMER_KEY]
    try:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise ValueError
    except (ValueError, json.JSONDecodeError):
        return web.json_response({"ok": False, "error": {"code": "bad_request", "message": "send JSON "
                                  '{"text": "COMMAND"}', "hint": ""}}, status=400)
    actor = _api_actor(request, body)
    conv = Conversation("api", "api")
    try:
        out = await hammer.dispatch.execute(body["text"], actor, conv)
    except CommandError as err:
        return web.json_response({"ok": False, "error": err.to_dict()}, status=422)
    if isinstance(out, Job):
        return web.json_response({"ok": True, "job": job_summary(out)})
    if isinstance(out, OutboundMessage):
        return web.json_response({"ok": True, "reply": out.to_dict(), "text": out.plain_text()})
    return web.json_response({"ok": True})


async def _jobs(request: web.Request) -> web.Response:
    hammer = request.app[HAMMER_KEY]
    jobs = await hammer.store.list_jobs(limit=min(500, int(request.query.get("limit", "50"))))
    return web.json_response({"jobs": [job_summary(j) for j in jobs]})


async def _job(request: web.Request) -> web.Response:
    hammer = request.app[HAMMER_KEY]
    job = await hammer.store.get_job(request.match_info["job_id"])
    if job is None:
        raise web.HTTPNotFound(text="no such job")
    return web.json_response(job_summary(job))


async def _events(request: web.Request) -> web.Response:
    hammer = request.app[HAMMER_KEY]
    job_id = request.match_info["job_id"]
    if await hammer.store.get_job(job_id) is None:
        raise web.HTTPNotFound(text="no such job")
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="since must be an integer") from None
    events = await hammer.store.events(job_id, since)
    return web.json_response({"events": [e.to_dict() for e in events]})


async def _cancel(request: web.Request) -> web.Response:
    hammer = request.app[HAMMER_KEY]
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        body = {}
    actor = _api_actor(request, body if isinstance(body, dict) else {})
    if request.remote in ("127.0.0.1", "::1") and not hammer.settings.http.token:
        actor = Actor("api", actor.user_id, actor.display_name, ("admin",))  # the local operator
    try:
        job = await hammer.dispatch.cancel_job(request.match_info["job_id"], actor)
    except CommandError as err:
        return web.json_response({"ok": False, "error": err.to_dict()}, status=409)
    return web.json_response({"ok": True, "job": job_summary(job)})
