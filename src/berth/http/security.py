"""Who may call what: Host and Origin checks, the data-plane API key, the admin token.

Every route is classified once, in :data:`ROUTE_CLASSES`:

* ``public``: health, the index and the static UI — always open;
* ``data``: inference and read-only model information — open, or behind
  ``auth.api_keys`` when keys are configured (``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>``);
* ``admin``: loading, unloading, pinning and the repository — behind
  ``auth.admin_token`` (``Authorization: Bearer <token>`` or ``X-Admin-Token``), or,
  when no admin token is set, open to loopback clients only.

Headers over ``server.max_header_kb`` in total are refused (431). A request whose Host header names none of the server's hosts is refused (421): a web
page cannot reach a loopback server through DNS rebinding. A state-changing request
(any method but GET, HEAD and OPTIONS, and every WebSocket) that carries an Origin
other than the server's own or a configured ``auth.allowed_origins`` entry is refused
(403), so a page in the user's browser cannot drive the server. Secrets are compared
in constant time and never logged.

A page from an ``auth.allowed_origins`` origin also gets CORS: its preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) is answered here (204) and its
responses carry ``Access-Control-Allow-Origin`` and expose berth's own headers
(request id, Retry-After, the V2 binary header length), so browser clients work from
those origins and from no other. berth uses header credentials, not cookies, so
credentialed CORS is never allowed.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from itertools import chain
from typing import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ..config import BerthConfig
from ..credentials import matching_key
from ..quotas import KeyQuotas
from .errors import REQUEST_ID_HEADER, assign_request_id, error_body, fresh_request_id, scope_request_id

PUBLIC, DATA, ADMIN = "public", "data", "admin"

#: (methods or "*", path pattern, class); the first match wins
ROUTE_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("GET", r"/", PUBLIC),
    ("GET", r"/health", PUBLIC),
    ("GET", r"/v2/health/(live|ready)", PUBLIC),
    ("GET", r"/(dashboard|ui|static|web)(/.*)?", PUBLIC),
    ("GET", r"/favicon\.ico", PUBLIC),
    ("POST", r"/models/[^/]+/(load|unload|pin)", ADMIN),
    ("POST", r"/v2/repository/.*", ADMIN),
    ("GET", r"/(config|models|stats|metrics)", DATA),
    ("GET", r"/models/[^/]+", DATA),
    ("POST", r"/(infer|infer-batch|blast|save-session|benchmark)", DATA),
    ("POST", r"/infer/(tensorrt|stream)", DATA),
    ("GET", r"/infer/stream/stats", DATA),
    ("GET", r"/ws/.*", DATA),
    ("GET", r"/v2", DATA),
    ("GET", r"/v2/models/stats", DATA),
    ("GET", r"/v2/models/[^/]+(/versions/[^/]+)?(/ready|/config|/stats)?", DATA),
    ("POST", r"/v2/models/[^/]+(/versions/[^/]+)?/infer", DATA),
    ("GET", r"/v1/models(/[^/]+)?", DATA),
    ("GET", r"/v1/generation/stats", DATA),
    ("POST", r"/v1/(chat/completions|completions)", DATA),
)
_COMPILED = tuple((methods, re.compile(pattern + r"\Z"), kind) for methods, pattern, kind in ROUTE_CLASSES)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_UNKNOWN_HOST: tuple[int, str, list[tuple[bytes, bytes]]] = (421, "unknown Host header; this server answers to its own host names only", [])
_CORS_PREFLIGHT = [
    (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"content-type, authorization, x-api-key, x-admin-token, inference-header-content-length, x-request-id"),
    (b"access-control-max-age", b"600"),
    (b"vary", b"Origin"),
]
_CORS_EXPOSE = [
    (b"access-control-expose-headers", b"x-request-id, retry-after, inference-header-content-length"),
    (b"vary", b"Origin"),
]
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: the headers the gate acts on besides Host; a request with none of them takes the short way
_CHECKED_HEADERS = frozenset({
    b"origin", b"authorization", b"x-api-key", b"x-admin-token", b"access-control-request-method", b"x-request-id",
    b"x-forwarded-for", b"x-forwarded-proto",
})  # fmt: skip
#: the proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: uvicorn's setting
#: and default, which berth applies here instead of in a middleware of uvicorn's own
_FORWARDED_ALLOW_IPS = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
_MAX_HOST_VERDICTS = 256


@functools.lru_cache(maxsize=4096)  # bounded: paths come from clients; hot paths repeat
def classify(method: str, path: str) -> str | None:
    """The class of a request, or None when no rule names it (then it is treated as admin)."""
    lookup = "GET" if method in ("HEAD", "OPTIONS") else method
    for methods, pattern, kind in _COMPILED:
        if (methods == "*" or methods == lookup) and pattern.match(path):
            return kind
    return None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _host_name(value: str) -> str:
    """``example.com:8080`` → ``example.com``; ``[::1]:8080`` → ``::1``."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SecurityGate:
    def __init__(self, app: ASGIApp, config: BerthConfig, quotas: KeyQuotas | None = None) -> None:
        self.app = app
        auth = config.auth
        self._api_keys = [key.get_secret_value().encode() for key in auth.api_keys]
        self._admin = auth.admin_token.get_secret_value().encode() if auth.admin_token else None
        bind = config.server.host
        self._any_host = bind in ("0.0.0.0", "::", "") and not auth.allowed_hosts
        self._hosts = frozenset({*_LOOPBACK_NAMES, bind.strip("[]"), *(h.lower() for h in auth.allowed_hosts)})
        self._origins = frozenset(o.rstrip("/").lower() for o in auth.allowed_origins)
        self._host_verdicts: dict[bytes | None, bool] = {}  # raw Host header -> allowed
        self._max_header_bytes = int(config.server.max_header_kb * 1024)
        self._quotas = quotas
        # a request through a trusted proxy is judged by the client the proxy names
        # (the loopback-only rule for management depends on it): the proxy's headers are
        # applied, then the request comes back through the gate
        self._forwarded = ProxyHeadersMiddleware(self, _FORWARDED_ALLOW_IPS)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # a plain function handing back the next awaitable: no coroutine frame of its
        # own on every request; only refusals and preflights get one
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            return self.app(scope, receive, send)
        raw_headers = scope["headers"]
        # one dict of the headers (the last of repeated names wins), read by the
        # handlers too: built in C, where a loop comparing every name cost 150 bytecodes
        headers = scope["berth.headers"] = dict(raw_headers)
        header_bytes = sum(map(len, chain.from_iterable(raw_headers))) + 4 * len(raw_headers)
        if header_bytes > self._max_header_bytes:
            assign_request_id(scope, headers.get(b"x-request-id"))
            refusal = (431, f"request headers total {header_bytes} bytes; the limit is {self._max_header_bytes}", [])
            return self._refuse(scope, send, refusal, headers.get(b"origin"))
        get = headers.get
        host = get(b"host")
        if _CHECKED_HEADERS.isdisjoint(headers):
            # the common request: no origin, no credentials, no request id of its own
            scope["berth.request_id"] = fresh_request_id()
            if self._host_allowed(host) and self._open(classify(scope.get("method", "GET"), scope["path"])):
                return self.app(scope, receive, send)
            refusal = self._refusal(scope, host, None, None, None, None)
            return self.app(scope, receive, send) if refusal is None else self._refuse(scope, send, refusal, None)
        if (b"x-forwarded-for" in headers or b"x-forwarded-proto" in headers) and "berth.forwarded" not in scope:
            scope["berth.forwarded"] = True
            return self._forwarded(scope, receive, send)  # type: ignore[arg-type]
        origin = get(b"origin")
        assign_request_id(scope, get(b"x-request-id"))
        if (
            origin is not None and kind == "http" and scope["method"] == "OPTIONS"
            and get(b"access-control-request-method") is not None and self._cors_allowed(origin)
        ):
            # a browser's preflight carries no credentials: answered before they are asked for
            if self._host_allowed(host):
                return self._answer_preflight(send, origin)
            return self._refuse(scope, send, _UNKNOWN_HOST, origin)
        refusal = self._refusal(scope, host, origin, get(b"authorization"), get(b"x-api-key"), get(b"x-admin-token"))
        if refusal is None:
            if origin is not None and kind == "http" and self._cors_allowed(origin):
                return self.app(scope, receive, _with_headers(send, [(b"access-control-allow-origin", origin), *_CORS_EXPOSE]))
            return self.app(scope, receive, send)
        return self._refuse(scope, send, refusal, origin)

    async def _refuse(self, scope: Scope, send: Send, refusal: tuple[int, str, list[tuple[bytes, bytes]]], origin: bytes | None) -> None:
        status, message, headers = refusal
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        rid = scope_request_id(scope)
        body = error_body(message, rid)
        response_headers = [(b"content-type", b"application/json"), (REQUEST_ID_HEADER.encode(), rid.encode()), *headers]
        if origin is not None and self._cors_allowed(origin):  # the page may read why it was refused
            response_headers += [(b"access-control-allow-origin", origin), *_CORS_EXPOSE]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    def _refusal(
        self,
        scope: Scope,
        host: bytes | None,
        origin: bytes | None,
        authorization: bytes | None,
        api_key: bytes | None,
        admin_header: bytes | None,
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        if not self._host_allowed(host):
            return _UNKNOWN_HOST
        method = scope.get("method", "GET")
        if origin is not None and (scope["type"] == "websocket" or method not in _SAFE_METHODS):  # state-changing
            host_text = host.decode("latin-1").lower() if host else ""
            origin_text = origin.decode("latin-1").rstrip("/").lower()
            same_origin = origin_text.split("://", 1)[-1] == host_text
            if not same_origin and origin_text not in self._origins:
                return 403, "cross-origin request refused; add the origin to auth.allowed_origins to allow it", []
        route_class = classify(method, scope["path"]) or ADMIN
        if self._open(route_class):
            return None
        bearer = authorization[7:].strip() if authorization and authorization[:7].lower() == b"bearer " else None
        if route_class == DATA:
            if self._admin_matches(bearer, admin_header):
                return None
            key = matching_key(self._api_keys, bearer, api_key)
            if key is None:
                return 401, "this endpoint needs an API key (Authorization: Bearer <key> or X-API-Key)", [(b"www-authenticate", b"Bearer")]
            wait = self._quotas.take(key) if self._quotas is not None else None
            if wait is not None:
                retry = str(max(1, math.ceil(wait))).encode()
                return 429, "this API key is over its request quota (auth.quota_rps); retry later", [(b"retry-after", retry)]
            return None
        if self._admin is not None:
            if self._admin_matches(bearer, admin_header):
                return None
            return 401, "this endpoint needs the admin token (Authorization: Bearer <token> or X-Admin-Token)", [(b"www-authenticate", b"Bearer")]
        client = scope.get("client")
        if client and _is_loopback(client[0]):
            return None
        return 403, "management is allowed from loopback only when no admin token is configured", []

    def _open(self, route_class: str | None) -> bool:
        """Whether a request without credentials may call a route of this class: a
        public one, or a data one while no API keys are set."""
        return route_class == PUBLIC or (route_class == DATA and not self._api_keys)

    def _host_allowed(self, host: bytes | None) -> bool:
        if self._any_host:
            return True
        known = self._host_verdicts.get(host)
        if known is None:
            known = _host_name(host.decode("latin-1").lower() if host else "") in self._hosts
            if len(self._host_verdicts) >= _MAX_HOST_VERDICTS:  # Host comes from clients: bounded
                self._host_verdicts.clear()
            self._host_verdicts[host] = known
        return known

    def _cors_allowed(self, origin: bytes) -> bool:
        return bool(self._origins) and origin.decode("latin-1").rstrip("/").lower() in self._origins

    @staticmethod
    async def _answer_preflight(send: Send, origin: bytes) -> None:
        headers = [(b"access-control-allow-origin", origin), *_CORS_PREFLIGHT]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def _admin_matches(self, bearer: bytes | None, header: bytes | None) -> bool:
        return self._admin is not None and matching_key((self._admin,), bearer, header) is not None


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` that adds ``extra`` headers to the response's start."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending
