"""``berth`` command line: ``serve`` and ``demo build``.

``berth serve -model PATH -addr :8080 -maxgpu 4`` works as seed 000's server did; the
rest of the configuration comes from ``berth.yaml`` (``--config``, ``$BERTH_CONFIG`` or
``./berth.yaml``), then ``BERTH_*`` variables, then these flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from .config import load_config, valid_model_name
from .errors import ConfigError
from .runtimes import backend_for_path

DEFAULT_DEMO_DIR = Path("var/demo")


def _parse_addr(addr: str) -> dict[str, Any]:
    match = re.fullmatch(r"(?:\[?([^\]]*)\]?)?:(\d{1,5})", addr.strip())
    if not match or int(match.group(2)) > 65535:
        raise ConfigError("-addr", f"'{addr}' is not HOST:PORT or :PORT")
    server: dict[str, Any] = {"http_port": int(match.group(2))}
    if match.group(1):
        server["host"] = match.group(1)
    return server


def _model_name_from(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
    return name if valid_model_name(name) else "model"


def serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    server: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    if args.addr:
        server.update(_parse_addr(args.addr))
    if args.host:
        server["host"] = args.host
    if args.port is not None:
        server["http_port"] = args.port
    if args.grpc_port is not None:
        server["grpc_port"] = args.grpc_port
    if args.insecure:
        server["insecure"] = True
    if args.maxgpu is not None:
        server["worker_count_per_gpu"] = args.maxgpu
    if args.repository:
        overrides["repository"] = str(Path(args.repository).resolve())
    if args.model:
        path = Path(args.model).resolve()
        if not path.exists():
            raise ConfigError("-model", f"no model file at '{args.model}'")
        if path.is_file() and backend_for_path(path) is None:
            raise ConfigError("-model", f"cannot tell the model's backend from the suffix '{path.suffix}' of '{args.model}'")
        name = _model_name_from(path)
        entry: dict[str, Any] = {"model_path": str(path), "preload": True}
        if args.maxgpu is not None:
            entry["max_concurrency"] = args.maxgpu
        overrides["models"] = {name: entry}
        overrides["default_model"] = name
    if args.default_model:
        overrides["default_model"] = args.default_model
    if server:
        overrides["server"] = server
    return overrides


def _config_path(given: str | None) -> Path | None:
    if given:
        return Path(given)
    if os.environ.get("BERTH_CONFIG"):
        return Path(os.environ["BERTH_CONFIG"])
    default = Path("berth.yaml")
    return default if default.exists() else None


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    try:
        config = load_config(_config_path(args.config), overrides=serve_overrides(args))
        serve(config, log_level=args.log_level)
    except ConfigError as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_demo_build(args: argparse.Namespace) -> int:
    from .demo import build

    build(Path(args.out), force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="berth", description="berth: a multi-model inference server", allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the server", allow_abbrev=False)
    serve.add_argument("--config", help="berth.yaml (default: $BERTH_CONFIG or ./berth.yaml)")
    serve.add_argument("-model", "--model", help="serve this model file (seed 000 style); it becomes the default model")
    serve.add_argument("-addr", "--addr", help="listen address, ':8080' or 'HOST:PORT' (':PORT' keeps the configured host, loopback by default)")
    serve.add_argument("-maxgpu", "--maxgpu", type=int, help="concurrent model runs per device (and for -model)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--grpc-port", type=int)
    serve.add_argument("--repository", help="model repository folder")
    serve.add_argument("--default-model")
    serve.add_argument("--insecure", action="store_true", help="allow listening beyond loopback without credentials")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=_cmd_serve)

    demo = commands.add_parser("demo", help="demo models and assets")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True)
    build = demo_commands.add_parser("build", help="build the demo repository offline")
    build.add_argument("--out", default=str(DEFAULT_DEMO_DIR))
    build.add_argument("--force", action="store_true")
    build.set_defaults(handler=_cmd_demo_build)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "info").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
