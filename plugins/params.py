"""Parameters several verbs share (same name, same type, same help everywhere)."""

from __future__ import annotations

from gateway.commands import Param

HUB = Param("hub", "enum", "where to download models and datasets from", choices=("modelscope", "hf"),
            default="modelscope")
GPUS = Param("gpus", "int", "how many GPUs (0 runs on the CPU; default 0 for demo, 1 otherwise)",
             min=0, max=64)
SYSTEM = Param("system", "text", "system prompt for the chat template")
ADAPTER = Param("adapter", "job", "a finished fine-tune whose adapter (or weights) to use")
