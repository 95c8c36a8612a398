"""Model references (`demo`, `qwen-7b-lora`, `Qwen/Qwen2.5-7B-Instruct`) made concrete for ms-swift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.commands import CommandError, split_model_ref
from plugins import presets
from plugins.presets import ModelPreset


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference made concrete for ms-swift."""

    preset: ModelPreset
    tuner: str | None  # from the `-lora`/`-qlora`/`-full` suffix, if any
    ref: str  # what JobSpec.model records: the preset name or the hub id
    hub: str
    path: str | None = None  # an explicit --model path (a prior job's full weights)

    @property
    def local(self) -> bool:
        return self.preset.local

    @property
    def needs_network(self) -> bool:
        return not self.local and self.path is None

    def flags(self, *, with_type: bool = True) -> list[tuple[str, Any]]:
        p = self.preset
        if self.path is not None:
            model = self.path
        elif p.local:
            model = presets.DEMO_MODEL_PATH
        else:
            model = p.hub_id(self.hub)
            if model is None:
                other = "modelscope" if self.hub == "hf" else "hf"
                raise CommandError("not_on_hub", f"{p.name} has no {self.hub} hub id in the catalog.",
                                   f"Use hub={other}.")
        out: list[tuple[str, Any]] = [("model", model)]
        if with_type and p.model_type:
            out.append(("model_type", p.model_type))
        if with_type and p.template:
            out.append(("template", p.template))
        return out

    def prepare(self) -> list[str]:
        return [f"demo_model:{presets.DEMO_MODEL_PATH}"] if self.local and self.path is None else []


def resolve_model(ref: str, hub: str = "modelscope") -> ResolvedModel:
    base, tuner = split_model_ref(ref)
    preset = presets.hub_model(base) if "/" in base else presets.model_preset(base)
    return ResolvedModel(preset, tuner, preset.name if preset.arch else base, hub)
