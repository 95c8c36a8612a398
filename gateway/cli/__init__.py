"""The `hammer` command line: one module per command group (main.py parses arguments).

Read-only commands (`jobs`, `logs`, `plan`) read the store directly, so they work while
the gateway is down; commands that change things (`run`, `cancel`) go through the
running gateway's REST API, because it owns the jobs' machines.
"""

from gateway.cli.main import main

__all__ = ["main"]
