"""hammer's command grammar: `<prefix><verb> [positional...] [key=value...]`.

hammer tokenizes itself: whitespace separates tokens, double quotes group a value, and
nothing else is special (no escapes, no substitution, no shell). Every argument has a
declared type; a value is checked against that type here, before any plugin sees it.
A user error never raises anything but `CommandError` (code, message, hint).

Verbs come only from registered `CommandSpec`s (the `hammer_commands` hook), so `help`
and every usage line are generated from the same table the parser uses.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gateway.model import Actor, Command, Conversation

if TYPE_CHECKING:
    from gateway.contracts import GatewayAPI, JobContext
    from gateway.model import JobSpec, OutboundMessage

MAX_COMMAND_CHARS = 2000
MAX_TEXT_VALUE_CHARS = 1000

_ASCII_INT = re.compile(r"[+-]?[0-9]+")
_ASCII_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_HUB_ID = re.compile(rf"{_NAME}/{_NAME}")
_PRESET = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_DATASET = re.compile(rf"(?:{_NAME}/{_NAME}|[a-z0-9][a-z0-9._-]{{0,63}}|upload:{_NAME})(?:#[0-9]{{1,7}})?")
_JOB_ID = re.compile(r"[a-z0-9][a-z0-9-]{2,39}")
_CLOUD = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_TUNER_SUFFIXES = ("qlora", "lora", "full")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class CommandError(Exception):
    """A user's mistake: `code` is stable (for tests and clients), `message` says what
    was wrong, `hint` what to do next (often the closest valid name and the usage line)."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


@dataclass(frozen=True)
class Param:
    """One typed argument. `kind` is one of: model, dataset, int, float, enum, bool, text,
    job, verb, cloud. `flag` is set only for operator-configured extra flags (passed through to
    ms-swift as `--flag=value`)."""

    name: str
    kind: str
    help: str = ""
    required: bool = False
    positional: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    flag: str | None = None

    def placeholder(self) -> str:
        if self.kind == "enum":
            return "|".join(self.choices)
        if self.kind in ("int", "float") and self.min is not None and self.max is not None:
            return f"{self.kind.upper()}({_num(self.min)}..{_num(self.max)})"
        return {"bool": "true|false", "text": '"TEXT"'}.get(self.kind, self.kind.upper())

    def convert(self, raw: str, verb: str) -> Any:
        """Check `raw` against the declared type; return the typed value."""
        def bad(what: str) -> CommandError:
            return CommandError("bad_value", f"{self.name}={raw!r} is not {what}.",
                                f"Use {self.name}={self.placeholder()}.")
        if self.kind == "int" or self.kind == "float":
            pattern = _ASCII_INT if self.kind == "int" else _ASCII_FLOAT
            if not pattern.fullmatch(raw):
                raise bad("an integer" if self.kind == "int" else "a number")
            value: Any = int(raw) if self.kind == "int" else float(raw)
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise CommandError("out_of_range", f"{self.name}={raw} is out of range.",
                                   f"{self.name} must be between {_num(self.min)} and {_num(self.max)}.")
            return value
        if self.kind == "enum":
            if raw.lower() in self.choices:
                return raw.lower()
            close = difflib.get_close_matches(raw.lower(), self.choices, n=1)
            hint = f"Did you mean {self.name}={close[0]}?" if close else f"Use {self.name}={self.placeholder()}."
            raise CommandError("bad_value", f"{self.name}={raw!r} is not one of {', '.join(self.choices)}.", hint)
        if self.kind == "bool":
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise bad("true or false")
        if self.kind == "model":
            if _HUB_ID.fullmatch(raw) or _PRESET.fullmatch(raw):
                return raw
            raise CommandError("bad_model", f"{raw!r} is not a model preset or hub id.",
                               "Use a preset such as qwen-7b-lora, or a hub id like Qwen/Qwen2.5-7B-Instruct.")
        if self.kind == "dataset":
            if _DATASET.fullmatch(raw) and ".." not in raw:
                return raw
            raise CommandError("bad_dataset", f"{raw!r} is not a dataset alias, hub id or uploaded file.",
                               "Use an alias (wiki_zh), a hub id (org/name, optionally #N samples) "
                               "or upload:FILE.jsonl for a file you uploaded.")
        if self.kind == "job":
            if _JOB_ID.fullmatch(raw.lower()):
                return raw.lower()
            raise CommandError("bad_job_id", f"{raw!r} is not a job id.", "Job ids look like 3f9c2a1b; see .jobs.")
        if self.kind == "verb":
            return raw.lower()
        if self.kind == "cloud":
            if _CLOUD.fullmatch(raw.lower()):
                return raw.lower()
            raise CommandError("bad_value", f"cloud={raw!r} is not a cloud name.", "Use cloud=docker (see .plan).")
        if self.kind == "text":
            if len(raw) > MAX_TEXT_VALUE_CHARS:
                raise CommandError("too_long", f"{self.name} is longer than {MAX_TEXT_VALUE_CHARS} characters.",
                                   "Shorten it.")
            return raw
        raise CommandError("internal", f"parameter {self.name} has unknown kind {self.kind!r}",
                           "This is a bug in a plugin's command spec.")


