"""Model and dataset presets: what a chat name (`qwen-7b`, `alpaca-zh`, `demo`) means to
ms-swift.

Models come from the gateway's catalog (`gateway/catalog/models.toml`: hub ids, ms-swift
model_type and template, architecture numbers for the estimator); this module only adds
the *training defaults* a preset implies (dtype, learning rate, batch shape, max_length),
because those belong to the task plugins, not to the estimator. Datasets have no catalog
elsewhere, so their table lives here.

The `demo` model and dataset are created by the sandbox runner on first use (no download):
a plugin asks for them with `JobSpec.params["prepare"]` items `KIND:PATH`, and the runner
builds them under the shared `/cache` volume, so every later job reuses them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.catalog import ModelArch, UnknownModelError, load_models, resolve_model
from gateway.commands import CommandError

DEMO_MODEL_PATH = "/cache/models/demo"
DEMO_DATASETS = {
    # kind -> (prepare item kind, path inside the sandbox)
    "sft": ("demo_dataset", "/cache/datasets/demo.jsonl"),
    "preference": ("demo_preference_dataset", "/cache/datasets/demo_preference.jsonl"),
    "kto": ("demo_kto_dataset", "/cache/datasets/demo_kto.jsonl"),
}


@dataclass(frozen=True)
class ModelPreset:
    """A model as the plugins use it: the catalog entry plus training defaults."""

    name: str
    arch: ModelArch | None
    hub_id_modelscope: str | None
    hub_id_hf: str | None
    model_type: str
    template: str
    local: bool = False
    torch_dtype: str = "bfloat16"
    max_length: int = 2048
    batch_size: int = 1
    grad_accum: int = 16
    lr_lora: float = 1e-4
    lr_full: float = 1e-5
    epochs: float = 1.0
    lora_rank: int = 8
    lora_alpha: int = 32
    gradient_checkpointing: bool = True
    logging_steps: int = 5
    save_steps: int = 100
    default_gpus: int = 1

    @property
    def params_b(self) -> float | None:
        return self.arch.params / 1e9 if self.arch else None

    def hub_id(self, hub: str) -> str | None:
        return self.hub_id_hf if hub == "hf" else self.hub_id_modelscope


#: The demo runs on a laptop CPU in about a minute (3 epochs of 40 samples train in
#: seconds; the rest is start-up): fp32 (CPU kernels), no gradient
#: checkpointing (nothing to save on a 138k-parameter model), a high learning rate so the
#: loss visibly falls, and logging/saving every few steps so the chat shows progress.
DEMO_OVERRIDES: Mapping[str, object] = MappingProxyType({
    "torch_dtype": "float32", "max_length": 512, "batch_size": 2, "grad_accum": 1,
    "lr_lora": 1e-3, "lr_full": 1e-3, "epochs": 3.0, "gradient_checkpointing": False,
    "logging_steps": 1, "save_steps": 50, "default_gpus": 0,
})


def model_preset(name: str) -> ModelPreset:
    """A preset, alias or catalogued hub id -> ModelPreset; CommandError otherwise
    (with the closest preset names)."""
    try:
        arch = resolve_model(name)
    except UnknownModelError as exc:
        hint = (f"Did you mean {', '.join(exc.suggestions)}? " if exc.suggestions else "")
        raise CommandError("unknown_model", f"Unknown model {name!r}.",
                           f"{hint}Presets: {', '.join(sorted(load_models()))}; or a hub id like "
                           "Qwen/Qwen2.5-7B-Instruct.") from None
    return _from_arch(arch)


def hub_model(hub_id: str) -> ModelPreset:
    """A hub id outside the catalog: ms-swift infers model_type and template itself."""
    try:
        return _from_arch(resolve_model(hub_id))
    except UnknownModelError:
        return ModelPreset(name=hub_id, arch=None, hub_id_modelscope=hub_id, hub_id_hf=hub_id,
                           model_type="", template="")


def _from_arch(arch: ModelArch) -> ModelPreset:
    base = ModelPreset(name=arch.name, arch=arch, hub_id_modelscope=arch.hub_id_modelscope,
                       hub_id_hf=arch.hub_id_hf, model_type=arch.model_type, template=arch.template,
                       local=arch.local, max_length=min(2048, arch.max_context))
    if arch.local:
        return ModelPreset(**{**base.__dict__, **DEMO_OVERRIDES})  # type: ignore[arg-type]
    return base


@dataclass(frozen=True)
class DatasetPreset:
    """A dataset alias. `kind` says which tasks it fits: sft (messages / alpaca),
    pt (plain text), preference (chosen/rejected pairs: dpo, orpo, simpo), kto
    (label per answer)."""

    name: str
    kind: str
    hub_id_modelscope: str | None = None
    hub_id_hf: str | None = None
    local_kind: str | None = None  # the demo: (prepare kind) created by the runner
    description: str = ""
    aliases: tuple[str, ...] = field(default=())
    #: Rows and mean tokens per row (from the dataset cards, rounded; None: not known):
    #: what the planner turns into training hours and an estimated cost.
    samples: int | None = None
    avg_tokens: int | None = None

    def hub_id(self, hub: str) -> str | None:
        return self.hub_id_hf if hub == "hf" else self.hub_id_modelscope


_DATASETS: tuple[DatasetPreset, ...] = (
    DatasetPreset("demo", "sft", local_kind="sft",
                  samples=40, avg_tokens=40,
                  description="a few dozen chat samples hammer writes locally (no download)"),
    DatasetPreset("demo-preference", "preference", local_kind="preference",
                  samples=40, avg_tokens=60,
                  description="local chosen/rejected pairs for align (dpo, orpo, simpo)",
                  aliases=("demo-dpo",)),
    DatasetPreset("demo-kto", "kto", local_kind="kto",
                  samples=80, avg_tokens=50,
                  description="local answers labelled good/bad for align method=kto"),
    DatasetPreset("alpaca-zh", "sft", "AI-ModelScope/alpaca-gpt4-data-zh", "llm-wizard/alpaca-gpt4-data-zh",
                  samples=48_818, avg_tokens=300,
                  description="GPT-4 answers to the Alpaca instructions, Chinese",
                  aliases=("alpaca_zh", "alpaca-gpt4-zh")),
    DatasetPreset("alpaca-en", "sft", "AI-ModelScope/alpaca-gpt4-data-en", "vicgalle/alpaca-gpt4",
                  samples=52_002, avg_tokens=280,
                  description="GPT-4 answers to the Alpaca instructions, English",
                  aliases=("alpaca_en", "alpaca", "alpaca-gpt4-en")),
    DatasetPreset("self-cognition", "sft", "swift/self-cognition", "modelscope/self-cognition",
                  samples=108, avg_tokens=80,
                  description="who-am-I answers (ms-swift's self-cognition set)",
                  aliases=("self_cognition",)),
    DatasetPreset("code-alpaca", "sft", "AI-ModelScope/CodeAlpaca-20k", "HuggingFaceH4/CodeAlpaca_20K",
                  samples=20_022, avg_tokens=150,
                  description="20k coding instructions", aliases=("code_alpaca",)),
    DatasetPreset("long-alpaca", "sft", "AI-ModelScope/LongAlpaca-12k", "Yukang/LongAlpaca-12k",
                  samples=12_000, avg_tokens=6_000,
                  description="12k long-context instructions", aliases=("long_alpaca",)),
    DatasetPreset("wiki_zh", "pt", "AI-ModelScope/wikipedia-cn-20230720-filtered",
                  "pleisto/wikipedia-cn-20230720-filtered",
                  description="filtered Chinese Wikipedia (pretraining text)", aliases=("wiki-zh",)),
    DatasetPreset("chinese-c4", "pt", "swift/chinese-c4", "shjwudp/chinese-c4",
                  description="Chinese C4 web text (pretraining)", aliases=("c4_zh",)),
    DatasetPreset("hh-rlhf-cn", "preference", "AI-ModelScope/hh_rlhf_cn", None,
                  description="helpful/harmless preference pairs, Chinese", aliases=("hh_rlhf_cn",)),
    DatasetPreset("dpo-emoji", "preference", "hjh0119/shareAI-Llama3-DPO-zh-en-emoji",
                  "shareAI/DPO-zh-en-emoji", description="zh/en preference pairs (emoji style)",
                  aliases=("shareai-dpo",)),
    DatasetPreset("orpo-mix", "preference", "AI-ModelScope/orpo-dpo-mix-40k", "mlabonne/orpo-dpo-mix-40k",
                  samples=44_245, avg_tokens=600,
                  description="40k preference pairs", aliases=("orpo-dpo-mix",)),
    DatasetPreset("ultrafeedback-kto", "kto", "AI-ModelScope/ultrafeedback-binarized-preferences-cleaned-kto",
                  None, description="UltraFeedback answers labelled for KTO"),
)

DATASETS: Mapping[str, DatasetPreset] = MappingProxyType({d.name: d for d in _DATASETS})
_DATASET_ALIASES: Mapping[str, str] = MappingProxyType({a: d.name for d in _DATASETS for a in d.aliases})


def dataset_names() -> tuple[str, ...]:
    return tuple(sorted({*DATASETS, *_DATASET_ALIASES}))


def dataset_preset(name: str) -> DatasetPreset:
    key = name.strip().lower()
    if key in DATASETS:
        return DATASETS[key]
    if key in _DATASET_ALIASES:
        return DATASETS[_DATASET_ALIASES[key]]
    close = difflib.get_close_matches(key, dataset_names(), n=3, cutoff=0.5)
    hint = f"Did you mean {', '.join(close)}? " if close else ""
    raise CommandError("unknown_dataset", f"Unknown dataset {name!r}.",
                       f"{hint}Presets: {', '.join(sorted(DATASETS))}; or a hub id (org/name), "
                       "or upload:FILE.jsonl for a file you uploaded.")


def demo_dataset_for(kind: str) -> DatasetPreset:
    """The local demo dataset of a kind (align with `demo` means the preference demo)."""
    return {"sft": DATASETS["demo"], "pt": DATASETS["demo"], "preference": DATASETS["demo-preference"],
            "kto": DATASETS["demo-kto"]}[kind]
