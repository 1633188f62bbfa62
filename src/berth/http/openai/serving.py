"""OpenAI requests → generation → OpenAI responses and SSE chunks.

:meth:`OpenAIServing.start_chat` / :meth:`start_completion` do everything that can
fail with a status code *before* a response starts (validate, lease the model, render
the chat template, tokenize, check the context, queue the sequences — 400, 404, 429,
503); what is left (:class:`Prepared`) can only produce a 200 answer, or an error
event inside an already started stream.

Per-request metrics travel in the standard ``usage`` object and in a ``berth``
extension field: ``ttft_ms``, ``tokens_per_s`` (decode rate), ``queue_ms``,
``total_ms``, ``mean_batch_size`` (how many sequences shared its decode steps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from ...engine import Engine
from ...errors import InternalError, ModelNotReady
from ...generation import SamplingParams
from ...generation.reasoning import ReasoningSplitter
from ...generation.service import Generation, GenerationService
from .. import sse
from .protocol import BadField, ChatCompletionRequest, CompletionRequest, parse

DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_N = 8


@dataclass
class Prepared:
    kind: str  # "chat" | "completion"
    generation: Generation
    request: Any
    rid: str
    prompt_tokens: int
    reasoning: list[bool]  # per choice: the output starts inside <think>
    reasoning_model: bool
    echo: list[str] = field(default_factory=list)  # per choice: the prompt text to prepend (completions)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        return ("chatcmpl-" if self.kind == "chat" else "cmpl-") + self.rid

    @property
    def model(self) -> str:
        return self.generation.model

    @property
    def stream(self) -> bool:
        return bool(self.request.stream)

    @property
    def include_usage(self) -> bool:
        return bool(self.request.stream and self.request.stream_options and self.request.stream_options.include_usage)


#: OpenAI's end-of-stream marker: an event whose data is not JSON
DONE = b"data: [DONE]\n\n"


def usage(prepared: Prepared) -> dict[str, int]:
    completion = sum(len(s.output_ids) for s in prepared.generation.sequences)
    return {
        "prompt_tokens": prepared.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prepared.prompt_tokens + completion,
    }


def metrics(prepared: Prepared) -> dict[str, Any]:
    """The ``berth`` extension field: this request's timings."""
    seqs = prepared.generation.sequences
    per = [s.metrics() for s in seqs]
    if len(per) == 1:
        out = dict(per[0])
    else:
        firsts = [s.t_first for s in seqs if s.t_first]
        ends = [s.t_end for s in seqs if s.t_end]
        tokens = sum(len(s.output_ids) for s in seqs)
        span = (max(ends) - min(firsts)) if firsts and ends else 0.0
        out = {
            "queue_ms": max(m["queue_ms"] for m in per),
            "ttft_ms": min(m["ttft_ms"] for m in per),
            "total_ms": max(m["total_ms"] for m in per),
            "tokens_per_s": round((tokens - len(seqs)) / span, 2) if span > 0 else 0.0,
            "mean_batch_size": round(sum(m["mean_batch_size"] for m in per) / len(per), 2),
        }
    out["rid"] = prepared.rid
    return out


