"""berth's Python client over HTTP (httpx): :class:`Client` and :class:`AsyncClient`.

Seed 001's ``StreamingInferenceClient`` is :class:`Client`. ``python -m berth.client``
is the command line (``--stream --duration --fps --no-tensorrt --url --example N``).
"""

from ._async import AsyncClient
from ._common import DEFAULT_URL, BerthClientError, SseParser, StreamError
from ._sync import Client, StreamingInferenceClient

__all__ = ["DEFAULT_URL", "AsyncClient", "BerthClientError", "Client", "SseParser", "StreamError", "StreamingInferenceClient"]
