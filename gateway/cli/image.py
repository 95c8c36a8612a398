"""`hammer image build|base`: the sandbox image, built offline."""

from __future__ import annotations

import argparse
import os

from gateway.cli.common import die, out
from gateway.config import ConfigError, load_settings


async def image(args: argparse.Namespace) -> int:
    try:
        from sandbox import build
    except ImportError as exc:
        return die(f"the sandbox builder is missing ({exc})")
    try:
        if args.image_cmd == "base":
            name = await build.build_base(args.tag)
            out.print(f"base image {name} is ready", markup=False)
        else:
            data_dir = None
            try:
                data_dir = load_settings(os.environ.get("HAMMER_CONFIG") or None).data_dir
            except ConfigError:
                pass
            r = await build.build_image(args.tag, args.base, force=args.force, data_dir=data_dir)
            state = "up to date (inputs unchanged)" if r.cached else f"built in {r.seconds:.0f} s"
            out.print(f"{r.tag}: {state}; {r.size_bytes / 1e9:.2f} GB, base {r.base}, inputs {r.inputs_hash[:12]}",
                      markup=False)
    except build.ImageError as exc:
        return die(f"{exc.message}\n{exc.hint}".strip())
    return 0
