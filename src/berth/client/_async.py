"""The asyncio client: the same methods as :class:`~berth.client.Client`, awaitable."""

from __future__ import annotations

import inspect
from typing import Any, AsyncIterator, Callable

import httpx

from ._common import (
    DEFAULT_URL, SseParser, StreamError, check, error_from, final_event, headers, infer_body, seed001_body, stream_body,
)


class AsyncClient:
    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = 30.0, api_key: str | None = None,
                 extra_headers: dict[str, str] | None = None, limits: httpx.Limits | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, headers=headers(api_key, extra_headers), limits=limits or httpx.Limits())

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def health_check(self) -> dict[str, Any]:
        return check(await self._http.get("/health"))

    async def single_inference(self, batch: int = 1, channels: int = 16, length: int = 200, steps: int = 1) -> dict[str, Any]:
        return check(await self._http.post("/infer", json=seed001_body(batch, channels, length, steps)))

    async def single_inference_tensorrt(self, batch: int = 1, channels: int = 16, length: int = 200) -> dict[str, Any]:
        return check(await self._http.post("/infer/tensorrt", json=seed001_body(batch, channels, length)))

    async def infer(self, input: Any = None, *, model: str | None = None, image: Any = None) -> dict[str, Any]:
        return check(await self._http.post("/infer", json=infer_body(input, model, image)))

    async def stream_stats(self) -> dict[str, Any]:
        return check(await self._http.get("/infer/stream/stats"))

    async def benchmark(self, num_iterations: int = 1000, batch_size: int = 1) -> dict[str, Any]:
        return check(await self._http.post("/benchmark", params={"num_iterations": num_iterations, "batch_size": batch_size}, timeout=None))

    async def iter_stream(self, duration_seconds: float | None = 10.0, use_tensorrt: bool = True, fps: float = 30,
                          *, preprocess: bool = False, model: str | None = None) -> AsyncIterator[dict[str, Any]]:
        body = stream_body(duration_seconds, use_tensorrt, fps, preprocess, model)
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        async with self._http.stream("POST", "/infer/stream", json=body, timeout=timeout) as response:
            if response.status_code >= 400:
                raise error_from(response, await response.aread())
            parser = SseParser()
            async for line in response.aiter_lines():
                for event in parser.feed([line]):
                    yield event
                    if final_event(event):
                        return
        raise StreamError("the stream ended without a completion or error event")

    async def stream_inference(self, duration_seconds: float | None = 10.0, use_tensorrt: bool = True, fps: float = 30,
                               callback: Callable[[dict[str, Any]], Any] | None = None, *, preprocess: bool = False,
                               model: str | None = None) -> dict[str, Any]:
        """As :meth:`Client.stream_inference`; ``callback`` may be a coroutine function."""
        async for event in self.iter_stream(duration_seconds, use_tensorrt, fps, preprocess=preprocess, model=model):
            if callback is not None:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            if "error" in event:
                raise StreamError(str(event["error"]), event)
            if "status" in event:
                return event
        raise StreamError("the stream ended without a completion event")  # pragma: no cover
