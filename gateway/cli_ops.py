"""What the `hammer` subcommands do (gateway/cli.py only parses arguments).

Read-only commands (`jobs`, `logs`) read the SQLite store directly, so they work while
the gateway is down; commands that change things (`run`, `cancel`) go through the
running gateway's REST API, because it owns the jobs' machines.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from gateway import render
from gateway.commands import CommandError
from gateway.config import ConfigError, Settings, load_settings
from gateway.logs import setup_logging
from gateway.model import Actor, Conversation, JobState
from gateway.plugins import load_plugins
from gateway.store import Store, StoreError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def adapter_validators() -> dict[str, Any]:
    """`chat.<name>` / `cloud.<name>` -> the adapter's pydantic config model, if it has one."""
    plugins = load_plugins()
    found: dict[str, Any] = {}
    for section, registry in (("chat", plugins.chat_adapters()), ("cloud", plugins.cloud_adapters())):
        for name, factory in registry.items():
            model = getattr(factory, "config_model", None)
            if model is not None:
                found[f"{section}.{name}"] = _with_enabled(model)
    return found


def _with_enabled(model: Any) -> Any:
    """Adapter models describe their own keys; `enabled` is common to every section."""
    from pydantic import create_model
    if "enabled" in model.model_fields:
        return model
    return create_model(f"{model.__name__}Section", __base__=model, enabled=(bool, True))


def config_check(path: Path) -> int:
    try:
        settings = load_settings(path, adapter_validators())
    except ConfigError as exc:
        err.print(exc.render(), markup=False)
        return 2
    plugins = load_plugins(settings.plugins.model_dump())
    problems = []
    for section, registry in (("chat", plugins.chat_adapters()), ("cloud", plugins.cloud_adapters())):
        for name in getattr(settings, section):
            if name not in registry:
                problems.append((f"{section}.{name}", f"no such adapter; installed: {', '.join(sorted(registry))}"))
    if problems:
        err.print(ConfigError(str(path), problems).render(), markup=False)
        return 2
    out.print(f"{path}: ok")
    return 0


def serve(settings: Settings) -> int:
    setup_logging(settings.gateway.log_level, file=settings.gateway.log_file or None)
    from gateway.service import Hammer

    async def main() -> int:
        hammer = Hammer(settings)
        try:
            await hammer.start()
        except StoreError as exc:
            err.print(f"hammer: {exc}", markup=False)
            return 2
        except OSError as exc:
            err.print(f"hammer: cannot listen on {settings.http.host}:{settings.http.port} ({exc.strerror}); "
                      "stop the other program or set http.port", markup=False)
            await hammer.stop()
            return 2
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        err.print(f"hammer is running: open {hammer.services.public_url}/ (Ctrl-C to stop)", markup=False)
        for where, what in hammer.problems.items:
            err.print(f"  problem: {where}: {what}", markup=False)
        await stop.wait()
        await hammer.stop()
        return 0

    return asyncio.run(main())


async def plan(settings: Settings, text: str, *, as_json: bool) -> int:
    from gateway.service import Hammer
    hammer = Hammer(settings)
    actor = Actor("cli", os.environ.get("USER", "cli"))
    try:
        cmd = hammer.commands.parse(text, actor, Conversation("cli", "cli"))
        if hammer.commands.specs[cmd.verb].wraps_command:
            cmd = cmd.args["command"]
        planned = await hammer.plan(cmd)
    except CommandError as e:
        if as_json:
            print(json.dumps({"ok": False, "error": e.to_dict()}))
        else:
            err.print(f"error: {e.message}\n{e.hint}", markup=False)
        return 2
    if as_json:
        print(json.dumps(planned.to_dict(), default=str))
        return 0
    d = planned.to_dict()
    table = Table(show_header=False, box=None)
    for k in ("task", "model", "datasets", "cloud", "image", "resources", "limits"):
        table.add_row(k, json.dumps(d["job"][k]) if not isinstance(d["job"][k], str) else d["job"][k])
    est = d.get("estimate") or {}
    if est.get("per_gpu_gib") is not None:
        table.add_row("gpu memory", f"~{est['per_gpu_gib']:.1f} GiB per GPU x {est.get('gpus', 1)}")
        rec = est.get("recommendation")
        table.add_row("cheapest machine", f"{rec['cloud']} {rec['instance_type']} ({rec['gpu_count']}x {rec['gpu']}, "
                      f"${rec['price_per_hour']}/h)" if rec else f"none fits: {est.get('reason', '')}")
    out.print(table)
    out.print("argv: " + " ".join(planned.spec.argv), markup=False)
    return 0


def _url(settings: Settings, url: str | None) -> str:
    return (url or settings.public_url).rstrip("/")


def _headers(settings: Settings) -> dict[str, str]:
    if settings.http.token:
        from gateway.config import resolve_secret
        try:
            return {"Authorization": f"Bearer {resolve_secret(settings.http.token)}"}
        except ValueError:
            return {}
    return {}


async def _api(settings: Settings, method: str, path: str, url: str | None, body: Any = None) -> tuple[int, Any]:
    base = _url(settings, url)
    try:
        async with aiohttp.ClientSession(headers=_headers(settings), timeout=aiohttp.ClientTimeout(total=60)) as s:
            async with s.request(method, base + path, json=body) as resp:
                return resp.status, await resp.json(content_type=None)
    except aiohttp.ClientConnectorError:
        raise SystemExit(_die(f"no hammer gateway answers at {base}; start it with `hammer serve` "
                              "(or pass --url)")) from None


