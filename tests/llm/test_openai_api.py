"""The OpenAI-compatible API end to end: a real `berth serve`, the official `openai` SDK.

One server (module scope) serves both demo LMs (a Llama and a GPT-2), an ONNX model
and a broken LM folder. Greedy requests (temperature 0) make outputs comparable:
streaming vs not, batched vs alone, with vs without stop strings.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from llm_fixtures import GPT, LLAMA, assert_disconnect_aborts, client, lm_server
from models import softmax, write_linear_softmax

pytestmark = pytest.mark.timeout(180)

CHAT = [{"role": "user", "content": "What does len do?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path):
    srv = lm_server(tmp_path_factory.mktemp("lm") / "server", demo_dir, onnx=True, broken=True)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server) -> openai.OpenAI:
    return client(server)


def _chat(oai: openai.OpenAI, model: str = LLAMA, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", CHAT)
    kwargs.setdefault("temperature", 0)
    return oai.chat.completions.create(model=model, **kwargs)


def _stream_text(stream: Any) -> tuple[dict[int, str], dict[int, str], list[Any]]:
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    chunks = list(stream)
    for chunk in chunks:
        for choice in chunk.choices:
            content = getattr(choice, "delta", None)
            piece = content.content if content is not None else choice.text
            texts[choice.index] = texts.get(choice.index, "") + (piece or "")
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    return texts, finish, chunks


# ── listing ─────────────────────────────────────────────────────────────────


def test_models_lists_the_language_models(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list().data]
    assert LLAMA in ids and GPT in ids
    assert "linear" not in ids  # the ONNX model is served, but not as a language model
    assert oai.models.retrieve(LLAMA).id == LLAMA
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope")


# ── chat and completions ──────────────────────────────────────────────────────


def test_chat_non_streaming(oai: openai.OpenAI) -> None:
    response = _chat(oai, max_tokens=12)
    choice = response.choices[0]
    assert response.object == "chat.completion" and response.model == LLAMA
    assert response.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.prompt_tokens > 5 and 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    berth = response.model_extra["berth"]
    assert 0 <= berth["queue_ms"] < berth["ttft_ms"] <= berth["total_ms"]  # admitted, then prefilled, then the first token
    assert "tokens_per_s" in berth


def test_chat_streaming_matches_non_streaming_with_usage(oai: openai.OpenAI) -> None:
    whole = _chat(oai, max_completion_tokens=16)
    stream = _chat(oai, max_completion_tokens=16, stream=True, stream_options={"include_usage": True})
    texts, finish, chunks = _stream_text(stream)
    first = chunks[0].choices[0]
    assert first.delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert texts[0] == whole.choices[0].message.content
    assert finish[0] == whole.choices[0].finish_reason
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert last.model_extra["berth"]["ttft_ms"] > 0


def test_max_tokens_gives_length(oai: openai.OpenAI) -> None:
    response = _chat(oai, max_tokens=5, extra_body={"ignore_eos": True})
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5


def test_completions_streaming_and_not(oai: openai.OpenAI) -> None:
    whole = oai.completions.create(model=LLAMA, prompt="Return the number", max_tokens=10, temperature=0)
    assert whole.object == "text_completion" and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.id.startswith("cmpl-")
    texts, finish, chunks = _stream_text(
        oai.completions.create(model=LLAMA, prompt="Return the number", max_tokens=10, temperature=0, stream=True)
    )
    assert texts[0] == whole.choices[0].text
    assert finish[0] == whole.choices[0].finish_reason
    echoed = oai.completions.create(model=LLAMA, prompt="Return the number", max_tokens=10, temperature=0, echo=True)
    assert echoed.choices[0].text == "Return the number" + whole.choices[0].text
    # token-id prompts and several prompts at once
    many = oai.completions.create(model=LLAMA, prompt=["Return the number", "The"], max_tokens=4, temperature=0)
    assert [c.index for c in many.choices] == [0, 1]
    assert many.choices[0].text == whole.choices[0].text[: len(many.choices[0].text)]


def test_stop_strings(oai: openai.OpenAI) -> None:
    free = oai.completions.create(model=LLAMA, prompt="Return the number", max_tokens=30, temperature=0, extra_body={"ignore_eos": True})
    text = free.choices[0].text
    stop = text[6:9]
    assert stop and len(text) > 12
    expected = text[: text.index(stop)]
    cut = oai.completions.create(model=LLAMA, prompt="Return the number", max_tokens=30, temperature=0, stop=[stop, "\u2603"], extra_body={"ignore_eos": True})
    assert cut.choices[0].text == expected and cut.choices[0].finish_reason == "stop"
    texts, finish, _ = _stream_text(
        oai.completions.create(model=LLAMA, prompt="Return the number", max_tokens=30, temperature=0, stop=stop, stream=True, extra_body={"ignore_eos": True})
    )
    assert texts[0] == expected and finish[0] == "stop"


def test_n_choices(oai: openai.OpenAI) -> None:
    response = _chat(oai, n=3, temperature=1.0, seed=5, max_tokens=8)
    assert sorted(c.index for c in response.choices) == [0, 1, 2]
    assert response.usage.completion_tokens >= 3  # every choice generated at least one token
    texts, finish, _ = _stream_text(_chat(oai, n=2, temperature=1.0, seed=5, max_tokens=8, stream=True))
    assert set(texts) == {0, 1} and set(finish) == {0, 1}
    assert texts[0] == response.choices[0].message.content and texts[1] == response.choices[1].message.content


def test_seed_determinism(oai: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        return _chat(oai, temperature=1.0, top_p=0.95, seed=seed, max_tokens=16, extra_body={"ignore_eos": True}).choices[0].message.content

    first, again = sample(1234), sample(1234)
    assert first == again
    others = {sample(s) for s in (1, 2, 3)}
    assert len(others | {first}) > 1


def test_request_id_is_echoed(server) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": LLAMA, "messages": CHAT, "max_tokens": 3, "rid": "test-123", "some_future_field": {"x": 1}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rid"] == "test-123" and body["id"] == "chatcmpl-test-123"
    assert response.headers["x-request-id"] == "test-123"


def test_reasoning_content_from_a_thinking_template(oai: openai.OpenAI) -> None:
    response = _chat(oai, model=GPT, max_tokens=24, extra_body={"ignore_eos": True})
    message = response.choices[0].message
    reasoning = message.model_extra.get("reasoning_content")
    assert isinstance(reasoning, str) and reasoning  # the template opens <think>
    assert "<think>" not in reasoning and "</think>" not in reasoning
    texts, _, chunks = _stream_text(_chat(oai, model=GPT, max_tokens=24, stream=True, extra_body={"ignore_eos": True}))
    streamed = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    assert streamed == reasoning and texts[0] == (message.content or "")


# ── errors ─────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": []}, "messages"),
        ({"temperature": 5}, "temperature"),
        ({"n": 100}, "n"),
        ({"max_tokens": 100000}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, None),
    ],
)
def test_bad_requests_are_400(server, body: dict[str, Any], param: str | None) -> None:
    request = {"model": LLAMA, "messages": CHAT, **body}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=request, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] and error["param"].startswith(param)


def test_sdk_error_statuses(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=LLAMA, messages=[])
    with pytest.raises(openai.NotFoundError) as not_found:
        oai.chat.completions.create(model="no-such-model", messages=CHAT)
    assert not_found.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):  # an ONNX model is not a language model
        oai.chat.completions.create(model="linear", messages=CHAT)
    with pytest.raises(openai.InternalServerError) as unavailable:  # a folder that fails to load
        oai.chat.completions.create(model="brokenlm", messages=CHAT)
    assert unavailable.value.status_code == 503
    assert unavailable.value.body["code"] == "model_not_ready"


def test_invalid_json_is_400(server) -> None:
    response = httpx.post(f"{server.url}/v1/completions", content=b"{nope", headers={"content-type": "application/json"}, timeout=10)
    assert response.status_code == 400 and "error" in response.json()


# ── batching, disconnects, side by side ───────────────────────────────────────────


def test_batched_greedy_equals_alone(oai: openai.OpenAI, server) -> None:
    prompts = ["Return the number of items", "def", "The", "Split the string at the last", "Create a new dictionary", "What does"]

    def run(prompt: str) -> tuple[str, float]:
        r = oai.completions.create(model=LLAMA, prompt=prompt, max_tokens=24, temperature=0, extra_body={"ignore_eos": True})
        return r.choices[0].text, r.model_extra["berth"]["mean_batch_size"]

    alone = [run(p)[0] for p in prompts]
    with cf.ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(run, prompts))
    assert [t for t, _ in together] == alone
    assert max(b for _, b in together) > 1.0  # they really shared decode steps


def test_disconnect_frees_the_sequence(server) -> None:
    assert_disconnect_aborts(server, LLAMA)


def test_two_lms_and_an_onnx_model_side_by_side(oai: openai.OpenAI, server, tmp_path: Path) -> None:
    weights = write_linear_softmax(tmp_path / "ref.onnx", features=4, classes=3, seed=3)
    x = [0.5, -1.0, 2.0, 0.25]

    def llama() -> str:
        return _chat(oai, LLAMA, max_tokens=8).choices[0].message.content

    def gpt() -> str:
        return _chat(oai, GPT, max_tokens=8).model

    def onnx() -> list[float]:
        response = httpx.post(f"{server.url}/infer", json={"model": "linear", "input": x}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["probs"]

    with cf.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(f) for f in (llama, gpt, onnx, llama, gpt, onnx)]
        results = [f.result() for f in futures]
    assert isinstance(results[0], str) and results[1] == GPT
    expected = softmax(np.asarray(x, dtype=np.float32) @ weights)
    np.testing.assert_allclose(results[2], expected, rtol=1e-5)
    models = httpx.get(f"{server.url}/models", timeout=10).json()
    states = {m["name"]: m["state"] for m in models["models"]}
    assert states[LLAMA] == states[GPT] == states["linear"] == "READY"


def test_generation_metrics_reach_prometheus(server, oai: openai.OpenAI) -> None:
    _chat(oai, max_tokens=8)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        text = http.get("/metrics").text
    count = re.search(rf'berth_generation_ttft_seconds_count{{model="{LLAMA}"}} (\d+)', text)
    assert count and int(count.group(1)) >= 1, text[:2000]
    assert re.search(rf'berth_generation_tokens_total{{kind="completion",model="{LLAMA}"}} [1-9]', text)
    assert f'berth_generation_running_sequences{{model="{LLAMA}"}}' in text
