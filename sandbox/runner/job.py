"""Reading the job: job.json (JobSpec.to_dict()) and what the runner derives from its argv.

The runner never interprets ms-swift flags beyond what it needs to find things: where the
output goes, which datasets are local files, which task family this is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_JOB_FILE = "/workspace/job.json"
TRAINING_TASKS = frozenset({"sft", "pt", "rlhf"})
#: Where clouds put a job's inputs (gateway.model.INPUTS_ROOT; the runner imports nothing from gateway).
INPUTS_ROOT = "/inputs"
#: What each prepare entry name creates; the value after the colon is the path.
PREPARE_KINDS = ("demo_model", "demo_dataset", "demo_preference_dataset", "demo_kto_dataset", "prompts")
#: prepare item -> demo dataset kind (sandbox.runner.demo.dataset_rows).
DEMO_DATASET_ITEMS = {
    "demo_dataset": "sft",
    "demo_preference_dataset": "preference",
    "demo_kto_dataset": "kto",
}


@dataclass(frozen=True)
class Job:
    spec: dict[str, Any]
    workspace: Path
    argv: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.spec.get("id", ""))

    @property
    def program(self) -> str:
        return self.argv[0] if self.argv else ""

    @property
    def command(self) -> str:
        """The ms-swift subcommand: sft, pt, rlhf, infer, export, eval, download..."""
        return self.argv[1] if len(self.argv) > 1 else ""

    @property
    def is_training(self) -> bool:
        return self.program in ("swift", "megatron") and self.command in TRAINING_TASKS

    @property
    def output_dir(self) -> Path:
        value = flag_values(self.argv, "--output_dir")
        path = Path(value[0]) if value else self.workspace / "output"
        return path if path.is_absolute() else self.workspace / path

    @property
    def rlhf_type(self) -> str:
        value = flag_values(self.argv, "--rlhf_type")
        return value[0] if value else ("dpo" if self.command == "rlhf" else "")

    @property
    def dataset_kind(self) -> str:
        """What a dataset row must look like: sft, pt, or an rlhf type (dpo, kto, ...)."""
        if self.command == "pt":
            return "pt"
        if self.command == "rlhf":
            return self.rlhf_type
        return "sft"

    @property
    def inputs(self) -> dict[str, Path]:
        """Artifact key -> where the cloud put it (`/inputs/<key>`, or `$HAMMER_INPUTS/<key>`)."""
        root = Path(os.environ.get("HAMMER_INPUTS", INPUTS_ROOT))
        return {str(k): root / str(k).strip("/") for k in self.spec.get("inputs", []) or []}

    @property
    def max_runtime_s(self) -> float | None:
        value = (self.spec.get("limits") or {}).get("max_runtime_s")
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def local_datasets(self) -> list[Path]:
        """Dataset arguments that are files (hub ids and aliases are not ours to check)."""
        listed = [str(p) for p in self.params.get("validate_datasets", [])]
        found: list[Path] = []
        for value in [*listed, *flag_values(self.argv, "--dataset")]:
            path = Path(value.split("#", 1)[0])  # ms-swift's "file#N" sampling suffix
            path = path if path.is_absolute() else self.workspace / path
            if (
                path.suffix in (".jsonl", ".json")
                and path not in found
                and (str(value) in listed or path.exists())
            ):
                found.append(path)
        return found

    def relative(self, path: Path) -> str:
        """A path as the gateway wants it in events: relative to the workspace when inside."""
        try:
            return str(path.resolve().relative_to(self.workspace.resolve()))
        except ValueError:
            return str(path)


def flag_values(argv: Sequence[str], flag: str) -> list[str]:
    """Values of `--flag a b` or `--flag=a`, up to the next `--option`."""
    values: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
        elif arg == flag:
            for value in argv[i + 1 :]:
                if value.startswith("--"):
                    break
                values.append(value)
    return values


def job_file() -> Path:
    return Path(os.environ.get("HAMMER_JOB_FILE", DEFAULT_JOB_FILE))


def load_job(path: Path | None = None) -> Job:
    """Load job.json; the workspace is the directory that holds it (/workspace in the image)."""
    path = path or job_file()
    spec = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise ValueError("job.json does not hold a JSON object")
    argv = spec.get("argv") or []
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("job.json has no argv (a non-empty list of strings)")
    params = spec.get("params") or {}
    workspace = Path(os.environ.get("HAMMER_WORKSPACE") or path.parent)
    return Job(spec, workspace, tuple(argv), dict(params) if isinstance(params, dict) else {})


def parse_prepare(entry: str) -> tuple[str, Path]:
    """`"demo_model:/cache/models/demo"` -> ("demo_model", Path("/cache/models/demo"))."""
    kind, sep, path = str(entry).partition(":")
    if not sep or kind not in PREPARE_KINDS or not path.startswith("/"):
        raise ValueError(
            f"prepare entry {entry!r} is not one of {', '.join(PREPARE_KINDS)} followed by :/absolute/path"
        )
    return kind, Path(path)
