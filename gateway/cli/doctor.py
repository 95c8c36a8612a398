"""`hammer doctor`: print every check and the fix for each failure."""

from __future__ import annotations

from gateway.cli.common import out
from gateway.config import Settings


async def doctor(settings: Settings) -> int:
    from gateway import doctor as doctor_mod
    results = await doctor_mod.run_checks(settings)
    bad = 0
    for check in results:
        mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
        out.print(f"{mark} {check.what}")
        if not check.ok:
            bad += 1
            out.print(f"       fix: {check.fix}", markup=False)
    out.print(f"{len(results) - bad} ok, {bad} problem(s)")
    return 1 if bad else 0
