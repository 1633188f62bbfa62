"""A language model in its own executor process (``isolation: process``, seed 002).

One server holds the demo's tiny Llama twice — ``tinyllama`` in a worker process and
``llama_here`` on the server's own threads — plus a tightly bounded isolated copy
for the 429 path, all driven with the official ``openai`` SDK. The isolated model
must answer exactly what the in-process one answers, stream, stop, honour ``n`` and
``seed``, abort on disconnect inside the worker, refuse a full queue with 429, and
end a stream whose worker dies with an error event instead of hanging, then come
back on its own.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

from llm_fixtures import LLAMA, assert_disconnect_aborts, client, flood, gen_stats, lm_dir, lm_server
from waiting import wait_until

pytestmark = pytest.mark.timeout(240)

HERE = "llama_here"
TIGHT = "llama_tight"
PROMPTS = ["Return the number of items", "def", "Split the string at the last"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path):
    folder = str(lm_dir(demo_dir, LLAMA))
    srv = lm_server(
        tmp_path_factory.mktemp("isolated-lm") / "server",
        demo_dir,
        onnx=True,
        models={
            LLAMA: {"isolation": "process", "options": {"torch_threads": 2}},
            HERE: {"model_path": folder, "preload": True, "options": {"torch_threads": 2}},
            TIGHT: {"model_path": folder, "isolation": "process", "options": {"max_running": 1, "max_waiting": 1}},
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server) -> openai.OpenAI:
    return client(server)


def _worker(server: Any, model: str) -> psutil.Process | None:
    """The server's live worker process serving ``model``."""
    for child in psutil.Process(server.process.pid).children():
        try:
            command = child.cmdline()
            if "berth.isolation.worker" in command and command[command.index("--name") + 1] == model and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except (psutil.NoSuchProcess, ValueError, IndexError):
            pass
    return None


def _complete(oai: openai.OpenAI, model: str, prompt: str, **kwargs: Any) -> Any:
    kwargs.setdefault("max_tokens", 24)
    kwargs.setdefault("temperature", 0)
    return oai.completions.create(model=model, prompt=prompt, extra_body={"ignore_eos": True}, **kwargs)


def test_the_weights_live_in_a_worker_process(server, oai: openai.OpenAI) -> None:
    worker = _worker(server, LLAMA)
    assert worker is not None and worker.pid != server.process.pid
    model = httpx.get(f"{server.url}/models/{LLAMA}", timeout=10).json()
    assert model["state"] == "READY" and model["backend"] == "lm"
    # the model's memory is the worker's, measured there (the in-process twin's is a delta)
    assert model["memory_mb"] > 50
    answer = oai.chat.completions.create(model=LLAMA, messages=[{"role": "user", "content": "What does len do?"}], temperature=0, max_tokens=16)
    assert answer.choices[0].message.content and answer.usage.completion_tokens >= 1


def test_torch_threads_are_the_workers_own_or_the_servers(server) -> None:
    """torch has one thread pool per process: an isolated model may size its own; in
    the server every torch model shares the server-wide count (one core fewer than the
    process may use, so the event loop keeps one), whatever a model asks for."""
    isolated = httpx.get(f"{server.url}/v1/models/{LLAMA}", timeout=10).json()["berth"]
    here = httpx.get(f"{server.url}/v1/models/{HERE}", timeout=10).json()["berth"]
    assert isolated["isolation"] == "process" and isolated["torch_threads"] == 2
    assert "isolation" not in here
    assert here["torch_threads"] == max(1, len(os.sched_getaffinity(server.process.pid)) - 1)


def test_isolated_greedy_output_equals_in_process(oai: openai.OpenAI) -> None:
    for prompt in PROMPTS:
        isolated = _complete(oai, LLAMA, prompt)
        here = _complete(oai, HERE, prompt)
        assert isolated.choices[0].text == here.choices[0].text
        assert isolated.usage.completion_tokens == here.usage.completion_tokens == 24
        assert isolated.usage.prompt_tokens == here.usage.prompt_tokens


