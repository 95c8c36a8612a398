"""The argv list every task plugin builds for ms-swift.

A plugin turns a typed `Command` into a `JobSpec` whose `argv` the sandbox runner execs
as is (never through a shell). Three rules keep that argv safe and readable:

* every option is `--flag value`, two elements, with values that came through hammer's
  typed grammar (numbers, enums, presets, hub ids, paths hammer itself chose);
* free text (a system prompt) goes as ONE element `--flag=value`, so argparse can never
  read any part of it as another flag, whatever it contains (`--output_dir=/etc`, too);
* a value that starts with "-" also takes the `--flag=value` form, for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.contracts import JobContext
from gateway.model import Command


def render_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value)) if value != 0 else "0"
    return str(value)


class Argv:
    """An argv list under construction; see the module docstring for its rules."""

    def __init__(self, *program: str) -> None:
        self.items: list[str] = list(program)

    def opt(self, flag: str, value: Any) -> Argv:
        """`--flag value` (a list gives `--flag v1 v2`); None adds nothing."""
        if value is None:
            return self
        items = value if isinstance(value, list | tuple) else [value]
        values = [render_value(v) for v in items]
        if len(values) == 1 and values[0].startswith("-"):
            self.items.append(f"--{flag}={values[0]}")
            return self
        if any(v.startswith("-") for v in values):
            raise ValueError(f"--{flag}: list values may not start with '-': {values!r}")
        self.items.append(f"--{flag}")
        self.items.extend(values)
        return self

    def text(self, flag: str, value: str | None) -> Argv:
        """Free text: always one element `--flag=value`."""
        if value is not None:
            self.items.append(f"--{flag}={value}")
        return self

    def extend(self, pairs: Iterable[tuple[str, Any]]) -> Argv:
        for flag, value in pairs:
            self.opt(flag, value)
        return self

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self.items)


def extra_flags(command: Command, ctx: JobContext) -> list[str]:
    """Operator-approved extra flags (`[commands.extra.<verb>]` in the config): the gateway
    already typed the values; each goes as one `--flag=value` element."""
    table = ctx.settings.commands.extra.get(command.verb, {})
    return [f"{extra.flag}={render_value(command.args[name])}" for name, extra in table.items()
            if name in command.args]
