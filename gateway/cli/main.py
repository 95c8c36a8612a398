"""The `hammer` command line.

    hammer serve                 run the gateway (web chat + local Docker + SQLite by default)
    hammer plan [--json] TEXT    show what a chat command would do, without doing it
    hammer run TEXT              run a command through the running gateway and follow its job
    hammer jobs / logs / cancel  look at and stop jobs
    hammer users add|list|...    web accounts, sign-in links and API tokens
    hammer config check FILE     validate a config file, reporting every problem
    hammer config show [FILE]    the merged config (FILE over the defaults), with each value's source
    hammer doctor                check the whole setup and say how to fix what is wrong
    hammer image build|base      build the sandbox image (offline, from a local wheelhouse)
    hammer estimate MODEL        GPU memory estimate and the cheapest machine that fits

Every subcommand has its own `--help`. Exit status: 0 ok, 1 the job or check failed,
2 a usage or input error (the message says what to do).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from gateway.cli import config as config_cli
from gateway.cli import doctor as doctor_cli
from gateway.cli import image as image_cli
from gateway.cli import jobs as jobs_cli
from gateway.cli import plan as plan_cli
from gateway.cli import serve as serve_cli
from gateway.cli import users as users_cli
from gateway.config import ConfigError, Settings, load_settings

EPILOG = "Config: --config FILE or $HAMMER_CONFIG; without one hammer uses its embedded defaults " \
         "(see config.example.toml)."


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="FILE", help="config file (default: $HAMMER_CONFIG, else the "
                   "embedded defaults of config.example.toml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hammer", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hammer {_version()}")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gateway", description="Run the gateway: the HTTP server with the "
                       "web chat, the configured chat adapters and the job orchestrator. Jobs that were "
                       "running when it last stopped are re-attached.", epilog=EPILOG)
    _config_arg(p)
    p.add_argument("--host", help="override http.host")
    p.add_argument("--port", type=int, help="override http.port")

    p = sub.add_parser("plan", help="show what a command would do, without doing it",
                       description="Parse a chat command and build its job (argv, image, resources, limits) "
                       "without running anything.", epilog='Example: hammer plan --json ".finetune demo-lora demo"')
    _config_arg(p)
    p.add_argument("text", help='the chat command, quoted: ".finetune qwen-7b-lora wiki_zh epochs=3"')
    p.add_argument("--json", action="store_true", help="print one JSON object (exit 2 on a user error)")
    p.add_argument("--user", help="plan as this user, for the policy check (default: $USER)")

    p = sub.add_parser("run", help="run a command via the running gateway and follow its job",
                       description="Send a command to the gateway started with `hammer serve` and follow the "
                       "job it starts until it ends.", epilog='Example: hammer run ".finetune demo-lora demo"')
    _config_arg(p)
    p.add_argument("text", help="the chat command, quoted")
    p.add_argument("--detach", action="store_true", help="print the job id and return at once")
    p.add_argument("--url", help="gateway URL (default: from the config)")

    p = sub.add_parser("jobs", help="list recent jobs", description="List recent jobs from the store.")
    _config_arg(p)
    p.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="JSON output")

    p = sub.add_parser("logs", help="show a job's events", description="Print a job's events (progress, "
                       "log lines, errors) from the store; -f follows until the job ends.")
    _config_arg(p)
    p.add_argument("job", help="job id")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events until the job ends")
    p.add_argument("--json", action="store_true", help="raw JSON event lines")

    p = sub.add_parser("cancel", help="cancel a job", description="Ask the running gateway to cancel a job.")
    _config_arg(p)
    p.add_argument("job", help="job id")
    p.add_argument("--url", help="gateway URL (default: from the config)")

    p = sub.add_parser("users", help="web accounts: add, list, remove, reset, API tokens",
                       description="Web accounts. `add` and `reset` print a one-time sign-in link; `token` prints "
                       "an API token for programs (shown once). Works while the gateway runs.", epilog=EPILOG)
    _config_arg(p)
    usub = p.add_subparsers(dest="users_cmd", metavar="ACTION")
    pa = usub.add_parser("add", help="make an account and print its sign-in link")
    pa.add_argument("name", help="account name: lowercase letters, digits, '.', '_', '-'")
    pa.add_argument("--role", default="member", choices=("viewer", "member", "trainer", "admin"),
                    help="what the account may do (default member)")
    usub.add_parser("list", help="list the accounts")
    for action, text in (("remove", "delete an account and end its sessions and tokens"),
                         ("reset", "end its sessions and tokens; print a new sign-in link"),
                         ("token", "print a new API token for the account (for `hammer run`, scripts)")):
        usub.add_parser(action, help=text).add_argument("name")

    p = sub.add_parser("config", help="configuration tools", description="Configuration tools.")
    csub = p.add_subparsers(dest="config_cmd", metavar="ACTION")
    pc = csub.add_parser("check", help="validate a config file", description="Validate a config file and "
                         "report every problem with its key path and what would be valid.")
    pc.add_argument("file", help="the TOML file to check")
    ps = csub.add_parser("show", help="print the merged config and where each value came from",
                         description="Print the configuration hammer would run on: FILE (default: $HAMMER_CONFIG) "
                         "over the embedded defaults, each value commented with the file it came from.")
    ps.add_argument("file", nargs="?", help="the TOML file (default: $HAMMER_CONFIG, else the defaults alone)")

    p = sub.add_parser("doctor", help="check the setup and say how to fix it",
                       description="Check config, store, plugins, Docker, the sandbox image and every enabled "
                       "chat/cloud adapter; print what is wrong and how to fix it.", epilog=EPILOG)
    _config_arg(p)

    p = sub.add_parser("image", help="build the sandbox image", description="Build hammer's sandbox image "
                       "offline: a Debian base made with debootstrap and a wheelhouse downloaded on this host.")
    isub = p.add_subparsers(dest="image_cmd", metavar="ACTION")
    pb = isub.add_parser("build", help="build the sandbox image (cached by its inputs)")
    pb.add_argument("--base", help="base image (default: hammer-base:bookworm, made if missing; "
                    "use a CUDA/PyTorch image on GPU hosts)")
    pb.add_argument("--tag", default="hammer-sandbox:latest", help="image tag (default hammer-sandbox:latest)")
    pb.add_argument("--force", action="store_true", help="rebuild even if the inputs did not change")
    pbase = isub.add_parser("base", help="make a minimal Debian base image with debootstrap")
    pbase.add_argument("--tag", default="hammer-base:bookworm", help="image name (default hammer-base:bookworm)")

    try:
        from gateway import estimate
        estimate.add_cli(sub)
    except (ImportError, AttributeError):
        pass
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("hammer-gateway")
    except Exception:
        return "dev"


def load(args: argparse.Namespace) -> Settings:
    path = getattr(args, "config", None) or os.environ.get("HAMMER_CONFIG") or None
    from gateway.app import adapter_validators
    from gateway.plugins import load_plugins
    settings = load_settings(path, adapter_validators(load_plugins()))
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if overrides:
        settings = settings.model_copy(update={"http": settings.http.model_copy(update=overrides)})
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.cmd:
        parser.print_help()
        return 2
    try:
        return _dispatch(parser, args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `hammer estimate ... | head`: the reader is gone, which is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    cmd = args.cmd
    if cmd == "config":
        if args.config_cmd == "check":
            return config_cli.check(Path(args.file))
        if args.config_cmd == "show":
            return config_cli.show(args.file or os.environ.get("HAMMER_CONFIG") or None)
        parser.parse_args(["config", "--help"])
    if cmd == "image":
        if args.image_cmd is None:
            parser.parse_args(["image", "--help"])
        return asyncio.run(image_cli.image(args))
    if cmd == "estimate":
        from gateway import estimate
        return int(estimate.run_cli(args))
    settings = load(args)
    if cmd == "serve":
        return serve_cli.serve(settings)
    if cmd == "plan":
        return asyncio.run(plan_cli.plan(settings, args.text, as_json=args.json, user=args.user))
    if cmd == "run":
        return asyncio.run(jobs_cli.run(settings, args.text, detach=args.detach, url=args.url))
    if cmd == "jobs":
        return asyncio.run(jobs_cli.jobs(settings, args.limit, as_json=args.json))
    if cmd == "logs":
        return asyncio.run(jobs_cli.logs(settings, args.job, follow=args.follow, as_json=args.json))
    if cmd == "cancel":
        return asyncio.run(jobs_cli.cancel(settings, args.job, url=args.url))
    if cmd == "doctor":
        return asyncio.run(doctor_cli.doctor(settings))
    if cmd == "users":
        if args.users_cmd is None:
            parser.parse_args(["users", "--help"])
        return asyncio.run(users_cli.users(settings, args.users_cmd, getattr(args, "name", None),
                                           getattr(args, "role", "member")))
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
