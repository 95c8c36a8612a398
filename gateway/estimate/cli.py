"""`hammer estimate MODEL ...`: the estimate, the cheapest machine and the alternatives,
as a table or (`--json`) one JSON object. Exit 0, or 2 with a message on bad input."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gateway.catalog import ModelArch, UnknownModelError, load_instances, resolve_model
from gateway.estimate.hints import local_host_instance
from gateway.estimate.inputs import custom_arch
from gateway.estimate.memory import BREAKDOWN_KEYS, GIB, TASKS, TUNERS, EstimateError, estimate
from gateway.estimate.picker import DEFAULT_HEADROOM, Plan, pick
from gateway.model import InstanceType

LOCAL_CLOUDS = ("docker", "local")
#: CLI flag -> ModelArch field, for models outside the catalog (or to override one).
ARCH_FLAGS = {"layers": "layers", "hidden_size": "hidden_size", "intermediate_size": "intermediate_size",
              "heads": "heads", "kv_heads": "kv_heads", "vocab_size": "vocab_size",
              "max_context": "max_context", "tied_embeddings": "tied_embeddings"}
_LABELS = {"weights": "weights", "reference_model": "reference model (DPO)",
           "trainable_weights": "adapter weights", "gradients": "gradients", "optimizer": "optimizer (AdamW)",
           "master_weights": "fp32 master weights", "optimizer_step": "optimizer step temporaries",
           "activations": "activations", "logits": "logits / loss", "kv_cache": "KV cache",
           "comm_buffers": "communication buffers", "cuda_context": "CUDA context",
           "allocator_overhead": "allocator overhead"}


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `estimate` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "estimate", help="GPU memory estimate and the cheapest machine that fits",
        description="Estimate the GPU memory a job needs (with a breakdown), pick the cheapest machine "
        "that holds it with 10% headroom, and list alternatives (QLoRA, more GPUs with ZeRO-3, "
        "Megatron TP/PP, shorter max_length). Models outside the catalog: --params and the shape flags.",
        epilog="Examples: hammer estimate qwen-7b --tuner qlora | hammer estimate llama3-70b --tuner full "
        "--gpus 8 --zero 3 --json | hammer estimate my-model --params 7.6e9 --layers 32 --hidden-size 4096")
    p.add_argument("model", help="preset (qwen2.5-7b), alias (qwen-7b), hub id, or any name with --params")
    p.add_argument("--tuner", choices=TUNERS, default="lora", help="default lora")
    p.add_argument("--task", choices=TASKS, default="sft", help="default sft")
    p.add_argument("--max-length", type=int, metavar="N",
                   help="tokens per sample (default 2048, or the model's context if shorter)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="per-GPU batch size (default 1)")
    p.add_argument("--gpus", type=int, metavar="N", help="GPUs for the job (default: 1, or 2/4/8 when that is "
                   "the cheapest machine that holds it)")
    p.add_argument("--zero", type=int, choices=(2, 3), help="DeepSpeed ZeRO stage")
    p.add_argument("--tp", type=int, default=1, metavar="N", help="Megatron tensor parallel size")
    p.add_argument("--pp", type=int, default=1, metavar="N", help="Megatron pipeline parallel size")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--clouds", metavar="LIST", help="comma-separated clouds to choose from (default: every "
                   "cloud in the catalog: aws,gcp); 'docker' adds this host")
    arch = p.add_argument_group("models outside the catalog")
    arch.add_argument("--params", type=float, metavar="N", help="parameter count, e.g. 7.6e9")
    arch.add_argument("--layers", type=int, metavar="N")
    arch.add_argument("--hidden-size", type=int, metavar="N")
    arch.add_argument("--intermediate-size", type=int, metavar="N")
    arch.add_argument("--heads", type=int, metavar="N", help="attention heads")
    arch.add_argument("--kv-heads", type=int, metavar="N", help="key/value heads (GQA)")
    arch.add_argument("--vocab-size", type=int, metavar="N")
    arch.add_argument("--max-context", type=int, metavar="N")
    arch.add_argument("--tied-embeddings", action="store_true", default=None,
                      help="the LM head shares the input embedding")
    return p


def _arch_from_args(args: argparse.Namespace) -> ModelArch | str:
    shape = {field: getattr(args, flag, None) for flag, field in ARCH_FLAGS.items()}
    shape = {k: v for k, v in shape.items() if v is not None}
    params = getattr(args, "params", None)
    if params is None and not shape:
        return str(args.model)
    try:
        known = resolve_model(args.model)
    except UnknownModelError:
        if params is None:
            raise EstimateError(f"unknown model {args.model!r}: shape flags need --params too",
                                "e.g. --params 7.6e9 --layers 28 --hidden-size 3584") from None
        return custom_arch(args.model, params, **shape)
    changes: dict[str, Any] = {**shape, **({"params": int(params)} if params else {})}
    if "hidden_size" in shape or "heads" in shape:
        changes["head_dim"] = 0
    try:
        return dataclasses.replace(known, **changes)
    except ValueError as exc:
        raise EstimateError(f"inconsistent architecture: {exc}") from None


def _instances(clouds_arg: str | None) -> list[InstanceType]:
    if not clouds_arg:
        return load_instances()
    clouds = {c.strip().lower() for c in clouds_arg.split(",") if c.strip()}
    known = {i.cloud for i in load_instances()} | set(LOCAL_CLOUDS)
    unknown = sorted(clouds - known)
    if unknown:
        raise EstimateError(f"unknown cloud(s) {', '.join(unknown)}",
                            f"choose from {', '.join(sorted(known))}")
    pool = load_instances(clouds - set(LOCAL_CLOUDS))
    if clouds & set(LOCAL_CLOUDS):
        pool.append(local_host_instance())
    return pool


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The Plan `hammer estimate` shows (raises EstimateError on bad input)."""
    est = estimate(_arch_from_args(args), tuner=args.tuner, task=args.task, max_length=args.max_length,
                   batch_size=args.batch_size, gpus=args.gpus or max(1, args.tp * args.pp), zero=args.zero,
                   tp=args.tp, pp=args.pp)
    fixed = args.gpus is not None or args.zero is not None or args.tp * args.pp > 1
    return pick(est, instances=_instances(getattr(args, "clouds", None)),
                headroom=getattr(args, "headroom", None) or DEFAULT_HEADROOM,
                train_tokens=getattr(args, "train_tokens", None), auto_gpus=not fixed)


