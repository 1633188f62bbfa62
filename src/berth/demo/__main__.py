"""``python -m berth.demo build [--out DIR] [--force]``: the demo build from a shell.

The ``berth`` CLI's ``demo build`` subcommand can delegate to :func:`main`; this entry
point exists so the demo can be built before (or without) the full CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUT = Path("var/demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``demo build``, for reuse by the main CLI's subparser."""
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--force", action="store_true", help="rebuild even if an up-to-date build exists")
    parser.add_argument("--json", action="store_true", help="print BUILD_INFO as JSON when done")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``demo build``; returns the process exit code."""
    from . import DemoBuildError, build

    try:
        info = build(args.out, force=args.force)
    except DemoBuildError as exc:
        print(f"demo build failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        acc = info["accuracy"]
        print(f"digits accuracy {acc['digits']:.4f}, emg accuracy {acc['emg']:.4f}, "
              f"UNet {info['lipsync']['ms_per_frame_median']} ms/frame")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth.demo", description="Build the berth demo model repository.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("build", help="build the demo into a folder (offline)"))
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
