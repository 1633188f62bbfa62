"""The dynamic batcher and per-model concurrency, observed from inside the model."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from models import read_events, write_python_model

X = {"input": [1.0, 2.0, 3.0, 4.0]}


def _post_many(server: Any, model: str, count: int, threads: int) -> list[dict[str, Any]]:
    def call(index: int) -> dict[str, Any]:
        with server.client() as client:
            response = client.post("/infer", json={"input": [float(index)] * 4, "model": model})
            assert response.status_code == 200, response.text
            return {"index": index, **response.json()}

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(call, range(count)))


WARMUP_RUNS = 2  # the Registry runs a model twice on zeros before it serves


def _request_rows(events: Path) -> list[int]:
    return [int(e[2]) for e in read_events(events) if e[1] == "predict_start"][WARMUP_RUNS:]


def _max_overlap(events: list[tuple[str, ...]], model: str) -> int:
    level = peak = 0
    for event in sorted((e for e in events if e[0] == model and e[1].startswith("predict")), key=lambda e: float(e[-1])):
        level += 1 if event[1] == "predict_start" else -1
        peak = max(peak, level)
    return peak


def test_concurrent_requests_are_batched_up_to_the_limit(tmp_path: Path, make_server: Any) -> None:
    events = tmp_path / "events.log"
    write_python_model(tmp_path / "repo" / "batchy", events=events, predict_sleep=0.05, config="max_batch_size: 8\n")
    server = make_server({"repository": str(tmp_path / "repo"), "server": {"worker_count_per_gpu": 1}, "models": {"batchy": {"preload": True}}})
    results = _post_many(server, "batchy", 40, 20)
    # each answer is its own row, scaled by 2, even when it ran inside a batch
    # (rows of equal values are not a distribution, so the raw values come back as logits)
    for r in results:
        assert r["logits"] == [2.0 * r["index"]] * 4
    rows = _request_rows(events)
    assert sum(rows) == 40
    assert max(rows) > 1 and max(rows) <= 8
    assert max(r["batch_size"] for r in results) > 1
    with server.client() as client:
        stats = client.get("/models").json()["models"][0]["stats"]
    assert stats["mean_batch_size"] > 1


def test_batched_rows_return_to_their_own_callers(tmp_path: Path, make_server: Any) -> None:
    write_python_model(tmp_path / "repo" / "echo", predict_sleep=0.02, scale=1.0)
    server = make_server({"repository": str(tmp_path / "repo"), "server": {"worker_count_per_gpu": 1}})
    results = _post_many(server, "echo", 30, 10)
    for r in results:
        assert r["logits"] == [float(r["index"])] * 4
    assert max(r["batch_size"] for r in results) > 1


def test_queue_delay_lets_a_partial_batch_fill(tmp_path: Path, make_server: Any) -> None:
    events = tmp_path / "events.log"
    write_python_model(tmp_path / "repo" / "patient", events=events, config="max_batch_size: 4\nmax_queue_delay_ms: 400\n")
    server = make_server({"repository": str(tmp_path / "repo"), "models": {"patient": {"preload": True}}})

    def call() -> None:
        with server.client() as client:
            assert client.post("/infer", json={**X, "model": "patient"}).status_code == 200

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # spaced out, but well inside the 400 ms window
    for thread in threads:
        thread.join()
    rows = _request_rows(events)
    assert rows == [3]


def test_per_model_concurrency_limit(tmp_path: Path, make_server: Any) -> None:
    events = tmp_path / "events.log"
    for name, limit in (("one", 1), ("two", 2)):
        write_python_model(
            tmp_path / "repo" / name, events=events, predict_sleep=0.15, thread_safe=True,
            config=f"max_batch_size: 1\nmax_concurrency: {limit}\n",
        )
    server = make_server({"repository": str(tmp_path / "repo"), "server": {"worker_count_per_gpu": 4}})
    _post_many(server, "one", 6, 6)
    _post_many(server, "two", 6, 6)
    log = read_events(events)
    assert _max_overlap(log, "one") == 1
    assert _max_overlap(log, "two") == 2