#: `handle(command, api)`: answer in chat (api: gateway.contracts.GatewayAPI).
Handler = Callable[[Command, "GatewayAPI"], Awaitable["OutboundMessage"]]
#: `build_job(command, ctx)`: the JobSpec to run (ctx: gateway.contracts.JobContext); may be async.
JobBuilder = Callable[[Command, "JobContext"], "JobSpec | Awaitable[JobSpec]"]


@dataclass(frozen=True)
class CommandSpec:
    """A verb: its typed parameters and what it does.

    Exactly one of `handle` (answer in chat: help, jobs, cancel...) or `build_job`
    (turn the command into a `JobSpec`) is set. `wraps_command` verbs (plan) take a
    whole command as their argument. `fixed` adds arguments implied by the verb itself
    (`sft` is finetune with task=sft; `dpo` could be align with method=dpo).
    """

    verb: str
    params: tuple[Param, ...] = ()
    aliases: tuple[str, ...] = ()
    help: str = ""
    examples: tuple[str, ...] = ()
    handle: Handler | None = None
    build_job: JobBuilder | None = None
    wraps_command: bool = False
    fixed: Mapping[str, Any] = field(default_factory=dict)
    group: str = "jobs"

    def usage(self, prefix: str = ".") -> str:
        parts = [f"{prefix}{self.verb}"]
        if self.wraps_command:
            parts.append("COMMAND...")
        for p in self.params:
            if p.positional:
                parts.append(p.name.upper() if p.required else f"[{p.name.upper()}]")
        parts += [f"[{p.name}={p.placeholder()}]" for p in self.params if not p.positional]
        return " ".join(parts)


def tokenize(text: str) -> list[tuple[str, bool]]:
    """Split on whitespace; double quotes group. Returns (token, had_unquoted_equals).

    Control characters other than whitespace (NUL, escape...) are refused outright, as is
    an unterminated quote. Nothing else is special.
    """
    for ch in text:
        if ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            raise CommandError("bad_character", f"The command contains a control character (U+{ord(ch):04X}).",
                               "Type the command as plain text.")
    tokens: list[tuple[str, bool]] = []
    buf: list[str] = []
    in_token = in_quote = eq = False
    for ch in text:
        if in_quote:
            if ch == '"':
                in_quote = False
            else:
                buf.append(ch)
        elif ch == '"':
            in_quote = in_token = True
        elif ch.isspace():
            if in_token:
                tokens.append(("".join(buf), eq))
            buf, in_token, eq = [], False, False
        else:
            if ch == "=" and not eq and "=" not in buf:
                eq = True
            buf.append(ch)
            in_token = True
    if in_quote:
        raise CommandError("unterminated_quote", "A double quote is not closed.",
                           'Close it: prompt="your text here".')
    if in_token:
        tokens.append(("".join(buf), eq))
    return tokens


CLOUD = Param("cloud", "cloud", "where to run it (default: the gateway's default cloud)")


