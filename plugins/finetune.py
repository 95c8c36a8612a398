"""Training verbs: `finetune` (sft), `pretrain` (pt) and `align` (rlhf: dpo, kto, orpo,
simpo), each mapping typed chat options to one ms-swift 4.6 command line.

`finetune` and `pretrain` also run under Megatron-LM (`megatron=true tp=2 pp=2 sp=true`)
for models too large for one GPU: the same options, `megatron sft|pt` instead of
`swift sft|pt`. The flags each option becomes are listed in docs/tasks.md.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.commands import CommandSpec
from gateway.contracts import JobContext
from gateway.hookspecs import RegisterCommand, hookimpl
from gateway.model import Command, JobSpec
from plugins.training import ALIGN_PARAMS, MEGATRON_PARAMS, TRAIN_PARAMS, build_training_job

FINETUNE_PARAMS = TRAIN_PARAMS + MEGATRON_PARAMS
PRETRAIN_PARAMS = TRAIN_PARAMS + MEGATRON_PARAMS
ALIGN_VERB_PARAMS = TRAIN_PARAMS + ALIGN_PARAMS


def _builder(task: str) -> Callable[[Command, JobContext], JobSpec]:
    def build(command: Command, ctx: JobContext) -> JobSpec:
        return build_training_job(command, ctx, task=task)
    return build


FINETUNE = CommandSpec(
    verb="finetune", aliases=("train", "sft"), params=FINETUNE_PARAMS,
    help="Supervised fine-tuning (ms-swift sft) of a model on a dataset.",
    examples=(".finetune demo-lora demo", ".finetune qwen-7b-lora alpaca-zh epochs=2",
              ".finetune qwen-7b-qlora upload:faq.jsonl max_length=1024",
              ".finetune llama3-70b-lora alpaca-en megatron=true tp=4 pp=2 gpus=8 sp=true"),
    build_job=_builder("sft"),
)

PRETRAIN = CommandSpec(
    verb="pretrain", aliases=("pt",), params=PRETRAIN_PARAMS,
    help="Continued pre-training (ms-swift pt) on plain text.",
    examples=(".pretrain demo-lora demo", ".pretrain qwen-7b-full wiki_zh gpus=8"),
    build_job=_builder("pt"),
)

ALIGN = CommandSpec(
    verb="align", aliases=("rlhf",), params=ALIGN_VERB_PARAMS,
    help="Preference alignment (ms-swift rlhf): dpo, kto, orpo or simpo.",
    examples=(".align demo-lora demo method=dpo", ".align qwen-7b-lora dpo-emoji method=simpo gamma=1",
              ".align qwen-7b-lora ultrafeedback-kto method=kto"),
    build_job=_builder("rlhf"),
)


@hookimpl
def hammer_commands(register: RegisterCommand) -> None:
    for spec in (FINETUNE, PRETRAIN, ALIGN):
        register(spec)
