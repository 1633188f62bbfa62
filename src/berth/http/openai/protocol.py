"""OpenAI wire models for chat completions and (legacy) completions.

Requests are validated with pydantic. Unknown fields are accepted and ignored, and
each unknown name is logged once, as vLLM does, so a newer SDK that sends a field berth
does not know keeps working. Fields berth accepts but does not act on (``logprobs``,
``tools``, penalties…) are listed in :data:`IGNORED`; a few whose silent omission would
give wrong answers (``suffix``, ``best_of`` > ``n``, non-text content parts) are refused.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...errors import InvalidInput

log = logging.getLogger("berth.openai")

#: accepted for compatibility, not acted on
IGNORED = frozenset({
    "logprobs", "top_logprobs", "frequency_penalty", "presence_penalty", "logit_bias", "user", "tools",
    "tool_choice", "parallel_tool_calls", "response_format", "service_level", "service_tier", "store",
    "metadata", "modalities", "reasoning_effort", "prediction", "audio", "web_search_options", "function_call",
    "functions", "verbosity", "prompt_cache_key", "safety_identifier",
})
_logged_unknown: set[str] = set()


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Wire):
    include_usage: bool = False


class ContentPart(_Wire):
    type: str
    text: str | None = None


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise InvalidInput(f"content parts of type '{part.type}' are not supported; send text")
            parts.append(part.text)
        return "".join(parts)


class _Sampling(_Wire):
    model: str = Field(min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=128)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    max_tokens: int | None = Field(None, ge=1)
    rid: str | None = Field(None, max_length=128)  # seed 002's request id, echoed back
    ignore_eos: bool = False  # vLLM's extension: generate max_tokens whatever the model says

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return value

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def limit(self) -> int:
        return self.max_tokens if self.max_tokens is not None else 16

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise BadField("prompt must not be empty", "prompt")
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]


def parse(model: type[_Wire], body: dict[str, Any]) -> Any:
    """Validate ``body``; a failure is a 400 naming the field (``param``)."""
    try:
        request = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise BadField(f"{loc}: {first['msg']}" if loc else first["msg"], loc or None) from None
    extras = set(request.model_extra or ()) - IGNORED
    for name in extras - _logged_unknown:
        _logged_unknown.add(name)
        log.info("OpenAI request field '%s' is not known to berth; ignored", name[:64])
    return request


class BadField(InvalidInput):
    """A 400 with the OpenAI ``param`` set."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