class CommandTable:
    """All registered verbs; parses text into `Command`s and renders help."""

    def __init__(self, specs: Iterable[CommandSpec] = (), prefix: str = ".") -> None:
        self.prefix = prefix
        self.specs: dict[str, CommandSpec] = {}
        self._names: dict[str, str] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: CommandSpec) -> None:
        """Register a verb; every job verb also takes `cloud=NAME` (where to run it)."""
        if spec.build_job is not None and all(p.name != "cloud" for p in spec.params):
            spec = replace(spec, params=(*spec.params, CLOUD))
        for name in (spec.verb, *spec.aliases):
            if name in self._names and self._names[name] != spec.verb:
                raise ValueError(f"verb {name!r} registered twice ({self._names[name]} and {spec.verb})")
            self._names[name] = spec.verb
        self.specs[spec.verb] = spec

    def add_extra_params(self, verb: str, params: Iterable[Param]) -> None:
        """Operator-configured extra flags (config `[commands.extra.<verb>]`)."""
        spec = self.specs[verb]
        self.specs[verb] = replace(spec, params=spec.params + tuple(params))

    def lookup(self, name: str) -> CommandSpec:
        verb = self._names.get(name.lower())
        if verb is None:
            close = difflib.get_close_matches(name.lower(), list(self._names), n=1, cutoff=0.6)
            hint = f"Did you mean {self.prefix}{close[0]}? " if close else ""
            raise CommandError("unknown_verb", f"Unknown command {name!r}.",
                               f"{hint}Type {self.prefix}help for the list of commands.")
        return self.specs[verb]

    def parse(self, text: str, actor: Actor, conversation: Conversation) -> Command:
        """Parse `text` (with or without the prefix) into a typed `Command`."""
        if len(text) > MAX_COMMAND_CHARS:
            raise CommandError("too_long", f"The command is {len(text)} characters; the limit is "
                               f"{MAX_COMMAND_CHARS}.", "Shorten it, or upload long data as a file.")
        body = text.strip()
        if body.startswith(self.prefix):
            body = body[len(self.prefix):]
        tokens = tokenize(body)
        if not tokens:
            raise CommandError("empty", "No command given.", f"Type {self.prefix}help for the list of commands.")
        verb_tok, verb_eq = tokens[0]
        if verb_eq or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,39}", verb_tok):
            raise CommandError("unknown_verb", f"{verb_tok[:40]!r} is not a command.",
                               f"Type {self.prefix}help for the list of commands.")
        spec = self.lookup(verb_tok)
        args: dict[str, Any] = dict(spec.fixed)
        if spec.wraps_command:
            inner = body[body.find(verb_tok) + len(verb_tok):].strip()
            if not inner:
                raise CommandError("missing_argument", f"{self.prefix}{spec.verb} needs a command to look at.",
                                   f"Usage: {spec.usage(self.prefix)}, e.g. {self.prefix}plan finetune demo-lora demo")
            inner_cmd = self.parse(inner, actor, conversation)
            if self.specs[inner_cmd.verb].build_job is None:
                raise CommandError("not_a_job", f"{self.prefix}{inner_cmd.verb} starts no job, so there is "
                                   "nothing to plan.",
                                   f"Plan a job command, e.g. {self.prefix}plan finetune demo-lora demo")
            args["command"] = inner_cmd
            return Command(spec.verb, args, text, actor, conversation)
        self._bind(spec, tokens[1:], args)
        return Command(spec.verb, args, text, actor, conversation)

    def _bind(self, spec: CommandSpec, tokens: list[tuple[str, bool]], args: dict[str, Any]) -> None:
        usage = f"Usage: {spec.usage(self.prefix)}"
        by_name = {p.name: p for p in spec.params}
        positional = [p for p in spec.params if p.positional]
        pos_i = 0
        for tok, eq in tokens:
            if eq:
                key, _, raw = tok.partition("=")
                key = key.lower()
                param = by_name.get(key)
                if param is None or not _KEY.fullmatch(key):
                    keys = [p.name for p in spec.params]
                    close = difflib.get_close_matches(key, keys, n=1)
                    hint = f"Did you mean {close[0]}=? " if close else ""
                    raise CommandError("unknown_key", f"{self.prefix}{spec.verb} has no option {key[:40]!r}.",
                                       f"{hint}{usage}")
                if key in args and key not in spec.fixed:
                    raise CommandError("duplicate_key", f"{key} is given twice.", usage)
            else:
                if pos_i >= len(positional):
                    raise CommandError("unexpected_argument", f"Unexpected argument {tok[:60]!r}.",
                                       f"Options are written key=value. {usage}")
                param, raw = positional[pos_i], tok
                pos_i += 1
            try:
                args[param.name] = param.convert(raw, spec.verb)
            except CommandError as err:
                err.hint = f"{err.hint} {usage}".strip()
                raise
        for p in spec.params:
            if p.name not in args:
                if p.required:
                    raise CommandError("missing_argument", f"{self.prefix}{spec.verb} needs {p.name.upper()}"
                                       + (f" ({p.help})" if p.help else "") + ".", usage)
                if p.default is not None:
                    args[p.name] = p.default

    def help_text(self, verb: str | None = None, allowed: Callable[[CommandSpec], bool] | None = None) -> str:
        """`.help` (all verbs, grouped) or `.help VERB` (usage, options, examples);
        `allowed` hides the verbs the asker may not run."""
        p = self.prefix
        if verb:
            spec = self.lookup(verb)
            lines = [spec.usage(p), spec.help]
            if spec.aliases:
                lines.append("Aliases: " + ", ".join(p + a for a in spec.aliases))
            lines += [f"  {prm.name}: {prm.help}" + (f" (default {prm.default})" if prm.default is not None else "")
                      for prm in spec.params if prm.help]
            lines += [f"Example: {ex}" for ex in spec.examples]
            return "\n".join(x for x in lines if x)
        groups: dict[str, list[CommandSpec]] = {}
        for spec in self.specs.values():
            if allowed is None or allowed(spec):
                groups.setdefault(spec.group, []).append(spec)
        out = []
        for group in sorted(groups):
            out.append(f"{group.capitalize()}:")
            out += [f"  {s.usage(p)}  {s.help}" for s in sorted(groups[group], key=lambda s: s.verb)]
        out.append(f"Type {p}help VERB for details.")
        return "\n".join(out)


def _num(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else str(x)


def split_model_ref(ref: str) -> tuple[str, str | None]:
    """`qwen-7b-lora` -> (`qwen-7b`, `lora`); hub ids and bare presets keep tuner None."""
    if "/" not in ref:
        for suffix in _TUNER_SUFFIXES:
            if ref.endswith("-" + suffix):
                return ref[: -len(suffix) - 1], suffix
    return ref, None
