"""Run berth: HTTP (uvicorn) and gRPC (grpc.aio) on one event loop around one Engine.

The HTTP app's lifespan starts and stops the Engine; :class:`_WithGrpc` wraps that
lifespan so the gRPC server starts once the Engine has started and stops (draining
its calls) before the Engine stops. SIGINT/SIGTERM drain in-flight work, then exit 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from typing import Awaitable, Iterator

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import BerthConfig
from .engine import Engine
from .errors import ConfigError
from .grpc.server import GrpcServer, start_grpc
from .http import create_app
from .http.protocol import HttpProtocol

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
    if is_loopback(host):
        return
    if config.auth.has_credentials:
        if config.auth.admin_token is None:
            log.warning("listening on %s: management is refused to non-loopback clients (no auth.admin_token)", host)
        if not config.auth.api_keys:
            log.warning("listening on %s: the data plane is open (no auth.api_keys)", host)
        return
    if not config.server.insecure:
        raise ConfigError("server.host", f"'{host}' is not a loopback address and no credentials are configured (auth.api_keys, auth.admin_token); pass --insecure to expose it anyway")
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


class _WithGrpc:
    """The HTTP app, with the gRPC server started and stopped inside its lifespan.

    The app's lifespan starts the Engine and then sends ``lifespan.startup.complete``;
    the gRPC server is started before that message is passed on to uvicorn, so it
    never takes a call the Engine cannot serve. When ``lifespan.shutdown`` arrives,
    the gRPC server is stopped first (new calls refused, running ones given
    ``drain_timeout_s``), then the message reaches the app, which stops the Engine.

    If the gRPC server cannot start (its port is taken), the app is told to shut
    down, so the Engine is stopped cleanly, and uvicorn then hears that startup
    failed and exits non-zero.
    """

    def __init__(self, app: ASGIApp, engine: Engine, config: BerthConfig) -> None:
        self.app = app
        self.engine = engine
        self.config = config

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # a plain function handing back the app's awaitable: no coroutine frame of its
        # own on every request (uvicorn is told the interface is ASGI 3)
        if scope["type"] != "lifespan":
            return self.app(scope, receive, send)
        return self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        running: GrpcServer | None = None
        failure: str | None = None

        async def lifespan_receive() -> Message:
            nonlocal running
            if failure is not None:
                return {"type": "lifespan.shutdown"}
            message = await receive()
            if message["type"] == "lifespan.shutdown" and running is not None:
                server, running = running, None
                await server.stop(self.config.server.drain_timeout_s)
            return message

        async def lifespan_send(message: Message) -> None:
            nonlocal running, failure
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                try:
                    running = await start_grpc(self.engine, self.config)
                except Exception as exc:  # noqa: BLE001 - reported to uvicorn as a failed startup
                    log.error("gRPC server did not start: %s", exc)
                    failure = f"gRPC server did not start: {exc}"
                    return  # the app now shuts down (lifespan_receive), then uvicorn is told
            elif failure is not None and kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                message = {"type": "lifespan.startup.failed", "message": failure}
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)


def serve(config: BerthConfig, *, log_level: str = "info") -> None:
    check_exposure(config)
    engine = Engine(config)
    app = _WithGrpc(create_app(engine), engine, config)
    server_config = uvicorn.Config(
        app,
        host=config.server.host,
        port=config.server.http_port,
        lifespan="on",
        interface="asgi3",
        access_log=False,
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=int(config.server.drain_timeout_s) or None,
        h11_max_incomplete_event_size=64 * 1024,
        # no "Server: uvicorn": what runs the server is nobody else's business (and it
        # is one header fewer for uvicorn to check on every response)
        server_header=False,
        # X-Forwarded-For / -Proto from trusted proxies are applied by berth's security
        # gate, only to the requests that carry them, instead of by a middleware every
        # request passes through (FORWARDED_ALLOW_IPS names the proxies, as for uvicorn)
        proxy_headers=False,
        http=HttpProtocol,  # httptools, each response head written with its body
    )
    server = _Server(server_config)
    log.info("berth HTTP on http://%s:%d", config.server.host, config.server.http_port)
    server.run()
