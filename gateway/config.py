"""Configuration: TOML -> typed, validated settings (pydantic), and secret references.

`config.example.toml` is both the documentation of every key and the embedded default:
`hammer serve` with no file runs on it (web chat on 127.0.0.1:8080, SQLite under the data
dir, local Docker, a local-directory artifact store). A user's file *overlays* it: tables
merge key by key, a value the file sets replaces the default, and a section the file
leaves out keeps its default (`enabled = false` turns a chat or cloud section off).
`hammer config show` prints the merged result with where each value came from.

Secrets are never literal: a secret field holds a reference, `env:NAME` or `file:PATH`,
resolved only when an adapter starts; every resolved value is registered with the log
redactor so it cannot leak into any log sink.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from gateway import logs

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}
SECRET_REF = re.compile(r"(env|file):\S+")


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        m = _DURATION.fullmatch(value.strip())
        if not m:
            raise ValueError("a duration like 900, \"15m\", \"6h\" or \"1d\"")
        return float(m.group(1)) * _UNITS[m.group(2)]
    return value


def _secret(value: Any) -> Any:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not SECRET_REF.fullmatch(value):
        raise ValueError("a secret reference, env:NAME or file:PATH (never the secret itself)")
    return value


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
SecretRef = Annotated[str, BeforeValidator(_secret)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySettings(Strict):
    data_dir: str = "~/.local/share/hammer"
    public_url: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: str = ""
    command_prefix: str = Field(".", min_length=1, max_length=3)
    default_cloud: str = "docker"


class HttpSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    invite_ttl: Duration = Field(86400, gt=0)
    session_ttl: Duration = Field(30 * 86400, gt=0)
    token: str = ""

    @model_validator(mode="after")
    def _no_shared_token(self) -> HttpSettings:
        if self.token:
            raise ValueError("http.token was replaced by web accounts: remove it, and give each person an "
                             "account (`hammer users add NAME --role member`) and each program an API token "
                             "(`hammer users token NAME`)")
        return self


class PluginSettings(Strict):
    enabled: list[str] = []
    disabled: list[str] = []
    modules: list[str] = []


class StoreSettings(Strict):
    backend: Literal["sqlite"] = "sqlite"
    path: str = ""


class ArtifactSettings(Strict):
    store: str = "local"
    path: str = ""
    link_ttl: Duration = Field(7 * 86400, gt=0)


class JobSettings(Strict):
    image: str = "hammer-sandbox:latest"
    max_concurrent_per_user: int = Field(2, ge=1, le=1000)
    max_runtime: Duration = 6 * 3600
    idle_timeout: Duration = 900
    memory_gib: float = Field(8, gt=0)
    cpus: float = Field(2, gt=0)
    headroom: float = Field(0.10, ge=0, le=1)
    notify_interval: Duration = 0
    max_cost_usd: float = Field(0, ge=0)


class PolicySettings(Strict):
    admins: list[str] = []
    roles: dict[str, list[str]] = {}
    allowed_models: list[str] = []
    allowed_tasks: dict[str, list[str]] = {}
    require_approval_over_usd: float | None = None


class ExtraParam(Strict):
    type: Literal["int", "float", "bool", "enum", "text"]
    flag: str = Field(pattern=r"^--[a-z][a-z0-9_]*$")
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: list[str] = []


class CommandSettings(Strict):
    extra: dict[str, dict[str, ExtraParam]] = {}


LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Settings(Strict):
    gateway: GatewaySettings = GatewaySettings()
    http: HttpSettings = HttpSettings()
    plugins: PluginSettings = PluginSettings()
    store: StoreSettings = StoreSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    jobs: JobSettings = JobSettings()
    policy: PolicySettings = PolicySettings()
    commands: CommandSettings = CommandSettings()
    chat: dict[str, dict[str, Any]] = {}
    cloud: dict[str, dict[str, Any]] = {}

    @property
    def data_dir(self) -> Path:
        return Path(os.path.expanduser(self.gateway.data_dir))

    @property
    def db_path(self) -> Path:
        return Path(os.path.expanduser(self.store.path)) if self.store.path else self.data_dir / "hammer.db"

    @property
    def artifacts_dir(self) -> Path:
        return Path(os.path.expanduser(self.artifacts.path)) if self.artifacts.path else self.data_dir / "artifacts"

    @property
    def public_url(self) -> str:
        if self.gateway.public_url:
            return self.gateway.public_url.rstrip("/")
        host = "[::1]" if self.http.host == "::1" else self.http.host
        return f"http://{host}:{self.http.port}"

    @model_validator(mode="after")
    def _public_url_when_exposed(self) -> Settings:
        if self.http.host not in LOOPBACK and not self.gateway.public_url:
            raise ValueError(f"http.host is {self.http.host!r}, reachable from other machines: set "
                             "gateway.public_url to the address people use (https://hammer.example.com), so "
                             "hammer can refuse requests made for any other name")
        return self

    def enabled(self, section: Literal["chat", "cloud"]) -> dict[str, dict[str, Any]]:
        table = self.chat if section == "chat" else self.cloud
        return {name: cfg for name, cfg in table.items() if cfg.get("enabled", True)}


class ConfigError(Exception):
    """Every problem in a config file, each with its key path and what would be valid."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source, self.problems = source, problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        lines += [f"  {path}: {msg}" for path, msg in self.problems]
        return "\n".join(lines)