def test_streaming_matches_non_streaming_with_usage(oai: openai.OpenAI) -> None:
    whole = _complete(oai, LLAMA, "def", max_tokens=20)
    chunks = list(_complete(oai, LLAMA, "def", max_tokens=20, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == whole.choices[0].text and finishes == ["length"]
    assert chunks[-1].usage.completion_tokens == 20 and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_seed_n_and_stop_work_across_the_process_boundary(oai: openai.OpenAI) -> None:
    def sampled() -> list[str]:
        answer = oai.completions.create(model=LLAMA, prompt="The", max_tokens=16, temperature=1.0, seed=7, n=2)
        return [c.text for c in sorted(answer.choices, key=lambda c: c.index)]

    first = sampled()
    assert len(first) == 2 and sampled() == first
    here = oai.completions.create(model=HERE, prompt="The", max_tokens=16, temperature=1.0, seed=7, n=2)
    assert [c.text for c in sorted(here.choices, key=lambda c: c.index)] == first

    free = _complete(oai, LLAMA, "def", max_tokens=30).choices[0].text
    stop = free.strip()[3:6]
    assert stop, free
    stopped = _complete(oai, LLAMA, "def", max_tokens=30, stop=[stop]).choices[0]
    assert stopped.finish_reason == "stop" and stop not in stopped.text and free.startswith(stopped.text)


def test_disconnect_aborts_the_sequence_in_the_worker(server) -> None:
    assert_disconnect_aborts(server, LLAMA)
    # the worker's decode loop stopped stepping it: its step count stays put
    steps = gen_stats(server, LLAMA)["decode_steps"]
    time.sleep(0.5)
    assert gen_stats(server, LLAMA)["decode_steps"] == steps


def test_a_full_waiting_queue_is_429_at_once(oai: openai.OpenAI, server) -> None:
    refused, served = flood(oai, TIGHT, 6, 300)
    assert len(refused) >= 3, (refused, served)
    assert all(e.status_code == 429 and int(e.response.headers["retry-after"]) >= 1 for e in refused)
    assert all(a.choices[0].finish_reason == "length" and a.usage.completion_tokens == 300 for a in served)
    stats = gen_stats(server, TIGHT)
    assert stats["rejected"] == len(refused) and stats["finished"] >= len(served)


def test_generation_metrics_of_the_isolated_model(server, oai: openai.OpenAI) -> None:
    _complete(oai, LLAMA, "def", max_tokens=5)
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    completion = [line for line in text.splitlines() if line.startswith(f'berth_generation_tokens_total{{kind="completion",model="{LLAMA}"}}')]
    assert completion and float(completion[0].rsplit(" ", 1)[1]) >= 5
    assert f'berth_generation_ttft_seconds_count{{model="{LLAMA}"}}' in text
    stats = gen_stats(server, LLAMA)
    assert stats["prefills"] >= 1 and stats["decode_steps"] >= 1 and stats["generated_tokens"] >= 5


def test_a_worker_that_dies_mid_stream_ends_it_with_an_error_then_comes_back(server, oai: openai.OpenAI) -> None:
    worker = _worker(server, LLAMA)
    assert worker is not None
    body = {"model": LLAMA, "prompt": "The", "max_tokens": 400, "temperature": 0, "stream": True, "ignore_eos": True}
    events: list[str] = []
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if len(events) == 3:
                    os.kill(worker.pid, signal.SIGKILL)  # a process this test's server started
    assert events[-1] == "[DONE]" or "error" in events[-1], events[-3:]
    assert any('"error"' in e for e in events[-2:]), events[-3:]
    assert len(events) < 400
    # the Registry restarts the worker after its back-off; the model answers again
    wait_until(lambda: httpx.get(f"{server.url}/models/{LLAMA}", timeout=5).json()["state"] == "READY", timeout=60, interval=0.2, what=f"{LLAMA} to be READY again")
    restarted = _worker(server, LLAMA)
    assert restarted is not None and restarted.pid != worker.pid
    assert _complete(oai, LLAMA, "def", max_tokens=4).usage.completion_tokens == 4
