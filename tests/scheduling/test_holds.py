"""A request holds its model from acceptance until the batcher is done with it: answered,
refused, dropped or failed, every hold comes back exactly once, and a batch still
running keeps its model held even after its requests were answered at their deadline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from berth.config import load_config
from berth.engine import Engine
from berth.errors import DeadlineExceeded, InternalError, InvalidInput
from models import write_moody_model

_SLOW, _FAILS = 2.0, 3.0  # x[0, 0] that makes the model sleep 0.4 s, or raise


def _x(first: float) -> dict[str, np.ndarray]:
    x = np.zeros((1, 4), dtype=np.float32)
    x[0, 0] = first
    return {"x": x}


async def _scenario(repository: Path) -> None:
    engine = Engine(load_config(overrides={"repository": str(repository), "models": {"moody": {"preload": True}}}))
    await engine.start()
    try:
        entry = engine.registry.entries[("moody", "1")]

        def settled() -> None:
            assert entry.leases == 0
            assert engine.inflight == 0
            assert entry.batcher is not None and entry.batcher.depth == 0

        # answered
        prediction = await engine.infer("moody", _x(0.0))
        assert prediction.outputs["y"][0, 0] == 1.0 and prediction.total_ms > 0
        settled()

        # refused before it was queued: the error is raised by the call itself
        with pytest.raises(InvalidInput):
            engine.infer("moody", {"x": np.zeros((1, 5), dtype=np.float32)})
        settled()

        # the model fails: each caller gets an InternalError, counted once each
        failures = entry.stats.failures
        with pytest.raises(InternalError):
            await engine.infer("moody", _x(_FAILS))
        assert entry.stats.failures == failures + 1
        settled()

        # a slow batch runs; behind it one caller gives up and one waits past its deadline
        running = asyncio.ensure_future(engine.infer("moody", _x(_SLOW)))
        await asyncio.sleep(0.05)
        given_up = asyncio.ensure_future(engine.infer("moody", _x(0.0)))
        expiring = asyncio.ensure_future(engine.infer("moody", _x(0.0), timeout_s=0.1))
        await asyncio.sleep(0)
        assert entry.leases == 3 and engine.inflight == 3
        given_up.cancel()
        with pytest.raises(DeadlineExceeded):
            await expiring
        await running
        settled()

        # answered at its deadline while its batch still runs: the model stays held
        # until the run ends, so it cannot be evicted or unloaded under the run
        with pytest.raises(DeadlineExceeded):
            await engine.infer("moody", _x(_SLOW), timeout_s=0.1)
        assert entry.leases == 1
        for _ in range(100):
            if entry.leases == 0:
                break
            await asyncio.sleep(0.01)
        settled()
    finally:
        await engine.stop()


def test_every_hold_comes_back_once(tmp_path: Path) -> None:
    # one batch at a time, one request per batch, always on the worker threads
    config = "max_batch_size: 1\nmax_concurrency: 1\noptions:\n  inline_max_us: 0\n"
    write_moody_model(tmp_path / "repo" / "moody", config=config, sleep_s=0.4)
    asyncio.run(_scenario(tmp_path / "repo"))