def run_cli(args: argparse.Namespace) -> int:
    """Run `hammer estimate` for parsed `args`: 0 after printing the plan, 2 on bad input."""
    try:
        plan = plan_from_args(args)
    except EstimateError as exc:
        if getattr(args, "json", False):
            print(json.dumps(exc.to_dict()))
        else:
            print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        render(plan, Console())
    return 0


def describe_machine(instance: InstanceType) -> str:
    """`gcp g2-standard-4 (1x L4, 24.0 GiB)`, or `docker local (CPU only, 62.0 GiB RAM)`."""
    if instance.gpu_count:
        hw = f"{instance.gpu_count}x {instance.gpu}, {instance.gpu_memory_mib / 1024:.1f} GiB"
    else:
        hw = f"CPU only, {instance.ram_gib:.1f} GiB RAM"
    return f"{instance.cloud} {instance.instance_type} ({hw})"


def render(plan: Plan, console: Console) -> None:
    """The plan as rich tables: the breakdown, the machine, the alternatives, the notes."""
    est = plan.estimate
    parallel = (f", ZeRO-{est.zero}" if est.zero else "") + (
        f", TP={est.tp} PP={est.pp}" if est.tp * est.pp > 1 else "")
    table = Table(title=escape(f"{est.arch.display_name or est.model}: {est.tuner} {est.task}"),
                  caption=escape(f"max_length {est.max_length}, batch {est.batch_size}, {est.gpus} GPU(s) "
                                 f"({est.backend}{parallel})"), show_footer=True)
    table.add_column("per GPU", footer="total")
    table.add_column("GiB", justify="right", footer=f"{est.per_gpu_gib:.2f}")
    for key in BREAKDOWN_KEYS:
        value = est.breakdown[key]
        if value:
            table.add_row(_LABELS[key], f"{value / GIB:.2f}")
    console.print(table)
    console.print(f"Trainable parameters: {est.trainable_params:,}; "
                  f"all GPUs together: {est.total_gib:.1f} GiB")
    rec = plan.recommendation
    if rec:
        console.print(f"[bold green]Cheapest fit:[/] {escape(describe_machine(rec.instance))} at "
                      f"${rec.instance.price_per_hour:.2f}/h; ~{rec.tokens_per_second:,.0f} tokens/s, "
                      f"${rec.usd_per_million_tokens:.2f} per 1M tokens")
    else:
        console.print(f"[bold red]Does not fit:[/] {escape(plan.reason)}")
    if plan.alternatives:
        alt = Table(title="Cheaper alternatives" if rec else "What would fit")
        for col, justify in (("change", "left"), ("GiB/GPU", "right"), ("machine", "left"), ("$/h", "right")):
            alt.add_column(col, justify=justify)  # type: ignore[arg-type]
        for a in plan.alternatives:
            i = a.choice.instance
            alt.add_row(escape(a.summary), f"{a.estimate.per_gpu_gib:.1f}", escape(describe_machine(i)),
                        f"{i.price_per_hour:.2f}")
        console.print(alt)
    for note in (*est.notes, *plan.notes):
        console.print(f"note: {escape(note)}")
