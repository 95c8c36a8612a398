"""hammer's aiohttp server: sign-in, health, metrics, the REST API, and the routes adapters
add (the web chat at `/`, Slack's signed `/slack/events`, artifacts at `/artifacts/`).

Every request passes three checks before a handler sees it (gateway/webauth.py):

1. `Host` must name this gateway (its public URL, or loopback on its port): a page that
   rebinds its own DNS name to 127.0.0.1 reaches nothing.
2. Who is asking: a session cookie (web users) or `Authorization: Bearer` (API tokens).
   Only `/healthz`, the sign-in page, the page's static files and signed webhooks are open.
3. A request that changes something and rides on the cookie must come from this origin
   (`Origin`) and carry the session's CSRF token (`X-CSRF-Token`); the WebSocket must come
   from this origin. JSON APIs accept only `Content-Type: application/json`.

Every answer carries `nosniff`, `frame-ancestors 'none'` and sends no referrer to other sites
(`no-referrer` would make browsers send `Origin: null` on our own forms).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from gateway import errors
from gateway.commands import CommandError
from gateway.model import Actor, Conversation, Job, JobState, OutboundMessage
from gateway.webauth import CSRF_HEADER, SESSION_COOKIE, Accounts, Identity, origin_allowed, own_hosts

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.contracts import Services
    from gateway.dispatch import Dispatcher
    from gateway.jobs import Orchestrator
    from gateway.store import Store

log = logging.getLogger("hammer.http")
#: Open to anyone who reaches the port (the page's own files carry no data).
OPEN_PATHS = ("/healthz", "/login", "/web/static/app.js", "/web/static/style.css", "/web/static/login.js")
#: Open without an identity, but shown a sign-in page: the chat page itself.
PAGE_PATHS = ("/",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
IDENTITY: web.RequestKey[Identity] = web.RequestKey("hammer.identity", Identity)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                    "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


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
    accounts: Accounts
    chat: Mapping[str, Any]
    clouds: Mapping[str, Any]
    port: int | None


HAMMER_KEY: web.AppKey[Gateway] = web.AppKey("hammer", Gateway)  # type: ignore[type-abstract]


def identity(request: web.Request) -> Identity | None:
    """Who made this request (set by the gateway's middleware), or None."""
    found = request.get(IDENTITY)
    return found if isinstance(found, Identity) else None


def actor_of(ident: Identity) -> Actor:
    """A web account as the rest of hammer sees it: platform `web`, its name and roles."""
    return Actor("web", ident.account.name, ident.account.name, ident.account.roles)


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def build_app(hammer: Gateway) -> web.Application:
    @web.middleware
    async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        except Exception as exc:  # never a stack trace to the client; a message that says what to do
            log.exception("request %s %s failed", request.method, request.path)
            response = web.json_response({"ok": False, "error": errors.internal(exc)}, status=500)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
            response.headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        hosts = own_hosts(hammer.services.public_url, hammer.port)
        host = request.headers.get("Host", "").lower()
        if host not in hosts and request.path != "/healthz":
            raise web.HTTPMisdirectedRequest(text=f"this gateway answers only as {hammer.services.public_url}")
        signed = hammer.services.is_open(request.path)  # webhooks and signed links check themselves
        static = request.path in OPEN_PATHS and request.path.startswith("/web/static/")
        ident = None if static else await _identify(hammer, request)  # no store lookup for the page's files
        if ident is not None:
            request[IDENTITY] = ident
        if signed or request.path in OPEN_PATHS or request.path.startswith("/login"):
            return await handler(request)
        if ident is None:
            if request.path in PAGE_PATHS and request.method in SAFE_METHODS:
                return await handler(request)
            raise web.HTTPUnauthorized(text="sign in first: open the link an admin gave you "
                                            "(`hammer users add NAME` makes one), or send an API token")
        if ident.via == "session" and (request.method not in SAFE_METHODS or _is_websocket(request)):
            origin = request.headers.get("Origin", "")
            if not origin_allowed(origin, hosts):
                raise web.HTTPForbidden(text="refused: this request did not come from hammer's own page")
            if not _is_websocket(request) and request.headers.get(CSRF_HEADER, "") != ident.csrf:
                raise web.HTTPForbidden(text="refused: the request has no valid CSRF token; reload the page")
        return await handler(request)

    app = web.Application(middlewares=[headers, guard], client_max_size=1024 * 1024)
    app[HAMMER_KEY] = hammer
    app.router.add_get("/healthz", _health)
    app.router.add_get("/login", _login_page)
    app.router.add_post("/login", _login)
    app.router.add_post("/logout", _logout)
    app.router.add_get("/web/session", _session)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/api/commands", _command)
    app.router.add_get("/api/jobs", _jobs)
    app.router.add_get("/api/jobs/{job_id}", _job)
    app.router.add_get("/api/jobs/{job_id}/events", _events)
    app.router.add_post("/api/jobs/{job_id}/cancel", _cancel)
    return app


async def _identify(hammer: Gateway, request: web.Request) -> Identity | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return await hammer.accounts.from_token(auth.removeprefix("Bearer ").strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    return await hammer.accounts.from_cookie(cookie) if cookie else None


def job_summary(job: Job) -> dict[str, Any]:
    return {"id": job.id, "state": job.state.value, "task": job.spec.task, "model": job.spec.model,
            "datasets": list(job.spec.datasets), "requester": job.requester_key, "created_at": job.created_at,
            "updated_at": job.updated_at, "progress": job.progress, "error": job.error, "result": job.result,
            "samples": job.samples, "artifacts": job.artifacts, "cloud": job.spec.cloud}


def _error(code: str, message: str, hint: str = "", status: int = 400) -> web.Response:
    return web.json_response({"ok": False, "error": {"code": code, "message": message, "hint": hint}}, status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send JSON with Content-Type: application/json")
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


# -- sign-in ---------------------------------------------------------------------------------------


_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in to hammer</title>
<link rel="stylesheet" href="/web/static/style.css"></head><body class="login">
<form method="post" action="/login"><h1>hammer</h1><p>{text}</p>
<input type="hidden" name="token" value="{token}">{button}</form></body></html>"""


def _page(text: str, token: str = "", button: bool = False, status: int = 200) -> web.Response:
    body = _LOGIN_PAGE.format(text=html.escape(text), token=html.escape(token),
                              button="<button>Sign in</button>" if button else "")
    response = web.Response(text=body, content_type="text/html", status=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


async def _login_page(request: web.Request) -> web.Response:
    token = request.query.get("token", "")[:200]
    if not token:
        return _page("Ask a hammer admin for a sign-in link (`hammer users add NAME`, or .invite NAME in the chat).")
    return _page("Press the button to sign in. The link works once.", token, button=True)


async def _login(request: web.Request) -> web.StreamResponse:
    hammer = request.app[HAMMER_KEY]
    if not origin_allowed(request.headers.get("Origin", ""), own_hosts(hammer.services.public_url, hammer.port)):
        raise web.HTTPForbidden(text="refused: sign in from hammer's own page")
    form = await request.post()
    token = str(form.get("token", ""))[:200]
    result = await hammer.accounts.redeem(token) if token else None
    if result is None:
        return _page("This sign-in link is not valid any more (used, expired or reset). "
                     "Ask an admin for a new one (`hammer users reset NAME`).", status=403)
    account, cookie = result
    response = web.HTTPSeeOther("/")
    secure = hammer.services.public_url.startswith("https://")
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="Strict", secure=secure, path="/",
                        max_age=int(hammer.accounts.session_ttl_s))
    hammer.dispatch.audit.record("sign_in", actor=f"web:{account.name}")
    return response


async def _logout(request: web.Request) -> web.StreamResponse:
    hammer = request.app[HAMMER_KEY]
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await hammer.accounts.sign_out(cookie)
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def _session(request: web.Request) -> web.Response:
    """Who the page's user is, and the CSRF token its requests must carry (same origin only)."""
    ident = identity(request)
    assert ident is not None
    return web.json_response({"name": ident.account.name, "role": ident.account.role, "csrf": ident.csrf})


# -- health and metrics -----------------------------------------------------------------------------


async def _health(request: web.Request) -> web.Response:
    """Minimal for anyone; the adapters and problems for admins only."""
    hammer = request.app[HAMMER_KEY]
    ident = identity(request)  # the guard already looked it up
    if ident is None or ident.account.role != "admin":
        return web.json_response({"ok": True})
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


# -- the REST API --------------------------------------------------------------------------------------


def _actor(request: web.Request) -> Actor:
    ident = identity(request)
    assert ident is not None  # the guard let no anonymous request through
    return actor_of(ident)


async def _command(request: web.Request) -> web.Response:
    """POST {"text": ".finetune demo-lora demo"} -> the answer or the job, as the caller."""
    hammer = request.app[HAMMER_KEY]
    body = await _json_body(request)
    if not isinstance(body.get("text"), str):
        return _error("bad_request", 'send JSON {"text": "COMMAND"}')
    try:
        out = await hammer.dispatch.execute(body["text"], _actor(request), Conversation("api", "api"))
    except CommandError as err:
        return web.json_response({"ok": False, "error": err.to_dict()}, status=422)
    if isinstance(out, Job):
        return web.json_response({"ok": True, "job": job_summary(out)})
    if isinstance(out, OutboundMessage):
        return web.json_response({"ok": True, "reply": out.to_dict(), "text": out.plain_text()})
    return web.json_response({"ok": True})


async def _jobs(request: web.Request) -> web.Response:
    hammer = request.app[HAMMER_KEY]
    try:
        limit = min(500, max(1, int(request.query.get("limit", "50"))))
    except ValueError:
        return _error("bad_request", "limit must be an integer")
    jobs = await hammer.store.list_jobs(limit=limit)
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
    if request.can_read_body and request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send no body, or JSON")
    try:
        job = await hammer.dispatch.cancel_job(request.match_info["job_id"], _actor(request))
    except CommandError as err:
        return web.json_response({"ok": False, "error": err.to_dict()}, status=409)
    return web.json_response({"ok": True, "job": job_summary(job)})

