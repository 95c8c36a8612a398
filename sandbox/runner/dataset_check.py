"""Checking a local JSONL dataset before ms-swift sees it, down to the first bad line.

ms-swift accepts several row shapes (its AutoPreprocessor): `messages` (also
`conversation(s)`, with role/content or ShareGPT from/value turns), a prompt-like key
(query, prompt, instruction, input, question, problem) with a response-like key
(response, answer, output, completion, ...), and for pre-training plain `text`.
Preference data adds `rejected_response` (dpo, orpo, simpo, cpo, rm) or a boolean
`label` (kto). A mistake found by ms-swift surfaces minutes later as a traceback; found
here, it is one line with a line number that a non-programmer can fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MESSAGE_KEYS = ("messages", "conversation", "conversations")
PROMPT_KEYS = ("query", "prompt", "instruction", "input", "question", "problem")
RESPONSE_KEYS = (
    "response",
    "answer",
    "output",
    "targets",
    "target",
    "answers",
    "solution",
    "completion",
    "content",
    "text",
)
USER_ROLES = frozenset({"user", "human"})
ASSISTANT_ROLES = frozenset({"assistant", "gpt", "bot"})
OTHER_ROLES = frozenset(
    {
        "system",
        "tool",
        "tool_call",
        "tool_response",
        "function_call",
        "function_response",
        "observation",
        "observations",
    }
)
PAIRWISE = frozenset({"dpo", "orpo", "simpo", "cpo", "rm"})
EXAMPLE = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}'
MAX_LINES = 5_000_000


@dataclass(frozen=True)
class DatasetProblem(Exception):
    path: str
    line: int
    problem: str
    hint: str
    unit: str = "line"

    @property
    def message(self) -> str:
        if self.unit == "line" and self.line:
            return f"dataset {Path(self.path).name}, line {self.line}: {self.problem}"
        return f"dataset {Path(self.path).name}: {self.problem}"

    def __str__(self) -> str:
        return self.message


def validate_file(path: Path, kind: str = "sft") -> int:
    """Return the number of rows, or raise DatasetProblem for the first bad line."""
    if not path.is_file():
        raise DatasetProblem(
            str(path), 0, "the file does not exist", "attach the file again or check its name"
        )
    if path.suffix == ".json" and _starts_with(path, b"["):
        return _validate_array(path, kind)
    rows = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number > MAX_LINES:
                break
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetProblem(
                    str(path), number, f"is not UTF-8 text (byte {exc.start})", "save the file as UTF-8"
                ) from None
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetProblem(
                    str(path),
                    number,
                    f"is not valid JSON ({exc.msg}, column {exc.colno})",
                    f"each line must be one JSON object, for example {EXAMPLE}",
                ) from None
            if not isinstance(row, dict):
                raise DatasetProblem(
                    str(path),
                    number,
                    f"is a JSON {type(row).__name__}, not an object",
                    f"each line must be one JSON object, for example {EXAMPLE}",
                )
            problem = row_problem(row, kind)
            if problem:
                raise DatasetProblem(str(path), number, problem[0], problem[1])
            rows += 1
    if rows == 0:
        raise DatasetProblem(
            str(path), 0, "the file has no rows", f"put one JSON object per line, e.g. {EXAMPLE}"
        )
    return rows


def _starts_with(path: Path, prefix: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4096).lstrip().startswith(prefix)


def _validate_array(path: Path, kind: str) -> int:
    """A `.json` file holding one array of rows (ms-swift reads those too); rows are
    numbered as items because a pretty-printed array has no row-per-line."""
    try:
        rows = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise DatasetProblem(
            str(path),
            getattr(exc, "lineno", 0),
            f"is not valid JSON{where}",
            "check the file with a JSON validator",
        ) from None
    for number, row in enumerate(rows, start=1):
        problem = (
            (f"item {number} is a JSON {type(row).__name__}, not an object", f"e.g. {EXAMPLE}")
            if not isinstance(row, dict)
            else row_problem(row, kind)
        )
        if problem:
            raise DatasetProblem(str(path), number, f"item {number} {problem[0]}", problem[1], unit="item")
    if not rows:
        raise DatasetProblem(
            str(path), 0, "the array has no rows", f"put one JSON object per row, e.g. {EXAMPLE}"
        )
    return len(rows)


def row_problem(row: dict[str, Any], kind: str) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) for one row, or None when ms-swift can read it."""
    message_key = next((k for k in MESSAGE_KEYS if k in row), None)
    if message_key is not None:
        problem = _messages_problem(row[message_key], message_key)
        if problem:
            return problem
    else:
        prompt = next((k for k in PROMPT_KEYS if k in row), None)
        response = next((k for k in RESPONSE_KEYS if k in row), None)
        for key in (prompt, response):
            if key is not None and not isinstance(row[key], str):
                return f"'{key}' must be text, found {type(row[key]).__name__}", "put the text in quotes"
        if kind == "pt":
            if response is None and prompt is None:
                return ("has no 'text'", 'pre-training rows look like {"text": "some document"}')
        elif response is None or prompt is None:
            if "chosen" in row or "rejected" in row:
                return (
                    "uses 'chosen'/'rejected', which ms-swift 4.6 does not read",
                    "name them 'response' and 'rejected_response' (with 'query' for the prompt)",
                )
            found = ", ".join(sorted(row)) or "nothing"
            return (
                f"has no conversation: found {found}",
                f"give 'messages' (user and assistant turns), or 'query' and 'response'; e.g. {EXAMPLE}",
            )
    if kind in PAIRWISE:
        rejected = row.get("rejected_response", row.get("rejected_messages"))
        if rejected is None:
            return (
                f"has no 'rejected_response' ({kind} learns from a better and a worse answer)",
                'add "rejected_response": "the worse answer" to every row',
            )
        if not isinstance(rejected, str | list) or rejected in ("", []):
            return "'rejected_response' is empty", "give the worse answer as text"
    if kind == "kto" and not isinstance(row.get("label"), bool | int):
        return (
            "has no 'label' (kto needs to know whether each answer is good)",
            'add "label": true for a good answer or false for a bad one',
        )
    return None


def _messages_problem(messages: Any, key: str) -> tuple[str, str] | None:
    if not isinstance(messages, list) or not messages:
        return f"'{key}' must be a non-empty list of turns", f"e.g. {EXAMPLE}"
    roles = []
    for index, turn in enumerate(messages, start=1):
        if not isinstance(turn, dict):
            return (
                f"turn {index} of '{key}' is not an object",
                'each turn looks like {"role": "user", "content": "..."}',
            )
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if not isinstance(role, str):
            return (
                f"turn {index} of '{key}' has no 'role'",
                "give each turn a role: system, user or assistant",
            )
        if role not in USER_ROLES | ASSISTANT_ROLES | OTHER_ROLES:
            return (
                f"turn {index} of '{key}' has the unknown role '{role}'",
                "use system, user, assistant (or tool)",
            )
        if content is None and role in USER_ROLES:
            return f"turn {index} of '{key}' has no 'content'", "give each turn its text in 'content'"
        if content is not None and not isinstance(content, str | list):
            return (
                f"turn {index} of '{key}' has content of type {type(content).__name__}",
                "put the text in quotes",
            )
        roles.append(role)
    if not any(r in ASSISTANT_ROLES for r in roles):
        return (
            f"'{key}' has no assistant turn, so there is nothing to learn",
            'add the answer as a turn with "role": "assistant"',
        )
    return None
