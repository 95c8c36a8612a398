"""`download`: fetch a model snapshot into the shared /cache volume ahead of training.

ms-swift has no download command of its own, so this runs the hub's own CLI
(`modelscope download`, or `hf download` with hub=hf). Both write into the hub cache that
`MODELSCOPE_CACHE` / `HF_HOME` point at (the /cache volume every job mounts), which is
exactly where ms-swift looks before downloading: a later fine-tune of the same model
starts training at once instead of spending its first hour on the download.
"""

from __future__ import annotations

from gateway.commands import CommandError, CommandSpec, Param
from gateway.contracts import JobContext
from gateway.hookspecs import RegisterCommand, hookimpl
from gateway.model import Command, JobSpec
from plugins.argv import Argv
from plugins.jobspec import SpecParts
from plugins.models import resolve_model
from plugins.params import HUB

PARAMS: tuple[Param, ...] = (
    Param("model", "model", "model preset or hub id", required=True, positional=True),
    Param("revision", "text", "branch, tag or commit (default: the hub's main revision)"),
    HUB,
)


def build_job(command: Command, ctx: JobContext) -> JobSpec:
    a = command.args
    hub = a.get("hub", "modelscope")
    model = resolve_model(a["model"], hub)
    if model.local:
        raise CommandError("nothing_to_do", f"{a['model']} is created locally; there is nothing to download.",
                           "Download a hub model, e.g. .download qwen-7b")
    hub_id = dict(model.flags(with_type=False))["model"]
    argv = Argv("hf", "download", hub_id) if hub == "hf" else Argv("modelscope", "download")
    if hub != "hf":
        argv.opt("model", hub_id)
    argv.text("revision", a.get("revision"))
    parts = SpecParts(task="download", model_ref=model.ref, argv=argv, gpus=0)
    parts.add_model(model)
    parts.params.update({"hub": hub, "hub_id": hub_id})
    return parts.build(ctx)


DOWNLOAD = CommandSpec(
    verb="download", aliases=("fetch",), params=PARAMS,
    help="Download a model into hammer's cache so later jobs start at once.",
    examples=(".download qwen-7b", ".download llama3 hub=hf", ".download Qwen/Qwen2.5-0.5B-Instruct"),
    build_job=build_job,
)


@hookimpl
def hammer_commands(register: RegisterCommand) -> None:
    register(DOWNLOAD)
