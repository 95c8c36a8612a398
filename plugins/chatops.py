"""Built-in chat verbs that start no job: help, status, jobs, logs, cancel, plan,
approve, deny. Like errbot, hammer builds its own core features as plugins, through the
same `hammer_commands` hook a third-party plugin would use.
"""

from __future__ import annotations

import time
from typing import Any

from gateway import messages
from gateway.commands import CommandError, CommandSpec, Param
from gateway.contracts import GatewayAPI
from gateway.hookspecs import RegisterCommand, hookimpl
from gateway.model import Command, Job, OutboundMessage

JOB = Param("job", "job", "the job id (see .jobs)", required=True, positional=True)


async def _help(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    verb = cmd.args.get("verb")
    return messages.text_message(api.help_text(cmd.actor, verb), title=f"help {verb}" if verb else "hammer commands")


async def _job_or_error(api: GatewayAPI, job_id: str) -> Job:
    job = await api.store.get_job(job_id)
    if job is None:
        raise CommandError("unknown_job", f"There is no job {job_id}.", "See .jobs for the list of jobs.")
    return job


async def _status(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    if "job" not in cmd.args:
        jobs = await api.store.list_jobs(requester=cmd.actor.key, limit=1)
        if not jobs:
            return messages.text_message("You have no jobs. Try .finetune demo-lora demo", "status")
        job = jobs[0]
    else:
        job = await _job_or_error(api, cmd.args["job"])
    msg = messages.progress_message(job, time.time())
    # Fresh links: the ones in the report expire (artifacts.link_ttl).
    links = tuple((name.replace("_", " ").capitalize(), url) for name, url in (await api.artifact_links(job)).items())
    return OutboundMessage(title=msg.title, text=msg.text, fields=msg.fields + links, progress=msg.progress,
                           level=msg.level, footer=msg.footer)


async def _uploads(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    names = api.uploads(cmd.actor)
    if not names:
        return messages.text_message("You have uploaded no datasets. Attach a .jsonl file in the chat, then train "
                                     "with upload:NAME.", "Your uploads")
    return messages.text_message("\n".join(f"upload:{n}" for n in names), "Your uploads")


async def _jobs(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    everyone = cmd.args.get("all", False)
    jobs = await api.store.list_jobs(requester=None if everyone else cmd.actor.key,
                                        limit=int(cmd.args.get("limit", 10)))
    return messages.job_list(jobs, time.time())


async def _logs(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    job = await _job_or_error(api, cmd.args["job"])
    events = await api.store.events(job.id, types=("log", "error", "status"))
    n = int(cmd.args.get("lines", 20))
    lines = []
    for e in events[-n:]:
        if e.type == "log":
            lines.append(str(e.data.get("line", "")))
        elif e.type == "error":
            lines.append(f"ERROR {e.data.get('kind')}: {e.data.get('message')}")
        else:
            lines.append(f"[{e.data.get('phase')}]")
    text = "\n".join(lines)[-1800:] or "(no output yet)"
    return messages.text_message(text, title=f"Last {min(n, len(events))} lines of job {job.id}")


async def _cancel(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    job = await api.cancel_job(cmd.args["job"], cmd.actor)
    return messages.text_message(f"Job {job.id} is {job.state.value}.", level="warning")


async def _approval(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    if cmd.verb == "approve":
        job = await api.approve_job(cmd.args["job"], cmd.actor)
    else:
        job = await api.deny_job(cmd.args["job"], cmd.actor)
    return messages.text_message(f"Job {job.id} is {job.state.value}.")


async def _plan(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    planned = await api.plan(cmd.args["command"])
    spec = planned.spec
    fields = [("Task", spec.task), ("Model", spec.model), ("Data", ", ".join(spec.datasets) or "–"),
              ("Runs on", spec.cloud), ("Image", spec.image),
              ("Resources", f"{spec.resources.gpu_count} GPU, {spec.resources.memory_gib:g} GiB RAM, "
                            f"{spec.resources.cpus:g} CPUs"),
              ("Time limit", messages.duration(spec.limits.max_runtime_s))]
    est = planned.estimate or {}
    if est.get("per_gpu_gib") is not None:
        fields.append(("GPU memory", f"{est['per_gpu_gib']:.1f} GiB per GPU"))
    rec = est.get("recommendation") or {}
    if rec:
        hw = f"{rec.get('gpu_count')}x {rec.get('gpu')}, ${rec.get('price_per_hour')}/h"
        fields.append(("Cheapest machine", f"{rec.get('cloud')} {rec.get('instance_type')} ({hw})"))
    elif est.get("reason"):
        fields.append(("Cheapest machine", f"none fits: {est['reason']}"))
    if planned.fit_error is not None:
        fields.append((f"On {spec.cloud}", f"does not fit: {planned.fit_error.message}"))
    cost = planned.cost
    fields.append(("Estimated cost", (f"${cost.estimated_usd:.2f}" if cost.estimated_usd is not None else "unknown")
                   + f" ({cost.basis})"))
    d = planned.decision
    if not d.allowed:
        fields.append(("Policy", "refused: " + "; ".join(d.reasons)))
    elif d.needs_approval:
        fields.append(("Policy", "needs an admin's approval (over policy.require_approval_over_usd)"))
    return OutboundMessage(title="Plan (nothing was started)", text="Command line: " + " ".join(spec.argv),
                           fields=tuple(fields))


async def _estimate(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    import asyncio

    from gateway import estimate as est_mod
    from gateway.commands import split_model_ref
    a = cmd.args
    model, tuner = split_model_ref(a["model"])
    zero = a.get("zero")

    def run() -> Any:
        est = est_mod.estimate(model, tuner=a.get("tuner") or tuner or "lora", task=a.get("task", "sft"),
                               max_length=a.get("max_length"), batch_size=a.get("batch_size", 1),
                               gpus=a.get("gpus") or 1, zero=int(zero) if zero else None,
                               tp=a.get("tp", 1), pp=a.get("pp", 1))
        return est_mod.pick(est, headroom=api.settings.jobs.headroom, auto_gpus=a.get("gpus") is None)

    try:
        plan = await asyncio.to_thread(run)
    except est_mod.EstimateError as exc:
        raise CommandError("bad_estimate", exc.message, exc.hint or "See .help estimate.") from None
    return messages.text_message(plan.summary(), title=f"GPU memory estimate for {a['model']}",
                               level="info" if plan.fits else "warning")


async def _invite(cmd: Command, api: GatewayAPI) -> OutboundMessage:
    if cmd.conversation.platform != "web":
        raise CommandError("not_here", "A sign-in link is shown only to the admin who asks, which this chat "
                           "cannot do.", "Use .invite in hammer's web chat, or `hammer users add NAME` on the "
                           "gateway's machine.")
    link = await api.invite(cmd.actor, cmd.args["name"], cmd.args.get("role", "member"))
    return OutboundMessage(title=f"Sign-in link for {cmd.args['name']} (only you see this)",
                           text=f"Send it to them; it works once: {link}", level="success", private=True)


@hookimpl
def hammer_commands(register: RegisterCommand) -> None:
    register(CommandSpec("invite", (Param("name", "text", "the new account's name", required=True, positional=True),
                                    Param("role", "enum", "what they may do", choices=("viewer", "member", "trainer",
                                                                                       "admin"), default="member")),
                         help="admins: make a web account and get its one-time sign-in link", handle=_invite,
                         group="admin", examples=(".invite carol role=trainer",)))
    register(CommandSpec(
        "estimate", (Param("model", "model", "preset (qwen-7b, llama3-70b...) or hub id", required=True,
                           positional=True),
                     Param("tuner", "enum", "how to train", choices=("lora", "qlora", "full")),
                     Param("task", "enum", "what to run", choices=("sft", "pt", "dpo", "infer")),
                     Param("max_length", "int", "tokens per sample", min=16, max=1_048_576),
                     Param("batch_size", "int", "samples per GPU per step", min=1, max=4096),
                     Param("gpus", "int", "GPUs", min=1, max=1024),
                     Param("zero", "enum", "DeepSpeed ZeRO stage", choices=("2", "3")),
                     Param("tp", "int", "Megatron tensor parallel size", min=1, max=64),
                     Param("pp", "int", "Megatron pipeline parallel size", min=1, max=64)),
        help="GPU memory a job needs and the cheapest machine that fits", handle=_estimate, group="help",
        examples=(".estimate qwen-7b-lora", ".estimate llama3-70b tuner=full gpus=8 zero=3")))
    register(CommandSpec("help", (Param("verb", "verb", "a command to explain", positional=True),),
                         help="list the commands, or explain one", handle=_help, group="help",
                         examples=(".help", ".help finetune")))
    register(CommandSpec("status", (Param("job", "job", "the job id (default: your latest)", positional=True),),
                         help="show a job's progress", handle=_status, group="jobs", examples=(".status 3f9c2a1b",)))
    register(CommandSpec("jobs", (Param("all", "bool", "everyone's jobs, not only yours", default=False),
                                  Param("limit", "int", "how many", min=1, max=50, default=10)),
                         help="list recent jobs", handle=_jobs, group="jobs"))
    register(CommandSpec("uploads", help="list the datasets you uploaded (use them as upload:NAME)",
                         handle=_uploads, group="jobs"))
    register(CommandSpec("logs", (JOB, Param("lines", "int", "how many lines", min=1, max=200, default=20)),
                         help="show a job's last output lines", handle=_logs, group="jobs"))
    register(CommandSpec("cancel", (JOB,), help="stop a job (yours, or any if you are an admin)",
                         handle=_cancel, group="jobs", examples=(".cancel 3f9c2a1b",)))
    register(CommandSpec("approve", (JOB,), help="admins: let a job that waits for approval start",
                         handle=_approval, group="admin"))
    register(CommandSpec("deny", (JOB,), help="admins: refuse a job that waits for approval",
                         handle=_approval, group="admin"))
    register(CommandSpec("plan", help="show what a command would do, without doing it", handle=_plan,
                         wraps_command=True, group="help", examples=(".plan finetune demo-lora demo",)))
