"""`python3 -m sandbox.runner`: the sandbox image's entrypoint (see sandbox/runner/main.py)."""

from __future__ import annotations

import asyncio
import os
import sys

from sandbox.runner.main import amain


def main() -> int:
    # The workspace and cache are host directories: whatever uid the gateway runs as must
    # be able to read and remove what the job (uid 1000) leaves there.
    os.umask(0)
    code = asyncio.run(amain())
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
