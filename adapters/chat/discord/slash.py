"""Slash commands: their Discord definitions, and turning a used one back into text.

A slash command is only another way to type a chat command: `/finetune model:demo-lora
dataset:demo` reaches the gateway as the text `finetune demo-lora demo`, and the gateway
parses it with the same grammar, checks and errors as `.finetune demo-lora demo`.

The options are typed from the gateway's command table (`Services.commands`, a
`gateway.commands.CommandTable`); an empty table falls back to the built-in description
of the eight verbs below. Every job verb also gets a free-form
`options` string (`epochs=3 lr=1e-4`), so no option the grammar accepts is out of reach.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.commands import CommandSpec, Param

log = logging.getLogger("hammer.discord")

VERBS = ("finetune", "infer", "plan", "jobs", "status", "logs", "cancel", "help")
# Discord application command option types.
STRING, INTEGER, BOOLEAN, NUMBER = 3, 4, 5, 10
_KIND_TYPE = {"int": INTEGER, "float": NUMBER, "bool": BOOLEAN}
_OPTION_NAME = re.compile(r"[a-z0-9_-]{1,32}")
FREE_OPTIONS = "options"
MAX_CHOICES = 25


@dataclass(frozen=True)
class SlashOption:
    name: str
    type: int = STRING
    description: str = ""
    required: bool = False
    positional: bool = False
    autocomplete: str | None = None  # "model" | "dataset" | "verb": what to suggest
    choices: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required,
                               "description": (self.description or self.name)[:100]}
        if self.choices:
            out["choices"] = [{"name": c, "value": c} for c in self.choices[:MAX_CHOICES]]
        elif self.autocomplete:
            out["autocomplete"] = True
        if self.type in (INTEGER, NUMBER):
            if self.min_value is not None:
                out["min_value"] = int(self.min_value) if self.type == INTEGER else self.min_value
            if self.max_value is not None:
                out["max_value"] = int(self.max_value) if self.type == INTEGER else self.max_value
        return out


@dataclass(frozen=True)
class SlashCommand:
    verb: str
    description: str
    options: tuple[SlashOption, ...] = ()
    wraps_command: bool = False

    def payload(self) -> dict[str, Any]:
        # Discord insists on required options before optional ones.
        ordered = sorted(self.options, key=lambda o: not o.required)
        return {"name": self.verb, "type": 1, "description": (self.description or self.verb)[:100],
                "options": [o.payload() for o in ordered]}

    def option(self, name: str) -> SlashOption | None:
        return next((o for o in self.options if o.name == name), None)


def _free(help_text: str = "more options as key=value, e.g. epochs=3 lr=1e-4") -> SlashOption:
    return SlashOption(FREE_OPTIONS, STRING, help_text)


_JOB = SlashOption("job", STRING, "job id (see /jobs)", required=True, positional=True)
#: Used when the gateway does not hand over its command table.
DEFAULT_COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand("finetune", "Fine-tune a model on a dataset", (
        SlashOption("model", STRING, "model preset + tuner (qwen-7b-lora) or hub id", True, True, "model"),
        SlashOption("dataset", STRING, "dataset alias, hub id or upload:FILE", True, True, "dataset"),
        _free())),
    SlashCommand("infer", "Ask a model (or a trained job's adapter) something", (
        SlashOption("model", STRING, "model preset, hub id or job id", True, True, "model"),
        SlashOption("prompt", STRING, "what to ask"), _free())),
    SlashCommand("plan", "Show what a command would run, need and cost, without running it", (
        SlashOption("command", STRING, "the command to plan, e.g. finetune demo-lora demo", True),),
        wraps_command=True),
    SlashCommand("jobs", "List jobs", (_free("filters as key=value"),)),
    SlashCommand("status", "Show one job", (_JOB,)),
    SlashCommand("logs", "Show the last lines of a job's log", (_JOB, _free("e.g. lines=50"))),
    SlashCommand("cancel", "Cancel a job", (_JOB,)),
    SlashCommand("help", "List commands, or explain one", (
        SlashOption("verb", STRING, "a command", positional=True, choices=VERBS),)),
)


def _option_from_param(p: Param) -> SlashOption | None:
    if not _OPTION_NAME.fullmatch(p.name):
        return None
    kind_type = _KIND_TYPE.get(p.kind, STRING)
    choices = p.choices if p.kind == "enum" and len(p.choices) <= MAX_CHOICES else ()
    auto = {"model": "model", "dataset": "dataset", "verb": "verb"}.get(p.kind)
    return SlashOption(p.name, kind_type, p.help, p.required, p.positional, auto, choices, p.min, p.max)


def from_specs(specs: Iterable[CommandSpec], verbs: Sequence[str] = VERBS) -> tuple[SlashCommand, ...]:
    """Typed slash commands from the gateway's command specs (the eight verbs only:
    Discord allows 100 commands, people remember eight)."""
    by_verb = {s.verb: s for s in specs}
    out: list[SlashCommand] = []
    for verb in verbs:
        spec = by_verb.get(verb)
        if spec is None:
            continue
        if spec.wraps_command:
            out.append(next(c for c in DEFAULT_COMMANDS if c.verb == "plan"))
            continue
        params = [p for p in spec.params if p.name != FREE_OPTIONS]
        options = [o for o in map(_option_from_param, params) if o is not None][:MAX_CHOICES - 1]
        if verb == "help":
            options = [SlashOption("verb", STRING, "a command", positional=True,
                                   choices=tuple(sorted(by_verb))[:MAX_CHOICES])]
        elif len(options) < len(spec.params):
            options.append(_free())  # options Discord cannot list stay reachable as key=value
        out.append(SlashCommand(verb, spec.help, tuple(options)))
    return tuple(out)


def _quote(value: str) -> str:
    """Quote a value that holds whitespace (the grammar groups double-quoted text)."""
    return f'"{value}"' if (not value or any(c.isspace() for c in value)) else value


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_text(command: SlashCommand | None, name: str, options: Sequence[Mapping[str, Any]]) -> str:
    """`/finetune model:a dataset:b options:"epochs=3"` -> `finetune a b epochs=3`.

    Positional options come first, in order, as long as none is skipped; the rest as
    key=value; the free `options` string goes last, exactly as typed."""
    given = {str(o.get("name")): o.get("value") for o in options if o.get("value") is not None}
    if command is not None and command.wraps_command:
        return f"{name} {str(given.get('command', '')).strip()}".strip()
    parts = [name]
    free = given.pop(FREE_OPTIONS, None)
    declared = command.options if command is not None else ()
    positional_open = True
    for opt in declared:
        if opt.name not in given:
            if opt.positional:
                positional_open = False
            continue
        value = _plain(given.pop(opt.name))
        if opt.positional and positional_open:
            parts.append(_quote(value))
        else:
            parts.append(f"{opt.name}={_quote(value)}")
    parts += [f"{k}={_quote(_plain(v))}" for k, v in given.items()]  # options Discord knows and we don't
    if free is not None and str(free).strip():
        parts.append(str(free).strip())
    return " ".join(parts)


def suggest(candidates: Iterable[str], current: str, limit: int = MAX_CHOICES) -> list[str]:
    """Autocomplete: names starting with what was typed first, then names containing it."""
    typed = current.strip().lower()
    seen: dict[str, None] = dict.fromkeys(candidates)
    starts = [c for c in seen if c.lower().startswith(typed)]
    contains = [c for c in seen if typed in c.lower() and c not in starts]
    return (starts + contains)[:limit]


def model_candidates() -> list[str]:
    """Presets and aliases from the model catalog, each with the usual tuners."""
    try:
        from gateway import catalog

        names = list(catalog.model_names())
    except Exception as exc:  # the catalog is data; a broken one must not break chat
        log.warning("model catalog unavailable for autocomplete: %s", exc)
        names = ["demo", "qwen-0.5b", "qwen-7b"]
    out = [f"{n}-lora" for n in names]
    out += [f"{n}-{t}" for n in names for t in ("qlora", "full")]
    return out


def dataset_candidates(extra: Iterable[str] = ()) -> list[str]:
    """Dataset presets the task plugins know (`plugins.presets`, when installed), the
    catalog's list if it has one, plus the configured names."""
    names: list[str] = list(extra)
    for module, attr in (("plugins.presets", "dataset_names"), ("gateway.catalog", "dataset_names")):
        try:
            lister = getattr(importlib.import_module(module), attr, None)
            if callable(lister):
                names += list(lister())
        except Exception as exc:  # optional data; autocomplete degrades to what is configured
            log.debug("no dataset names from %s: %s", module, exc)
    return list(dict.fromkeys(names)) or ["demo"]
