"""The model and instance catalogs that ship inside the `gateway` package.

`models.toml` holds, per preset, the architecture numbers the memory estimator needs and
the hub ids / ms-swift names the task plugins need; `instances.csv` holds the GPU machines
hammer may start, with prices. Both are read through `importlib.resources`, so they work
from a source checkout, a wheel, or a zip. Loading is cached: the files are data that
ship with a release, not configuration that changes while the gateway runs.
"""

from __future__ import annotations

import csv
import difflib
import io
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from gateway.model import InstanceType

__all__ = [
    "ModelArch",
    "UnknownModelError",
    "load_aliases",
    "load_instances",
    "load_models",
    "model_names",
    "resolve_model",
    "suggest_models",
]


@dataclass(frozen=True)
class ModelArch:
    """One model's architecture, as its config.json states it, plus how to fetch it.

    `params` counts every weight (vision tower included); `vision_params` is the part
    of it that belongs to a multimodal model's vision encoder and projector.
    """

    name: str
    params: int
    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    kv_heads: int
    vocab_size: int
    max_context: int
    tied_embeddings: bool = False
    head_dim: int = 0  # 0 = hidden_size // heads (what the config implies when it is absent)
    vision_params: int = 0
    display_name: str = ""
    hub_id_modelscope: str | None = None
    hub_id_hf: str | None = None
    model_type: str = ""
    template: str = ""
    local: bool = False

    def __post_init__(self) -> None:
        positive = ("params", "layers", "hidden_size", "intermediate_size", "heads", "kv_heads",
                    "vocab_size", "max_context")
        for attr in positive:
            if getattr(self, attr) <= 0:
                raise ValueError(f"model {self.name!r}: {attr} must be positive")
        if self.heads % self.kv_heads:
            raise ValueError(f"model {self.name!r}: heads ({self.heads}) must be a multiple of "
                             f"kv_heads ({self.kv_heads})")
        if not 0 <= self.vision_params < self.params:
            raise ValueError(f"model {self.name!r}: vision_params must be below params")

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_size

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_size

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """Output projection weights that are not shared with the input embedding."""
        return 0 if self.tied_embeddings else self.vocab_size * self.hidden_size

    @property
    def linear_params_per_layer(self) -> int:
        """q, k, v, o and the SwiGLU gate/up/down projections of one decoder layer."""
        h = self.hidden_size
        return h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h + 3 * h * self.intermediate_size

    @property
    def linear_params(self) -> int:
        """Weights in the decoder's linear layers: what LoRA 'all-linear' wraps and
        what bitsandbytes quantizes (embeddings and the LM head stay 16-bit)."""
        return self.layers * self.linear_params_per_layer

    @property
    def language_params(self) -> int:
        return self.params - self.vision_params

    def lora_params(self, rank: int) -> int:
        """Trainable parameters of LoRA rank `rank` on all linear layers of the decoder."""
        h, i = self.hidden_size, self.intermediate_size
        per_layer = ((h + self.q_dim) * 2            # q_proj, o_proj
                     + (h + self.kv_dim) * 2         # k_proj, v_proj
                     + (h + i) * 3)                  # gate_proj, up_proj, down_proj
        return rank * per_layer * self.layers

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


class UnknownModelError(LookupError):
    """A model name that is neither a preset, an alias nor a known hub id."""

    def __init__(self, name: str, suggestions: tuple[str, ...]) -> None:
        self.name, self.suggestions = name, suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model {name!r}{hint}")

    def __str__(self) -> str:
        return str(self.args[0])


def _read_text(filename: str) -> str:
    return resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")


_ARCH_FIELDS = frozenset(ModelArch.__dataclass_fields__) - {"name"}


@cache
def _catalog() -> tuple[Mapping[str, ModelArch], Mapping[str, str]]:
    data = tomllib.loads(_read_text("models.toml"))
    models: dict[str, ModelArch] = {}
    for name, entry in data.get("models", {}).items():
        unknown = set(entry) - _ARCH_FIELDS
        if unknown:
            raise ValueError(f"models.toml [{name}]: unknown keys {sorted(unknown)}")
        models[name] = ModelArch(name=name, **entry)
    aliases = {str(k): str(v) for k, v in data.get("aliases", {}).items()}
    for alias, target in aliases.items():
        if target not in models:
            raise ValueError(f"models.toml alias {alias!r} points at unknown preset {target!r}")
        if alias in models:
            raise ValueError(f"models.toml alias {alias!r} shadows a preset")
    return MappingProxyType(models), MappingProxyType(aliases)


def load_models() -> Mapping[str, ModelArch]:
    """Every preset in models.toml, by preset name (read-only)."""
    return _catalog()[0]


def load_aliases() -> Mapping[str, str]:
    """Chat aliases (`qwen-7b`) -> preset names (`qwen2.5-7b`)."""
    return _catalog()[1]


def model_names() -> tuple[str, ...]:
    """Presets and aliases, sorted: what a user may type."""
    return tuple(sorted({*load_models(), *load_aliases()}))


def suggest_models(name: str, n: int = 3) -> tuple[str, ...]:
    """The closest preset or alias names to `name` (difflib), best first."""
    return tuple(difflib.get_close_matches(name.strip().lower(), model_names(), n=n, cutoff=0.5))


def resolve_model(name: str) -> ModelArch:
    """A preset, an alias, or a hub id (ModelScope or Hugging Face) -> its architecture.

    Raises UnknownModelError, carrying the closest names, for anything else.
    """
    key = name.strip().lower()
    models, aliases = _catalog()
    if key in models:
        return models[key]
    if key in aliases:
        return models[aliases[key]]
    for arch in models.values():
        if key in {(arch.hub_id_hf or "").lower(), (arch.hub_id_modelscope or "").lower()}:
            return arch
    raise UnknownModelError(name, suggest_models(name))


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


@cache
def _instances() -> tuple[InstanceType, ...]:
    rows = csv.DictReader(io.StringIO(_read_text("instances.csv")))
    out: list[InstanceType] = []
    for line, row in enumerate(rows, start=2):
        try:
            out.append(InstanceType(
                cloud=row["cloud"].strip().lower(),
                instance_type=row["instance_type"].strip(),
                gpu=row["gpu"].strip() or None,
                gpu_count=int(row["gpu_count"]),
                gpu_memory_mib=int(row["gpu_memory_mib"]),
                vcpus=int(row["vcpus"]),
                ram_gib=float(row["ram_gib"]),
                price_per_hour=float(row["price_per_hour"]),
                spot_price_per_hour=_optional_float(row["spot_price_per_hour"]),
                region=row["region"].strip(),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"instances.csv line {line}: {exc}") from exc
    return tuple(out)


def load_instances(clouds: Iterable[str] | None = None) -> list[InstanceType]:
    """Catalog machines, cheapest first; only those of `clouds` when given (e.g. {"gcp"})."""
    wanted = None if clouds is None else {c.strip().lower() for c in clouds}
    chosen = [i for i in _instances() if wanted is None or i.cloud in wanted]
    return sorted(chosen, key=lambda i: (i.price_per_hour, i.cloud, i.instance_type))
