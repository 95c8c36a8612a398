"""Sample answers from the freshly trained model, so the chat shows what training did.

`swift infer` runs as a child process on the last checkpoint (`--adapters` for LoRA and
QLoRA, `--model` for a full fine-tune) with greedy decoding and few new tokens: on a CPU
this costs seconds, and it exercises exactly the loading path a user will use later.
A failed sample never fails the job: the adapter is what the user asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox.runner.child import Child
from sandbox.runner.events import Emitter
from sandbox.runner.job import Job, flag_values

MAX_PROMPTS = 3
DEFAULT_PROMPTS = 2
MAX_NEW_TOKENS = 32
FALLBACK_PROMPT = "Hello! Who are you?"


def choose_prompts(job: Job, datasets: Sequence[Path]) -> list[str]:
    """Given prompts (params.sample_prompts), else the first user turns of the dataset."""
    given = job.params.get("sample_prompts")
    if isinstance(given, str):
        given = [given]
    if isinstance(given, list) and given:
        return [str(p) for p in given if str(p).strip()][:MAX_PROMPTS]
    count = int(job.params.get("sample_count", DEFAULT_PROMPTS) or DEFAULT_PROMPTS)
    prompts: list[str] = []
    for path in datasets:
        prompts += [p for p in first_prompts(path, count) if p not in prompts]
        if len(prompts) >= count:
            break
    return prompts[: min(count, MAX_PROMPTS)] or [FALLBACK_PROMPT]


def first_prompts(path: Path, count: int, max_lines: int = 1000) -> list[str]:
    found: list[str] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if number >= max_lines or len(found) >= count:
                    break
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                prompt = prompt_of(row) if isinstance(row, dict) else None
                if prompt and prompt not in found:
                    found.append(prompt)
    except OSError:
        return []
    return found


def prompt_of(row: Mapping[str, Any]) -> str | None:
    for key in ("messages", "conversation", "conversations"):
        turns = row.get(key)
        if isinstance(turns, list):
            for turn in turns:
                if isinstance(turn, dict) and turn.get("role", turn.get("from")) in ("user", "human"):
                    content = turn.get("content", turn.get("value"))
                    return content if isinstance(content, str) else None
    for key in ("query", "prompt", "instruction", "question", "problem"):
        if isinstance(row.get(key), str):
            return str(row[key])
    if isinstance(row.get("text"), str):  # pre-training: continue the start of a document
        return str(row["text"])[:80]
    return None


def infer_argv(job: Job, checkpoint: Path, prompts_file: Path, result_file: Path) -> list[str]:
    is_adapter = (checkpoint / "adapter_config.json").is_file()
    argv = ["swift", "infer", "--adapters" if is_adapter else "--model", str(checkpoint)]
    if not is_adapter:  # a full checkpoint: say what it is, as the training command did
        for flag in ("--model_type", "--template"):
            if values := flag_values(job.argv, flag):
                argv += [flag, values[0]]
    argv += [
        "--val_dataset",
        str(prompts_file),
        "--result_path",
        str(result_file),
        "--infer_backend",
        "transformers",
        "--max_new_tokens",
        str(MAX_NEW_TOKENS),
        "--temperature",
        "0",
        "--max_batch_size",
        str(MAX_PROMPTS),
        "--dataset_num_proc",
        "1",
    ]
    return argv


def read_results(result_file: Path) -> list[dict[str, str]]:
    samples: list[dict[str, str]] = []
    try:
        lines = result_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return samples
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        messages = row.get("messages") or []
        prompt = (
            next(
                (
                    m.get("content")
                    for m in reversed(messages)
                    if isinstance(m, dict) and m.get("role") == "user"
                ),
                None,
            )
            if isinstance(messages, list)
            else None
        )
        response = row.get("response")
        if isinstance(response, str):
            samples.append({"prompt": str(prompt or row.get("query") or ""), "response": response.strip()})
    return samples


async def run_samples(
    job: Job,
    checkpoint: Path,
    prompts: Sequence[str],
    *,
    emitter: Emitter,
    env: Mapping[str, str],
    limit_s: float = 900.0,
    on_child: Callable[[Child | None], None] | None = None,
) -> list[dict[str, str]]:
    """Run `swift infer` on `prompts`; `on_child` lets the caller cancel it on SIGTERM."""
    scratch = job.workspace / ".hammer"
    scratch.mkdir(parents=True, exist_ok=True)
    prompts_file, result_file = scratch / "sample_prompts.jsonl", scratch / "sample_results.jsonl"
    prompts_file.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": p}]}, ensure_ascii=False) + "\n"
            for p in prompts
        ),
        encoding="utf-8",
    )
    result_file.unlink(missing_ok=True)
    child = Child(
        infer_argv(job, checkpoint, prompts_file, result_file), cwd=job.workspace, env=env, emitter=emitter
    )
    if on_child:
        on_child(child)
    try:
        result = await child.run(limit_s=limit_s)
    finally:
        if on_child:
            on_child(None)
    if result.cancelled or result.returncode != 0:
        emitter.log(
            "stderr", f"hammer: sample inference failed (exit {result.returncode}); the adapter is fine"
        )
        return []
    return read_results(result_file)