class OpenAIServing:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.service = GenerationService(engine)

    # ── preparing ──────────────────────────────────────────────────────────
    async def start_chat(self, body: dict[str, Any], rid: str) -> Prepared:
        request: ChatCompletionRequest = parse(ChatCompletionRequest, body)
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        generation = await self.service.open(request.model)
        try:
            runtime = generation.runtime
            prompt_text = runtime.render_chat(messages)
            ids = runtime.encode(prompt_text, add_special_tokens=False)
            in_reasoning = prompt_text.rstrip().endswith("<think>")
            self._add_choices(generation, request, [ids], request.limit())
            generation.submit()
        except BaseException:
            generation.close()
            raise
        return Prepared(
            "chat", generation, request, rid, len(ids), [in_reasoning] * request.n,
            reasoning_model=bool(runtime.info().details.get("reasoning")),
        )

    async def start_completion(self, body: dict[str, Any], rid: str) -> Prepared:
        request: CompletionRequest = parse(CompletionRequest, body)
        if request.suffix:
            raise BadField("suffix is not supported", "suffix")
        if request.best_of is not None and request.best_of != request.n:
            raise BadField("best_of must equal n (berth returns every sequence it generates)", "best_of")
        prompts = request.prompts()
        generation = await self.service.open(request.model)
        try:
            runtime = generation.runtime
            vocab = int(runtime.info().details.get("vocab_size") or 0)
            all_ids: list[list[int]] = []
            texts: list[str] = []
            for prompt in prompts:
                if isinstance(prompt, str):
                    all_ids.append(runtime.encode(prompt, add_special_tokens=True))
                    texts.append(prompt)
                else:
                    if not prompt or any(not isinstance(t, int) or t < 0 or (vocab and t >= vocab) for t in prompt):
                        raise BadField("prompt token ids must be valid ids of the model's vocabulary", "prompt")
                    all_ids.append(list(prompt))
                    texts.append(runtime.decode(list(prompt)))
            self._add_choices(generation, request, all_ids, request.limit())
            generation.submit()
        except BaseException:
            generation.close()
            raise
        echo = [texts[i // request.n] if request.echo else "" for i in range(len(prompts) * request.n)]
        return Prepared(
            "completion", generation, request, rid, sum(map(len, all_ids)), [False] * len(echo),
            reasoning_model=False, echo=echo,
        )

    def _add_choices(self, generation: Generation, request: Any, prompts: list[list[int]], limit: int | None) -> None:
        runtime = generation.runtime
        options = generation.lease.entry.spec.settings.options
        max_n = int(options.get("max_n", DEFAULT_MAX_N))
        if request.n * len(prompts) > max_n:
            raise BadField(f"n × prompts must be at most {max_n} for this model", "n")
        context = runtime.context_length
        temperature = 1.0 if request.temperature is None else request.temperature
        top_p = 1.0 if request.top_p is None else request.top_p
        for ids in prompts:
            if not ids:
                raise BadField("the prompt is empty", "prompt")
            room = context - len(ids)
            if room < 1:
                raise BadField(f"the prompt is {len(ids)} tokens; this model's context is {context} tokens", "messages" if request.__class__ is ChatCompletionRequest else "prompt")
            if limit is not None and limit > room:
                raise BadField(
                    f"this model's context is {context} tokens: the prompt ({len(ids)}) plus max tokens ({limit}) do not fit",
                    "max_tokens",
                )
            max_tokens = limit if limit is not None else min(room, int(options.get("default_max_tokens", DEFAULT_MAX_TOKENS)))
            for j in range(request.n):
                seed = None if request.seed is None else (request.seed + j * 1_000_003) % (2**63)
                generation.add(ids, SamplingParams(max_tokens, temperature, top_p, seed, request.stop_list(), request.ignore_eos))

    # ── answering ──────────────────────────────────────────────────────────
    async def collect(self, prepared: Prepared) -> dict[str, Any] | None:
        """The whole (non-streaming) response; None if the client went away."""
        async for delta in prepared.generation.deltas():
            if delta.finish_reason == "error":
                raise _failure(delta.error)
        seqs = prepared.generation.sequences
        if any(s.finish_reason == "abort" for s in seqs):
            return None
        choices = []
        for seq in seqs:
            if prepared.kind == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": seq.text, "refusal": None}
                if prepared.reasoning_model:
                    splitter = ReasoningSplitter(in_reasoning=prepared.reasoning[seq.index])
                    reasoning, content = splitter.feed(seq.text, final=True)
                    message["content"] = content
                    message["reasoning_content"] = reasoning or None
                choices.append({"index": seq.index, "message": message, "logprobs": None, "finish_reason": seq.finish_reason})
            else:
                choices.append({"index": seq.index, "text": prepared.echo[seq.index] + seq.text, "logprobs": None, "finish_reason": seq.finish_reason})
        return {
            "id": prepared.id,
            "object": "chat.completion" if prepared.kind == "chat" else "text_completion",
            "created": prepared.created,
            "model": prepared.model,
            "choices": choices,
            "usage": usage(prepared),
            "system_fingerprint": None,
            "rid": prepared.rid,
            "berth": metrics(prepared),
        }

    async def stream(self, prepared: Prepared) -> AsyncIterator[bytes]:
        """SSE frames: role chunks, content deltas, finish chunks, usage, ``[DONE]``."""
        chat = prepared.kind == "chat"
        base = {
            "id": prepared.id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": prepared.created,
            "model": prepared.model,
        }
        include_usage = prepared.include_usage

        def chunk(choice: dict[str, Any]) -> bytes:
            payload = {**base, "choices": [choice]}
            if include_usage:
                payload["usage"] = None
            return sse.event(payload)

        splitters = {
            i: ReasoningSplitter(in_reasoning=r) for i, r in enumerate(prepared.reasoning)
        } if prepared.reasoning_model else {}
        for seq in prepared.generation.sequences:
            if chat:
                yield chunk({"index": seq.index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None})
            elif prepared.echo[seq.index]:
                yield chunk({"index": seq.index, "text": prepared.echo[seq.index], "logprobs": None, "finish_reason": None})
        async for delta in prepared.generation.deltas():
            if delta.finish_reason == "abort":
                continue
            if delta.finish_reason == "error":
                yield sse.event({"error": _error_body(_failure(delta.error))})
                yield DONE
                prepared.generation.abort()
                return
            final = delta.finish_reason is not None
            if delta.text or (final and delta.index in splitters):
                if chat:
                    d: dict[str, str] = {}
                    if delta.index in splitters:
                        reasoning, content = splitters[delta.index].feed(delta.text, final=final)
                        if reasoning:
                            d["reasoning_content"] = reasoning
                        if content:
                            d["content"] = content
                    else:
                        d["content"] = delta.text
                    if d:
                        yield chunk({"index": delta.index, "delta": d, "logprobs": None, "finish_reason": None})
                else:
                    yield chunk({"index": delta.index, "text": delta.text, "logprobs": None, "finish_reason": None})
            if final:
                if chat:
                    yield chunk({"index": delta.index, "delta": {}, "logprobs": None, "finish_reason": delta.finish_reason})
                else:
                    yield chunk({"index": delta.index, "text": "", "logprobs": None, "finish_reason": delta.finish_reason})
        if any(s.finish_reason == "abort" for s in prepared.generation.sequences):
            return
        if include_usage:
            yield sse.event({**base, "choices": [], "usage": usage(prepared), "berth": metrics(prepared)})
        yield DONE


def _failure(message: str | None) -> Exception:
    if message and "unloaded" in message:
        return ModelNotReady(f"generation stopped: {message}")
    return InternalError("generation failed")


def _error_body(exc: Exception) -> dict[str, Any]:
    from .routes import error_object

    return error_object(exc)[1]["error"]
