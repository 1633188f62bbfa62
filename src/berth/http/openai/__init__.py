"""The OpenAI-compatible API: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``.

- :mod:`.protocol` the wire models (pydantic; unknown fields accepted and logged)
- :mod:`.serving`  requests → generation → responses and SSE chunks
- :mod:`.routes`   raw ASGI endpoints: body, errors in the OpenAI envelope, streaming, disconnects
"""

from __future__ import annotations

from .routes import OpenAIApi

__all__ = ["OpenAIApi"]
