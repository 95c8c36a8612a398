"""`hammer serve`: run the gateway until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from gateway.cli.common import err
from gateway.config import Settings
from gateway.logs import setup_logging
from gateway.store import StoreError


def serve(settings: Settings) -> int:
    setup_logging(settings.gateway.log_level, file=settings.gateway.log_file or None)
    from gateway.app import Hammer

    async def main() -> int:
        hammer = Hammer(settings)
        try:
            await hammer.start()
        except StoreError as exc:
            err.print(f"hammer: {exc}", markup=False)
            await hammer.stop()
            return 2
        except Exception as exc:  # anything else at start-up: say so and exit, never hang half-started
            err.print(f"hammer: could not start: {type(exc).__name__}: {exc}", markup=False)
            await hammer.stop()
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
        if hammer.sign_in:
            err.print(f"sign in as admin (once; `hammer users reset admin` makes a new link): {hammer.sign_in}",
                      markup=False)
        for where, what in hammer.problems.items:
            err.print(f"  problem: {where}: {what}", markup=False)
        await stop.wait()
        await hammer.stop()
        return 0

    return asyncio.run(main())
