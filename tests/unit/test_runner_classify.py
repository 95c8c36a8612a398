"""Failure classification from ms-swift's real last lines; every kind has an actionable hint."""

from __future__ import annotations

import signal

import pytest

from sandbox.runner.classify import classify, last_error_line

CASES = [
    (
        1,
        [
            "Traceback (most recent call last):",
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
            "2.00 GiB. GPU 0 has a total capacity of 23.64 GiB",
        ],
        "oom",
    ),
    (-signal.SIGKILL, ["Train:  40%|"], "oom"),
    (137, [], "oom"),
    (
        1,
        [
            "[INFO:swift] Dataset filtered, origin length: 40, filtered dataset length: 0",
            "ValueError: train_dataset is empty",
        ],
        "dataset",
    ),
    (
        1,
        [
            "    raise ValueError(f'remaining_argv: {remaining_argv}')",
            "ValueError: remaining_argv: ['--bogus_flag', '1']",
        ],
        "args",
    ),
    (2, ["sft.py: error: unrecognized arguments: --train_type lora"], "args"),
    (
        1,
        [
            "ValueError: Failed to automatically match `model_type` for `/cache/models/x`. Multiple possible "
            "types found: ['qwen2', 'qwen2_gte']. Please specify `model_type` manually."
        ],
        "model",
    ),
    (
        1,
        ["huggingface_hub.errors.RepositoryNotFoundError: 404 Client Error. Repository Not Found for url"],
        "model",
    ),
    (
        1,
        ["requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://huggingface.co/x"],
        "auth",
    ),
    (1, ["OSError: You are trying to access a gated repo. Make sure to have access to it"], "auth"),
    (
        1,
        [
            "ValueError: The local path does not exist, dataset_id: `/workspace/d.jsonl`. "
            "os.path.exists(dataset_id): False"
        ],
        "dataset",
    ),
    (1, ["requests.exceptions.ConnectionError: HTTPSConnectionPool(host='x'): Read timed out."], "timeout"),
    (1, ["RuntimeError: something nobody expected"], "internal"),
]


@pytest.mark.parametrize(("code", "lines", "kind"), CASES)
def test_kind_and_hint(code: int, lines: list[str], kind: str) -> None:
    failure = classify(code, lines)
    assert failure.kind == kind
    assert failure.hint and failure.message


def test_oom_hint_names_what_a_user_can_change() -> None:
    hint = classify(-signal.SIGKILL, []).hint
    assert "batch size" in hint and "max_length" in hint and "QLoRA" in hint


def test_empty_dataset_hint_says_raise_max_length() -> None:
    assert "max_length" in classify(1, ["filtered dataset length: 0"]).hint


def test_numbers_in_training_logs_are_not_auth_errors() -> None:
    lines = ["{'loss': '0.401', 'global_step/max_steps': '401/403'}", "RuntimeError: boom"]
    assert classify(1, lines).kind == "internal"


def test_message_quotes_the_last_error_line() -> None:
    lines = ["Traceback (most recent call last):", '  File "x.py", line 1', "KeyError: 'foo'", "", "exiting"]
    assert last_error_line(lines) == "KeyError: 'foo'"
    assert "KeyError: 'foo'" in classify(3, lines).message
