"""The small demo LoRA command line the runner and image tests share: the same job
`.finetune demo-lora demo` runs, sized for a two-core CPU (6 steps)."""

from __future__ import annotations

from pathlib import Path


def demo_lora_argv(cache: Path, output: Path, epochs: int = 2) -> list[str]:
    """What the task plugins generate for `.finetune demo-lora demo` (kept small for a CPU)."""
    return [
        "swift",
        "sft",
        "--model",
        str(cache / "models" / "demo"),
        "--model_type",
        "qwen2",
        "--template",
        "qwen2_5",
        "--check_model",
        "false",
        "--dataset",
        str(cache / "datasets" / "demo.jsonl"),
        "--tuner_type",
        "lora",
        "--num_train_epochs",
        str(epochs),
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--max_length",
        "256",
        "--logging_steps",
        "1",
        "--save_steps",
        "50",
        "--eval_steps",
        "50",
        "--split_dataset_ratio",
        "0.1",
        "--report_to",
        "tensorboard",
        "--dataloader_num_workers",
        "0",
        "--dataset_num_proc",
        "1",
        "--output_dir",
        str(output),
    ]
