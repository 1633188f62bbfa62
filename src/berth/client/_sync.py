"""The blocking client (seed 001's ``StreamingInferenceClient``)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import httpx

from ._common import (
    DEFAULT_URL, SseParser, StreamError, check, error_from, final_event, headers, infer_body, seed001_body, stream_body,
)


class Client:
    """berth over HTTP: seed 001's EMG API and seed 000's ``/infer`` for any model.

    >>> with Client("http://127.0.0.1:8080") as client:
    ...     client.health_check()["status"]
    ...     summary = client.stream_inference(duration_seconds=2, fps=30, callback=print)
    """

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = 30.0, api_key: str | None = None,
                 extra_headers: dict[str, str] | None = None, limits: httpx.Limits | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers(api_key, extra_headers), limits=limits or httpx.Limits())

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def health_check(self) -> dict[str, Any]:
        return check(self._http.get("/health"))

    def single_inference(self, batch: int = 1, channels: int = 16, length: int = 200, steps: int = 1) -> dict[str, Any]:
        """``POST /infer`` with seed 001's body (the PyTorch backend)."""
        return check(self._http.post("/infer", json=seed001_body(batch, channels, length, steps)))

    def single_inference_tensorrt(self, batch: int = 1, channels: int = 16, length: int = 200) -> dict[str, Any]:
        """``POST /infer/tensorrt``: the accelerated backend; ``backend`` says what ran."""
        return check(self._http.post("/infer/tensorrt", json=seed001_body(batch, channels, length)))

    def infer(self, input: Any = None, *, model: str | None = None, image: Any = None) -> dict[str, Any]:
        """``POST /infer`` (seed 000) on any single-input model: flat numbers or an image."""
        return check(self._http.post("/infer", json=infer_body(input, model, image)))

    def stream_stats(self) -> dict[str, Any]:
        return check(self._http.get("/infer/stream/stats"))

    def benchmark(self, num_iterations: int = 1000, batch_size: int = 1) -> dict[str, Any]:
        return check(self._http.post("/benchmark", params={"num_iterations": num_iterations, "batch_size": batch_size}, timeout=None))

    def iter_stream(self, duration_seconds: float | None = 10.0, use_tensorrt: bool = True, fps: float = 30,
                    *, preprocess: bool = False, model: str | None = None) -> Iterator[dict[str, Any]]:
        """Every event of ``POST /infer/stream`` as a dict, the final one included.
        Leaving the loop early closes the connection, which stops the stream."""
        body = stream_body(duration_seconds, use_tensorrt, fps, preprocess, model)
        with self._http.stream("POST", "/infer/stream", json=body, timeout=httpx.Timeout(self._http.timeout.connect, read=None)) as response:
            if response.status_code >= 400:
                raise error_from(response, response.read())
            parser = SseParser()
            for line in response.iter_lines():
                for event in parser.feed([line]):
                    yield event
                    if final_event(event):
                        return
        raise StreamError("the stream ended without a completion or error event")

    def stream_inference(self, duration_seconds: float | None = 10.0, use_tensorrt: bool = True, fps: float = 30,
                         callback: Callable[[dict[str, Any]], Any] | None = None, *, preprocess: bool = False,
                         model: str | None = None) -> dict[str, Any]:
        """Run a stream, calling ``callback`` with every event; returns the completion
        event, raises :class:`StreamError` on an error event."""
        for event in self.iter_stream(duration_seconds, use_tensorrt, fps, preprocess=preprocess, model=model):
            if callback is not None:
                callback(event)
            if "error" in event:
                raise StreamError(str(event["error"]), event)
            if "status" in event:
                return event
        raise StreamError("the stream ended without a completion event")  # pragma: no cover


#: seed 001's name for the client
StreamingInferenceClient = Client
