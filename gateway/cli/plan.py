"""`hammer plan [--json] TEXT`: what a command would do (spec, estimate, cost, policy), without doing it."""

from __future__ import annotations

import json
import os

from rich.table import Table

from gateway.cli.common import die, err, out
from gateway.commands import CommandError
from gateway.config import Settings
from gateway.model import Actor, Conversation


async def plan(settings: Settings, text: str, *, as_json: bool, user: str | None = None) -> int:
    from gateway.app import Hammer, open_store_path
    from gateway.store import StoreError
    hammer = Hammer(settings, store_path=open_store_path(settings))
    try:
        await hammer.store.open()
    except StoreError as exc:
        return die(str(exc))
    hammer.build(chat=False)
    actor = Actor("cli", user or os.environ.get("USER", "cli"))
    try:
        cmd = hammer.commands.parse(text, actor, Conversation("cli", "cli"))
        if hammer.commands.specs[cmd.verb].wraps_command:
            cmd = cmd.args["command"]
        planned = await hammer.planner.plan(cmd)
    except CommandError as e:
        if as_json:
            print(json.dumps({"ok": False, "error": e.to_dict()}))
        else:
            err.print(f"error: {e.message}\n{e.hint}", markup=False)
        return 2
    finally:
        for cloud in hammer.clouds.values():
            await cloud.close()
        await hammer.store.close()
    d = planned.to_dict()
    if as_json:
        print(json.dumps(d, default=str))
        return 0
    table = Table(show_header=False, box=None)
    for k in ("task", "model", "datasets", "cloud", "image", "resources", "limits", "inputs"):
        table.add_row(k, json.dumps(d["job"][k]) if not isinstance(d["job"][k], str) else d["job"][k])
    est = d.get("estimate") or {}
    if est.get("per_gpu_gib") is not None:
        table.add_row("gpu memory", f"~{est['per_gpu_gib']:.1f} GiB per GPU x {est.get('gpus', 1)}")
        rec = est.get("recommendation")
        table.add_row("cheapest machine", f"{rec['cloud']} {rec['instance_type']} ({rec['gpu_count']}x {rec['gpu']}, "
                      f"${rec['price_per_hour']}/h)" if rec else f"none fits: {est.get('reason', '')}")
    if not d["fits_target"]:
        table.add_row(f"on {d['job']['cloud']}", f"does not fit: {d.get('target_problem', '')}")
    pol = d["policy"]
    cost = pol["estimated_cost_usd"]
    table.add_row("estimated cost", (f"${cost:.2f}" if cost is not None else "unknown") + f" ({pol['cost_basis']})")
    verdict = "allowed" if pol["allowed"] else "refused: " + "; ".join(pol["reasons"])
    table.add_row("policy", verdict + (" (needs an admin's approval)" if pol["needs_approval"] else ""))
    out.print(table)
    out.print("argv: " + " ".join(planned.spec.argv), markup=False)
    return 0
