"""Servers and helpers for the OpenAI-API tests.

(No ``__init__.py`` and no ``conftest.py`` here: either would clash with the names of
the top-level ``tests/conftest.py``; this module is imported by name instead.)

The language models are the demo's tiny LMs (``berth demo build`` trains them into
``var/demo/llm/models``); servers name their folders with ``model_path`` so the real
repository → runtime → transformers path is what loads them.
"""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from typing import Any

import httpx
import openai

from conftest import DEMO_DIR, BerthServer
from models import write_linear_softmax
from waiting import wait_until

LLAMA = "tinyllama"
GPT = "tinygpt"


def lm_dir(demo_dir: Path, name: str) -> Path:
    return demo_dir / "llm" / "models" / name


def lm_server(workdir: Path, demo_dir: Path, *, models: dict[str, Any] | None = None, onnx: bool = False, broken: bool = False) -> BerthServer:
    """A server with both demo LMs (``models`` adds or overrides model settings)."""
    workdir.mkdir(parents=True, exist_ok=True)
    repo = workdir / "repo"
    repo.mkdir(exist_ok=True)
    if onnx:
        write_linear_softmax(repo / "linear.onnx", features=4, classes=3, seed=3)
    if broken:
        folder = repo / "brokenlm" / "1"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
        (folder / "model.safetensors").write_bytes(b"this is not a safetensors file")
    config: dict[str, Any] = {
        "repository": str(repo),
        "server": {"request_timeout_s": 60},
        "capacity": {"max_models": 8},
        "models": {
            LLAMA: {"model_path": str(lm_dir(demo_dir, LLAMA)), "preload": True},
            GPT: {"model_path": str(lm_dir(demo_dir, GPT))},
        },
    }
    for name, settings in (models or {}).items():
        config["models"][name] = {**config["models"].get(name, {}), **settings}
    return BerthServer(config, workdir).start(timeout=120)


def client(server: BerthServer, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60, **kwargs)


def gen_stats(server: BerthServer, model: str) -> dict[str, Any]:
    return httpx.get(f"{server.url}/v1/generation/stats", timeout=10).json()["models"].get(model, {})


def assert_disconnect_aborts(server: BerthServer, model: str) -> None:
    """A client that drops a running stream frees its sequence within moments."""
    body = {"model": model, "prompt": "The", "max_tokens": 500, "temperature": 0, "stream": True, "ignore_eos": True}
    before = gen_stats(server, model).get("aborted", 0)
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert gen_stats(server, model)["running"] == 1
    wait_until(lambda: gen_stats(server, model)["running"] == 0, timeout=5, what=f"{model}'s dropped stream to stop running")
    assert gen_stats(server, model)["aborted"] == before + 1


def flood(oai: openai.OpenAI, model: str, count: int, max_tokens: int) -> tuple[list[openai.RateLimitError], list[Any]]:
    """``count`` long greedy completions at once: (the refused ones, the answers)."""

    def long_request(_: int) -> Any:
        try:
            return oai.completions.create(model=model, prompt="The", max_tokens=max_tokens, temperature=0, extra_body={"ignore_eos": True})
        except openai.RateLimitError as exc:
            return exc

    with cf.ThreadPoolExecutor(count) as pool:
        results = list(pool.map(long_request, range(count)))
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    served = [r for r in results if not isinstance(r, Exception)]
    assert len(refused) + len(served) == count, results
    return refused, served


__all__ = [
    "DEMO_DIR", "GPT", "LLAMA", "assert_disconnect_aborts", "client", "flood", "gen_stats", "lm_dir", "lm_server",
]