def _die(message: str, code: int = 2) -> int:
    err.print(f"hammer: {message}", markup=False)
    return code


async def run(settings: Settings, text: str, *, user: str, detach: bool, url: str | None) -> int:
    status, body = await _api(settings, "POST", "/api/commands", url, {"text": text, "user": user})
    if not body.get("ok"):
        e = body.get("error", {})
        return _die(f"{e.get('message', status)}\n{e.get('hint', '')}".strip())
    if "job" not in body:
        out.print(body.get("text", ""), markup=False)
        return 0
    job_id = body["job"]["id"]
    out.print(f"job {job_id} started", markup=False)
    if detach:
        return 0
    since, state = 0, body["job"]["state"]
    while True:
        _, ev = await _api(settings, "GET", f"/api/jobs/{job_id}/events?since={since}", url)
        for e in ev.get("events", []):
            since = e["seq"] + 1
            _print_event(e)
        _, job = await _api(settings, "GET", f"/api/jobs/{job_id}", url)
        state = job["state"]
        if JobState(state).terminal:
            out.print(f"job {job_id} {state}", markup=False)
            if job.get("error"):
                out.print(f"{job['error'].get('message')}\n{job['error'].get('hint', '')}", markup=False)
            for name, link in ((job.get("result") or {}).get("links") or {}).items():
                out.print(f"{name}: {link}", markup=False)
            return 0 if state == "succeeded" else 1
        await asyncio.sleep(1.0)


def _print_event(e: dict[str, Any]) -> None:
    d = e.get("data", {})
    t = e.get("type")
    if t == "progress":
        loss = f" loss {d['loss']:.4f}" if isinstance(d.get("loss"), int | float) else ""
        out.print(f"step {d.get('step')}/{d.get('max_steps')}{loss}", markup=False)
    elif t == "log":
        out.print(f"  {d.get('line', '')}", markup=False, style="dim")
    elif t == "status":
        out.print(f"[{d.get('phase')}]", markup=False)
    elif t == "error":
        out.print(f"error ({d.get('kind')}): {d.get('message')}\n  {d.get('hint', '')}", markup=False)
    elif t == "sample":
        out.print(f"sample: {d.get('prompt')!r} -> {d.get('response')!r}", markup=False)
    else:
        out.print(f"{t}: {json.dumps(d)}", markup=False)


async def _open_store(settings: Settings) -> Store:
    if not settings.db_path.exists():
        raise SystemExit(_die(f"no store at {settings.db_path} yet; jobs appear after `hammer serve` ran one"))
    try:
        return await Store(settings.db_path).open()
    except StoreError as exc:
        raise SystemExit(_die(str(exc))) from None


async def jobs(settings: Settings, limit: int, *, as_json: bool) -> int:
    store = await _open_store(settings)
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
        age = render.duration(time.time() - j.created_at)
        table.add_row(j.id, j.state.value, render.describe(j), j.requester_key, age)
    out.print(table)
    return 0


async def logs(settings: Settings, job_id: str, *, follow: bool, as_json: bool) -> int:
    store = await _open_store(settings)
    try:
        job = await store.get_job(job_id)
        if job is None:
            return _die(f"there is no job {job_id}; see `hammer jobs`")
        since = 0
        while True:
            for e in await store.events(job_id, since):
                since = e.seq + 1
                print(json.dumps(e.to_dict())) if as_json else _print_event(e.to_dict())
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
    status, body = await _api(settings, "POST", f"/api/jobs/{job_id}/cancel", url, {"user": "cli"})
    if not body.get("ok"):
        e = body.get("error", {})
        return _die(f"{e.get('message', status)} {e.get('hint', '')}".strip())
    out.print(f"job {job_id} {body['job']['state']}", markup=False)
    return 0


async def image(args: Any) -> int:
    try:
        from sandbox import build
    except ImportError as exc:
        return _die(f"the sandbox builder is missing ({exc})")
    try:
        if args.image_cmd == "base":
            name = await build.build_base(args.tag)
            out.print(f"base image {name} is ready", markup=False)
        else:
            data_dir = None
            try:
                data_dir = load_settings(os.environ.get("HAMMER_CONFIG") or None).data_dir
            except ConfigError:
                pass
            r = await build.build_image(args.tag, args.base, force=args.force, data_dir=data_dir)
            state = "up to date (inputs unchanged)" if r.cached else f"built in {r.seconds:.0f} s"
            out.print(f"{r.tag}: {state}; {r.size_bytes / 1e9:.2f} GB, base {r.base}, inputs {r.inputs_hash[:12]}",
                      markup=False)
    except build.ImageError as exc:
        return _die(f"{exc.message}\n{exc.hint}".strip())
    return 0


async def doctor(settings: Settings) -> int:
    from gateway import doctor as doctor_mod
    results = await doctor_mod.run_checks(settings)
    bad = 0
    for ok, what, fix in results:
        mark = "[green]ok[/]  " if ok else "[red]FAIL[/]"
        out.print(f"{mark} {what}")
        if not ok:
            bad += 1
            out.print(f"       fix: {fix}", markup=False)
    out.print(f"{len(results) - bad} ok, {bad} problem(s)")
    return 1 if bad else 0
