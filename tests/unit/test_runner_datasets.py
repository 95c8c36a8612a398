"""Dataset validation: the first bad line, by number, with what is wrong and how to fix it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.runner import demo
from sandbox.runner.dataset_check import DatasetProblem, validate_file

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _problem(path: Path, kind: str = "sft") -> DatasetProblem:
    with pytest.raises(DatasetProblem) as info:
        validate_file(path, kind)
    return info.value


def test_the_demo_datasets_are_valid_for_their_tasks(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    assert demo.ensure_dataset(path) is True
    assert demo.ensure_dataset(path) is False  # already there: untouched
    assert validate_file(path) == len(demo.PAIRS) == 40
    assert demo.ensure_dataset(tmp_path / "pref.jsonl", "preference") is True
    for kind in ("dpo", "orpo", "simpo", "cpo", "sft"):
        assert validate_file(tmp_path / "pref.jsonl", kind) == 40
    assert "rejected_response" in _problem(path, "dpo").problem
    demo.ensure_dataset(tmp_path / "kto.jsonl", "kto")
    assert validate_file(tmp_path / "kto.jsonl", "kto") == 80
    labels = [json.loads(line)["label"] for line in (tmp_path / "kto.jsonl").read_text().splitlines()]
    assert labels.count(True) == labels.count(False) == 40


@pytest.mark.parametrize(
    "row",
    [
        GOOD,
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"query": "Hi", "response": "Hello"},
        {"instruction": "Translate", "input": "Hallo", "output": "Hello"},
        {"system": "be brief", "messages": GOOD["messages"]},
    ],
)
def test_formats_ms_swift_reads(tmp_path: Path, row: dict) -> None:
    assert validate_file(_write(tmp_path, json.dumps(row), "", json.dumps(GOOD))) == 2


def test_broken_json_names_the_line_and_column(tmp_path: Path) -> None:
    problem = _problem(_write(tmp_path, json.dumps(GOOD), json.dumps(GOOD), '{"messages": [}'))
    assert problem.line == 3
    assert "data.jsonl, line 3" in problem.message and "not valid JSON" in problem.message
    assert "one JSON object" in problem.hint


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ([1, 2], "not an object"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "user", "content": "Hi"}]}, "no assistant turn"),
        (
            {"messages": [{"role": "robot", "content": "Hi"}, {"role": "assistant", "content": "x"}]},
            "unknown role",
        ),
        ({"messages": [{"content": "Hi"}]}, "no 'role'"),
        ({"question_text": "Hi", "reply": "Hello"}, "no conversation: found question_text, reply"),
        ({"query": 3, "response": "x"}, "must be text"),
    ],
)
def test_row_problems_for_sft(tmp_path: Path, row: object, words: str) -> None:
    problem = _problem(_write(tmp_path, json.dumps(GOOD), json.dumps(row)))
    assert problem.line == 2 and words in problem.problem


def test_pretraining_reads_text(tmp_path: Path) -> None:
    assert validate_file(_write(tmp_path, '{"text": "a document"}'), "pt") == 1
    assert "no 'text'" in _problem(_write(tmp_path, '{"title": "x"}'), "pt").problem


def test_dpo_needs_a_rejected_answer(tmp_path: Path) -> None:
    good = dict(GOOD, rejected_response="Go away")
    assert validate_file(_write(tmp_path, json.dumps(good)), "dpo") == 1
    problem = _problem(_write(tmp_path, json.dumps(good), json.dumps(GOOD)), "dpo")
    assert (
        problem.line == 2 and "rejected_response" in problem.problem and "rejected_response" in problem.hint
    )
    chosen = _problem(
        _write(tmp_path, json.dumps({"prompt": "Hi", "chosen": "Hello", "rejected": "No"})), "dpo"
    )
    assert "chosen" in chosen.problem and "rejected_response" in chosen.hint


def test_kto_needs_a_label(tmp_path: Path) -> None:
    assert validate_file(_write(tmp_path, json.dumps(dict(GOOD, label=True))), "kto") == 1
    assert "label" in _problem(_write(tmp_path, json.dumps(GOOD)), "kto").problem


def test_empty_missing_and_binary_files(tmp_path: Path) -> None:
    assert "no rows" in _problem(_write(tmp_path, "", "  ")).problem
    assert "does not exist" in _problem(tmp_path / "nope.jsonl").problem
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\x00\n")
    problem = _problem(binary)
    assert problem.line == 2 and "UTF-8" in problem.problem


def test_a_json_array_file_is_read_as_items(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([GOOD, GOOD], indent=2))
    assert validate_file(path) == 2
    path.write_text(json.dumps([GOOD, {"messages": []}], indent=2))
    problem = _problem(path)
    assert problem.line == 2 and problem.message.startswith("dataset rows.json: item 2 ")
    path.write_text('[\n  {"a": 1},\n  oops\n]')
    assert "line 3" in _problem(path).problem
