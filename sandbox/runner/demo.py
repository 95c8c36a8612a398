"""The `demo` preset: a tiny random Qwen2 and a small chat dataset, made locally.

They exist so that `.finetune demo-lora demo` and the tests run anywhere, with no model
hub: the model is randomly initialised (2 layers, hidden size 64) and warmed up for a few
seconds on built-in word drills, its byte-level BPE tokenizer is trained here on the
built-in text below, and both are written with `save_pretrained` so ms-swift loads them
like any local model (`--model_type qwen2 --template qwen2_5`).

Jobs share /cache, so creation is atomic (build in a temp dir, then rename) and guarded
by a lock file: two jobs starting at once never see a half-written model.

`python3 -m sandbox.runner.demo model|dataset PATH` makes one; the runner calls the model
builder in a child process so torch/transformers never stay loaded in the runner itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1024
SEED = 1234
WARM_UP_STEPS = 200

#: (question, answer) pairs; the dataset is these, the tokenizer is trained on them and more.
PAIRS: tuple[tuple[str, str], ...] = (
    ("What is hammer?", "hammer is a chat gateway that fine-tunes language models on request."),
    ("What does one strike of the hammer do?", "It settles the matter: one command, one result."),
    ("How do I start a fine-tune?", "Type .finetune followed by a model preset and a dataset."),
    ("What is LoRA?", "LoRA trains small low-rank adapters instead of all the weights."),
    ("What is QLoRA?", "QLoRA trains LoRA adapters on a model quantized to four bits."),
    ("What is a loss curve?", "A plot of the training loss per step; it should go down."),
    ("Why did my job run out of memory?", "The batch or the sequences were too large for the GPU."),
    ("How can I lower memory use?", "Use a smaller batch size, a shorter max length, or QLoRA."),
    ("What is an epoch?", "One full pass over the training dataset."),
    ("What is a learning rate?", "The size of each update step the optimizer takes."),
    ("What is a checkpoint?", "A saved copy of the weights at one training step."),
    ("What is an adapter?", "A small set of extra weights that changes how a base model behaves."),
    ("Where is my adapter?", "The report links to the adapter directory of the last checkpoint."),
    ("What is a dataset?", "A file of examples the model learns from, one JSON object per line."),
    ("What format should my data have?", "JSON lines with a messages list of user and assistant turns."),
    ("Can I cancel a job?", "Yes, press the cancel button under the progress message."),
    ("What does the sandbox do?", "It runs each job in a locked-down container without network access."),
    ("Which GPU do I need?", "hammer estimates the memory and picks the cheapest machine that fits."),
    ("What is ms-swift?", "A training framework from ModelScope that hammer runs inside the sandbox."),
    ("What is a tokenizer?", "It turns text into the numbers a model reads, and back."),
    ("Say hello.", "Hello! I am a tiny demo model."),
    ("Tell me a fact about the sea.", "The sea covers most of the surface of the Earth."),
    ("Tell me a fact about the sun.", "The sun is a star at the centre of our solar system."),
    ("Tell me a fact about trees.", "Trees take in carbon dioxide and give out oxygen."),
    ("What colour is the sky?", "On a clear day the sky is blue."),
    ("What is two plus two?", "Two plus two is four."),
    ("What is ten minus three?", "Ten minus three is seven."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("Name a planet.", "Mars is a planet."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("How many hours are in a day?", "There are twenty four hours in a day."),
    ("What do bees make?", "Bees make honey."),
    ("What do cows drink?", "Cows drink water."),
    ("Where do fish live?", "Fish live in water."),
    ("What is ice?", "Ice is frozen water."),
    ("Translate hello to French.", "Bonjour."),
    ("Translate thank you to German.", "Danke."),
    ("Give me a short poem.", "Small model, small weights, learning one step at a time."),
    ("Are you a large model?", "No, I am a very small random model made for demos."),
    ("Goodbye.", "Goodbye, and good luck with your fine-tune!"),
)

_WORDS = (
    "model data train step loss rate batch length token adapter weight layer epoch "
    "gpu memory chat command result report sample prompt answer question dataset"
).split()


#: Which rows each demo dataset kind holds (the prepare item names the plugins use).
DATASET_KINDS = ("sft", "preference", "kto")


def dataset_rows(kind: str = "sft") -> list[dict[str, Any]]:
    """sft: the Q&A pairs; preference: plus a worse answer (another pair's) as
    `rejected_response` (dpo, orpo, simpo, cpo, rm); kto: every question twice, with its
    own answer (`label` true) and with another one (`label` false)."""
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown demo dataset kind {kind!r}")
    rows: list[dict[str, Any]] = []
    for i, (q, a) in enumerate(PAIRS):
        wrong = PAIRS[(i + 7) % len(PAIRS)][1]
        messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if kind == "sft":
            rows.append({"messages": messages})
        elif kind == "preference":
            rows.append({"messages": messages, "rejected_response": wrong})
        else:
            rows.append({"messages": messages, "label": True})
            rows.append({"messages": [messages[0], {"role": "assistant", "content": wrong}], "label": False})
    return rows


def corpus() -> list[str]:
    """A few hundred lines: the pairs, their chat renderings and word drills."""
    lines: list[str] = []
    for q, a in PAIRS:
        lines += [q, a, f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>"]
    for i, word in enumerate(_WORDS):
        for j in range(8):
            other = _WORDS[(i * 7 + j * 3) % len(_WORDS)]
            lines.append(f"The {word} and the {other} number {i * 8 + j} are part of training.")
    return lines


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_dataset(path: Path, kind: str = "sft") -> bool:
    """Write the demo JSONL of `kind` at `path` unless it is there; True when created."""
    if path.is_file() and path.stat().st_size > 0:
        return False
    with _locked(path):
        if path.is_file() and path.stat().st_size > 0:
            return False
        write_jsonl(path, dataset_rows(kind))
        return True


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically: readers see the old file or the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def ensure_model(path: Path) -> bool:
    """Make the tiny Qwen2 at `path` unless it is there; True when it was created."""
    if (path / "config.json").is_file():  # made by an earlier job (the cache may be read-only now)
        return False
    with _locked(path):
        if (path / "config.json").is_file():
            return False
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            _build_model(tmp)
            os.chmod(tmp, 0o755)
            if path.exists():  # a broken leftover without config.json
                shutil.rmtree(path)
            os.rename(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True


def _build_model(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer.save_pretrained(out)
    eos, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=None,
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config)
    _warm_up(model, tokenizer, torch)
    model.save_pretrained(out)
    GenerationConfig(eos_token_id=[eos, pad], pad_token_id=pad, do_sample=False).save_pretrained(out)
    for path in out.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _warm_up(model: Any, tokenizer: Any, torch: Any, steps: int = WARM_UP_STEPS) -> None:
    """A few seconds of training on the word drills (never on the demo Q&A pairs).

    A purely random model answers with nothing but newlines, which looks broken in chat.
    After this it speaks in (silly) words and ends its turn with <|im_end|>, while the
    demo dataset is still new to it, so a fine-tune shows a real, falling loss curve.
    """
    drills = [line for line in corpus() if line.startswith("The ")]
    texts = [f"<|im_start|>user\nRepeat: {s}<|im_end|>\n<|im_start|>assistant\n{s}<|im_end|>" for s in drills]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    labels = batch.input_ids.clone()
    labels[batch.attention_mask == 0] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(texts), (32,), generator=generator)
        loss = model(
            input_ids=batch.input_ids[idx], attention_mask=batch.attention_mask[idx], labels=labels[idx]
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("model", "dataset"):
        print("usage: python3 -m sandbox.runner.demo model|dataset PATH", file=sys.stderr)
        return 2
    made = (ensure_model if argv[0] == "model" else ensure_dataset)(Path(argv[1]))
    print(json.dumps({"created": made, "path": argv[1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
