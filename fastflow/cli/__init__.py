"""The ``fastflow`` command: ``flow``, ``video``, ``extract``, ``validate``, ``bench``, ``info``.

One module per subcommand, each with ``register(subparsers)``; the library (``fastflow.*`` outside
this package) never imports this package or argparse. Errors a user can cause (bad paths,
unreadable images, wrong checkpoint, mismatched sizes) end with a one-line ``fastflow: error: ...``
on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import bench, extract, flow, info, validate, video
from ..util import first_line
from ._common import EXIT_USAGE, CLIError

__all__ = ["main", "build_parser", "CLIError"]

# In the order `fastflow --help` lists them.
COMMANDS = (flow, video, extract, validate, bench, info)


def build_parser() -> argparse.ArgumentParser:
    from .._backend import __version__

    p = argparse.ArgumentParser(prog="fastflow", description="FlowNet2-S optical flow, fast.")
    p.add_argument("--version", action="version", version=f"fastflow {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "batch", 1) is not None and getattr(args, "batch", 1) < 1:
        parser.error("--batch must be at least 1")
    if getattr(args, "repeats", 1) < 1 or getattr(args, "warmup", 0) < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0")
    if getattr(args, "threads", None) is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    try:
        return args.func(args)
    except CLIError as e:
        print(f"fastflow: error: {e}", file=sys.stderr)
    except (ValueError, TypeError, ImportError, OSError) as e:  # the library's errors name the problem
        print(f"fastflow: error: {first_line(e)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("fastflow: interrupted", file=sys.stderr)
        return 130
    return EXIT_USAGE
