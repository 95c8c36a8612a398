"""What a person is told when hammer itself fails (not their command): never a stack
trace, always what happened and what to do. The details go to the gateway's log."""

from __future__ import annotations

import errno
import sqlite3

from gateway.commands import CommandError


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


def as_command_error(exc: BaseException) -> CommandError:
    if is_disk_full(exc):
        return CommandError("disk_full", "The gateway's disk is full, so hammer could not do that.",
                            "Nothing was started. Ask an admin to free space on the gateway's data disk, "
                            "then send the command again.")
    return CommandError("internal", "hammer could not do that: something went wrong inside the gateway.",
                        "Nothing was started. Send it again; if it keeps failing, an admin finds the details "
                        "in the gateway's log.")


def internal(exc: BaseException) -> dict[str, str]:
    """The JSON `error` object for an HTTP answer."""
    return as_command_error(exc).to_dict()
