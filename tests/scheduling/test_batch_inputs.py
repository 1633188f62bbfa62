"""How a batch's inputs are put together: requests of any memory layout and row count
share one model call, and each caller gets its own rows back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from berth.config import load_config
from berth.engine import Engine
from berth.scheduling.batcher import _joined
from models import softmax, write_linear_softmax


async def _mixed_batch(model_path: Path, weights: np.ndarray) -> None:
    engine = Engine(load_config(overrides={"models": {"tiny": {"model_path": str(model_path), "preload": True, "max_batch_size": 32}}}))
    await engine.start()
    try:
        rng = np.random.default_rng(1)
        wide = rng.random((2, 8), dtype=np.float32)
        inputs = [
            rng.random((1, 4), dtype=np.float32),
            rng.random((3, 4), dtype=np.float32),  # several rows in one request
            wide[:, ::2],  # a strided view: not C-contiguous
            np.asfortranarray(rng.random((2, 4), dtype=np.float32)),
            rng.random((1, 4), dtype=np.float32),
        ]
        assert not inputs[2].flags.c_contiguous and not inputs[3].flags.c_contiguous
        stats = engine.registry.entries[("tiny", "1")].stats
        batches, rows = stats.batches, stats.batch_rows
        # submitted in one turn of the loop, so they are queued together and share a batch
        predictions = await asyncio.gather(*(engine.infer("tiny", {"x": x}) for x in inputs))
        assert (stats.batches - batches, stats.batch_rows - rows) == (1, 9)
        for x, prediction in zip(inputs, predictions):
            assert prediction.batch_size == 9
            np.testing.assert_allclose(prediction.outputs["probs"], softmax(x @ weights), rtol=1e-5)
    finally:
        await engine.stop()


def test_requests_of_any_layout_share_a_batch_and_get_their_own_rows(tmp_path: Path) -> None:
    weights = write_linear_softmax(tmp_path / "tiny.onnx")
    asyncio.run(_mixed_batch(tmp_path / "tiny.onnx", weights))


def test_joined_matches_concatenate_for_every_kind_of_array() -> None:
    rng = np.random.default_rng(2)
    cases = {
        "contiguous rows": [rng.random((1, 3, 2), dtype=np.float32) for _ in range(5)],
        "several rows each": [rng.integers(0, 9, (n, 4), dtype=np.int64) for n in (1, 3, 2)],
        "strided": [rng.random((2, 6))[:, ::3] for _ in range(3)],
        "python objects": [np.array([[b"a", b"bc"]], dtype=object), np.array([[b"", b"d"]], dtype=object)],
        "empty items": [np.zeros((1, 0), dtype=np.float32), np.zeros((2, 0), dtype=np.float32)],
        "strings": [np.array([["ab"]]), np.array([["cd"]])],
    }
    for name, arrays in cases.items():
        joined = _joined(arrays)
        expected = np.concatenate(arrays)
        assert joined.dtype == expected.dtype and joined.shape == expected.shape, name
        assert (joined == expected).all(), name
        assert joined.flags.writeable, name  # as concatenate's result: a model may write to it
