"""Dataset references: presets (`alpaca-zh`, `demo`), hub ids (`org/name#N`) and the
asker's uploads (`upload:NAME`), made concrete for ms-swift, with their size where known
(the planner turns it into hours and dollars)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.commands import CommandError
from gateway.contracts import JobContext
from gateway.model import Mount
from gateway.uploads import count_rows
from plugins import presets

_UPLOAD = re.compile(r"upload:([A-Za-z0-9][A-Za-z0-9._-]{0,95})")
#: Rough bytes per token of a JSONL chat sample (keys and punctuation included): enough
#: to budget a job, not to bill it.
BYTES_PER_TOKEN = 4.0


@dataclass(frozen=True)
class ResolvedDataset:
    ref: str
    value: str  # what --dataset gets
    needs_network: bool
    kind: str | None = None  # the preset's kind; None for hub ids and uploads (unknown)
    mounts: tuple[Mount, ...] = ()
    prepare: tuple[str, ...] = ()
    validate: tuple[str, ...] = ()
    samples: int | None = None  # rows, where known
    avg_tokens: int | None = None  # tokens per row, where known


def resolve_dataset(ref: str, ctx: JobContext, *, hub: str = "modelscope", want: str | None = None,
                    ) -> ResolvedDataset:
    """`want` is the kind a task needs (preference, kto); a preset of another kind is
    refused, and the `demo` preset becomes the demo of that kind."""
    name, _, count = ref.partition("#")
    limit = int(count) if count else None
    suffix = f"#{count}" if count else ""
    upload = _UPLOAD.fullmatch(name)
    if upload:
        return _upload(ref, upload.group(1), suffix, ctx)
    if "/" in name:
        return ResolvedDataset(ref, name + suffix, True, samples=limit)
    preset = presets.dataset_preset(name)
    if want and preset.local_kind and preset.kind != want:
        preset = presets.demo_dataset_for(want)
    if want and preset.kind != want:
        fits = ", ".join(d.name for d in presets.DATASETS.values() if d.kind == want)
        raise CommandError("dataset_kind",
                           f"{preset.name} is a {preset.kind} dataset; this needs {want} data.",
                           f"Use one of: {fits}, or a hub id / upload in that format.")
    samples = min(limit, preset.samples) if limit and preset.samples else (limit or preset.samples)
    if preset.local_kind:
        kind, path = presets.DEMO_DATASETS[preset.local_kind]
        return ResolvedDataset(ref, path + suffix, False, preset.kind, prepare=(f"{kind}:{path}",),
                               samples=samples, avg_tokens=preset.avg_tokens)
    hub_id = preset.hub_id(hub)
    if hub_id is None:
        raise CommandError("not_on_hub", f"Dataset {preset.name} has no {hub} hub id.",
                           f"Use hub={'modelscope' if hub == 'hf' else 'hf'}.")
    return ResolvedDataset(ref, hub_id + suffix, True, preset.kind, samples=samples, avg_tokens=preset.avg_tokens)


def _upload(ref: str, filename: str, suffix: str, ctx: JobContext) -> ResolvedDataset:
    if not filename.lower().endswith(".jsonl"):
        raise CommandError("bad_dataset_file", f"{filename} is not a JSONL file.",
                           "Upload the dataset as .jsonl: one JSON object per line, e.g. "
                           '{"messages": [{"role": "user", "content": "..."}, '
                           '{"role": "assistant", "content": "..."}]}')
    host = ctx.upload(filename)
    if host is None:
        raise CommandError("upload_missing", f"There is no uploaded file named {filename}.",
                           "Attach the .jsonl file in the chat first, then use upload:" + filename)
    rows = count_rows(host)
    size = host.stat().st_size
    limit = int(suffix[1:]) if suffix else None
    target = f"/data/{filename}"
    return ResolvedDataset(ref, target + suffix, False, mounts=(Mount(str(host), target, True),),
                           validate=(target,), samples=min(rows, limit) if limit else rows,
                           avg_tokens=max(1, int(size / max(rows, 1) / BYTES_PER_TOKEN)))
