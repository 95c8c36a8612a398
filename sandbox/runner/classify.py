"""Why did ms-swift fail? Its exit status and last output lines -> (kind, message, hint).

The person reading the answer typed a chat command; they are not expected to read a
Python traceback. Each kind comes with a next step they can take themselves (or a clear
"ask an admin" when only an admin can). The order of the rules matters: an OOM often
drags other exceptions behind it, so memory wins over everything else.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    kind: str
    message: str
    hint: str


_OOM = re.compile(
    r"out of memory|OutOfMemoryError|Cannot allocate memory|can't allocate memory|"
    r"std::bad_alloc|MemoryError|CUBLAS_STATUS_ALLOC_FAILED",
    re.I,
)
_EMPTY_DATASET = re.compile(r"filtered dataset length: 0\b|train_dataset: None|num_rows: 0\b")
_DATASET = re.compile(
    r"DatasetNotFoundError|The local path does not exist, dataset_id|Dataset .* (?:not found|does not exist)|"
    r"Failed to load dataset|"
    r"JSONDecodeError|ArrowInvalid|JSON parse error|DatasetGenerationError|"
    r"KeyError: '(?:messages|query|response)'",
    re.I,
)
_ARGS = re.compile(
    r"unrecognized arguments|remaining_argv|the following arguments are required|invalid choice|"
    r"error: argument|Unknown (?:argument|flag)",
    re.I,
)
_AUTH = re.compile(
    r"\b40[13] (?:Client Error|Forbidden|Unauthorized)|status(?: code)?[ =:]+40[13]\b|"
    r"HTTP Error 40[13]|Unauthorized|Invalid (?:user )?token|gated repo|"
    r"Access to model .* is restricted|You must be authenticated",
    re.I,
)
_MODEL = re.compile(
    r"Repository Not Found|RepositoryNotFoundError|is not a local folder|"
    r"not a valid model identifier|does not appear to have a file named|"
    r"LocalEntryNotFoundError|Cannot find the requested files|model_type .* not (?:supported|found)|"
    r"Unrecognized model|Please (?:explicitly )?pass the model_type|"
    r"Failed to automatically match `(?:model_type|template_type)`|"
    r"No such file or directory: .*(?:config\.json|safetensors|\.bin)|"
    r"Can't load (?:the )?(?:tokenizer|config|model)|TemplateNotFound|template .* not found",
    re.I,
)
_TIMEOUT = re.compile(
    r"Read timed out|ReadTimeout|ConnectTimeout|timed out|Connection(?:Error| refused)|"
    r"Temporary failure in name resolution|Network is unreachable",
    re.I,
)
_ERROR_LINE = re.compile(r"^(?:[\w.]+(?:Error|Exception|Interrupt)|RuntimeError|AssertionError|error:)\b.*")


def last_error_line(lines: Sequence[str]) -> str:
    """The most telling line: the last `SomethingError: ...` line, else the last line."""
    for line in reversed(lines):
        stripped = line.strip()
        if _ERROR_LINE.match(stripped):
            return stripped[:500]
    return next((line.strip()[:500] for line in reversed(lines) if line.strip()), "")


def classify(returncode: int | None, lines: Sequence[str]) -> Failure:
    text = "\n".join(lines)
    detail = last_error_line(lines)
    killed = returncode is not None and returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    if killed or _OOM.search(text):
        how = "was killed by the system (out of memory)" if killed else "ran out of memory"
        return Failure(
            "oom",
            f"the training {how}",
            "lower the batch size or max_length, use QLoRA (tuner=qlora) instead of LoRA or full, "
            "or choose a machine with more memory (a bigger GPU)",
        )
    if _EMPTY_DATASET.search(text):
        return Failure(
            "dataset",
            "no training sample was left: every row is longer than max_length or could not be read",
            "raise max_length (e.g. max_length=2048) or shorten the rows; check that the rows "
            "have user and assistant turns",
        )
    if _AUTH.search(text):
        return Failure(
            "auth",
            f"the model hub refused access: {detail}",
            "this model needs a hub token with access: accept the model's licence on its page and "
            "ask an admin to set the token secret (HF_TOKEN or MODELSCOPE_API_TOKEN)",
        )
    if _ARGS.search(text):
        return Failure(
            "args",
            f"ms-swift rejected the command line: {detail}",
            "this is a mismatch between hammer and ms-swift; tell an admin the job id "
            "(the full log is in the job's artifacts)",
        )
    if _MODEL.search(text):
        return Failure(
            "model",
            f"the model could not be loaded: {detail}",
            "check the model name (`.models` lists the presets); a job without network can only use "
            "models already downloaded: run `.download MODEL` first",
        )
    if _DATASET.search(text):
        return Failure(
            "dataset",
            f"the dataset could not be read: {detail}",
            "check the dataset name, or that the file has one JSON object per line with "
            "'messages' (user and assistant turns)",
        )
    if _TIMEOUT.search(text):
        return Failure(
            "timeout",
            f"a network request timed out: {detail}",
            "try again later; if it keeps happening, download the model first with `.download`",
        )
    if returncode is not None and returncode < 0:
        name = (
            signal.Signals(-returncode).name
            if -returncode in signal.Signals._value2member_map_
            else str(returncode)
        )
        return Failure(
            "internal",
            f"ms-swift was stopped by signal {name}",
            "run the job again; if it happens again, tell an admin the job id",
        )
    return Failure(
        "internal",
        f"ms-swift exited with code {returncode}: {detail or 'no error message'}",
        "run the job again; if it fails the same way, tell an admin the job id "
        "(the full log is in the job's artifacts)",
    )