DEFAULT_SOURCE = "config.example.toml (embedded)"


def default_config_text() -> str:
    return resources.files("gateway").joinpath("config.example.toml").read_text(encoding="utf-8")


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [("(file)", f"not valid TOML: {exc}")]) from None


def overlay(base: Mapping[str, Any], top: Mapping[str, Any], source: str,
            sources: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """`top` over `base`: tables merge recursively, anything else in `top` replaces.
    `sources` maps every dotted key that `top` set to `source`."""
    out = dict(base)
    for key, value in top.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value, source, sources, path + ".")
        else:
            out[key] = value
            for leaf in _leaves(value, path):
                sources[leaf] = source
    return out


def _leaves(value: Any, path: str) -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    return [path]


@dataclass
class Layered:
    """The merged configuration as plain data, and where each value came from."""

    data: dict[str, Any]
    sources: dict[str, str]


def layered(text: str | None, source: str) -> Layered:
    """The embedded defaults with `text` (a user's file) on top."""
    sources: dict[str, str] = {}
    data = overlay({}, _toml(default_config_text(), DEFAULT_SOURCE), DEFAULT_SOURCE, sources)
    if text is not None:
        data = overlay(data, _toml(text, source), source, sources)
    return Layered(data, sources)


def validate(data: Mapping[str, Any], source: str,
             extra_validators: Mapping[str, Any] | None = None) -> Settings:
    """Validate merged config data. `extra_validators` maps `chat.web`-style paths to the
    pydantic models that adapters declare for their own tables."""
    problems: list[tuple[str, str]] = []
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems += [(_loc(e["loc"]), _msg(e)) for e in exc.errors()]
    for path, model in (extra_validators or {}).items():
        section, _, name = path.partition(".")
        table = data.get(section, {}).get(name)
        if isinstance(table, dict):
            try:
                model.model_validate(table)
            except ValidationError as exc:
                problems += [(f"{path}.{_loc(e['loc'])}".rstrip("."), _msg(e)) for e in exc.errors()]
    if problems or settings is None:
        raise ConfigError(source, problems)
    return settings


def parse_settings(text: str, source: str = "<config>",
                   extra_validators: Mapping[str, Any] | None = None) -> Settings:
    """Parse TOML text over the embedded defaults and validate the result."""
    return validate(layered(text, source).data, source, extra_validators)


def read_config(path: str | Path | None) -> Layered:
    """The layered config of a file (None: the embedded defaults alone)."""
    if path is None:
        return layered(None, DEFAULT_SOURCE)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [("(file)", f"cannot read it: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), [("(file)", "not UTF-8 text")]) from None
    return layered(text, str(p))


def load_settings(path: str | Path | None = None,
                  extra_validators: Mapping[str, Any] | None = None) -> Settings:
    """Load a file over the embedded defaults, or the defaults alone when `path` is None."""
    return validate(read_config(path).data, str(path) if path is not None else DEFAULT_SOURCE, extra_validators)


def render_layered(cfg: Layered) -> str:
    """TOML of the merged config, each value commented with the file it came from."""
    lines: list[str] = []

    def table(data: Mapping[str, Any], path: str) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in data.items() if k not in scalars}
        if path and (scalars or not tables):
            lines.append(f"\n[{path}]")
        for key, value in scalars.items():
            where = cfg.sources.get(f"{path}.{key}" if path else key) or _first_source(cfg, f"{path}.{key}")
            lines.append(f"{_key(key)} = {_value(value)}  # {where}")
        for key, value in tables.items():
            table(value, f"{path}.{_key(key)}" if path else _key(key))

    table(cfg.data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _first_source(cfg: Layered, prefix: str) -> str:
    for key, source in cfg.sources.items():
        if key.startswith(prefix + "."):
            return source
    return DEFAULT_SOURCE


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def resolve_secret(ref: str) -> str:
    """`env:NAME` or `file:PATH` -> the value (registered for redaction). Raises
    ValueError with what to do when it cannot be resolved."""
    kind, _, target = ref.partition(":")
    if kind == "env":
        value = os.environ.get(target)
        if value is None:
            raise ValueError(f"secret {ref}: environment variable {target} is not set; "
                             "export it before starting hammer")
    elif kind == "file":
        try:
            value = Path(os.path.expanduser(target)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"secret {ref}: cannot read {target} ({exc.strerror})") from None
    else:
        raise ValueError(f"{ref!r} is not a secret reference; use env:NAME or file:PATH")
    logs.redact_value(value)
    return value


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _msg(err: Mapping[str, Any]) -> str:
    kind, msg = err.get("type", ""), str(err.get("msg", ""))
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling against config.example.toml"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        return f"expected {msg}" if msg.startswith(("a ", "an ")) else msg
    return msg
