"""The waiting queue is bounded: past it a request gets 429 with Retry-After, at once.

A server whose LM decodes one sequence at a time (``max_running: 1``) and queues one
(``max_waiting: 1``). Six long requests arrive together: one runs, at most one more can
wait while it runs, the others are refused with OpenAI's rate-limit envelope (the SDK
raises ``RateLimitError``). Everything accepted is served in full, and afterwards the
queue is empty and new requests are served again.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llm_fixtures import LLAMA, client, flood, gen_stats, lm_server
from waiting import wait_until

pytestmark = pytest.mark.timeout(180)


def test_full_waiting_queue_is_429(tmp_path: Path, demo_dir: Path) -> None:
    server = lm_server(tmp_path / "server", demo_dir, models={LLAMA: {"options": {"max_running": 1, "max_waiting": 1}}})
    oai = client(server)
    try:
        refused, served = flood(oai, LLAMA, 6, 500)
        assert len(refused) >= 3, f"only {len(refused)} of 6 refused"
        for error in refused:
            assert error.status_code == 429
            assert error.body["code"] == "rate_limit_exceeded" and error.body["type"] == "rate_limit_error"
            assert int(error.response.headers["retry-after"]) >= 1
        for answer in served:
            assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 500
        stats = gen_stats(server, LLAMA)
        assert stats["rejected"] == len(refused) and stats["max_waiting"] == 1
        wait_until(lambda: gen_stats(server, LLAMA)["running"] == 0 and gen_stats(server, LLAMA)["waiting"] == 0, what="the queue to drain")
        raw = httpx.post(f"{server.url}/v1/completions", json={"model": LLAMA, "prompt": "The", "max_tokens": 3}, timeout=30)
        assert raw.status_code == 200, raw.text
    finally:
        server.stop()
