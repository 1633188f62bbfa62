"""Run the HTTP front end with uvicorn; SIGINT/SIGTERM drain in-flight work, then exit 0."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from typing import Iterator

import uvicorn

from .config import BerthConfig
from .engine import Engine
from .errors import ConfigError
from .http import create_app

log = logging.getLogger("berth.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def check_exposure(config: BerthConfig) -> None:
    """Refuse to listen beyond loopback unless the operator said so explicitly."""
    host = config.server.host
    if not is_loopback(host):
        if not config.server.insecure:
            raise ConfigError("server.host", f"'{host}' is not a loopback address; berth has no credentials configured, so pass --insecure to expose it anyway")
        log.warning("listening on %s WITHOUT authentication (--insecure)", host)


class _Server(uvicorn.Server):
    """uvicorn, except that a SIGINT/SIGTERM shutdown ends in a normal exit (code 0).

    uvicorn re-raises the captured signal once it has shut down, so the process would
    die by that signal (exit -15 / 130) even after a clean drain.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)
        captured = getattr(self, "_captured_signals", None)
        if captured:
            log.info("stopped by %s after draining in-flight requests", signal.Signals(captured[0]).name)


def serve(config: BerthConfig, *, log_level: str = "info") -> None:
    check_exposure(config)
    engine = Engine(config)
    app = create_app(engine)
    server_config = uvicorn.Config(
        app,
        host=config.server.host,
        port=config.server.http_port,
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=int(config.server.drain_timeout_s) or None,
        h11_max_incomplete_event_size=64 * 1024,
    )
    server = _Server(server_config)
    log.info("berth HTTP on http://%s:%d", config.server.host, config.server.http_port)
    server.run()
