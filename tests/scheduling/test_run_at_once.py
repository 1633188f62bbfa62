"""A tiny model's lone requests skip the queue; company brings batching back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from berth.config import load_config
from berth.engine import Engine
from tests.models import softmax, write_linear_softmax


async def _scenario(model_path: Path, weights: np.ndarray) -> None:
    engine = Engine(load_config(overrides={"models": {"tiny": {"model_path": str(model_path), "preload": True}}}))
    await engine.start()
    try:
        rng = np.random.default_rng(0)
        batcher = engine.registry.entries[("tiny", "1")].batcher
        assert batcher is not None

        # one caller at a time: after the batcher has measured the model on its worker
        # threads and seen deferring find nobody else, requests run the moment they arrive
        for _ in range(200):
            x = rng.random((1, 4), dtype=np.float32)
            prediction = await engine.infer("tiny", {"x": x})
            np.testing.assert_allclose(prediction.outputs["probs"], softmax(x @ weights), rtol=1e-5)
        alone = batcher.ran_at_once
        assert alone > 100, alone
        assert alone <= 200 * 15 / 16, "every 16th request must still be deferred, to look for company"
        assert engine.describe(engine.registry.entries[("tiny", "1")])["ran_at_once"] == alone

        # 64 callers at once: the first deferred probe finds company and batching resumes,
        # and every caller still gets its own row back
        stats = engine.registry.entries[("tiny", "1")].stats
        batches, rows = stats.batches, stats.batch_rows

        async def caller(index: int) -> None:
            for _ in range(20):
                x = np.full((1, 4), index, dtype=np.float32)
                prediction = await engine.infer("tiny", {"x": x})
                np.testing.assert_allclose(prediction.outputs["probs"], softmax(x @ weights), rtol=1e-5)

        await asyncio.gather(*(caller(i) for i in range(64)))
        assert batcher.ran_at_once - alone < 64, "concurrent callers must be batched, not run one by one"
        assert (stats.batch_rows - rows) / (stats.batches - batches) > 4
    finally:
        await engine.stop()


def test_lone_requests_run_at_once_and_company_restores_batching(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    weights = write_linear_softmax(path)
    asyncio.run(_scenario(path, weights))
