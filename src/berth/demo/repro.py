"""Seeding and thread settings, so two builds give the same weights and similar timings.

The demo is rebuilt on every fresh checkout; accuracy figures in ``BUILD_INFO.json`` and
the tests' expectations only mean something if a rebuild reproduces them. Two torch
threads match the 2-core machines the build time target was set on, and keep the build
from oversubscribing a shared CI runner.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

BUILD_THREADS = 2


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch globally; return a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def torch_threads(n: int = BUILD_THREADS) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, restoring the caller's setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


__all__ = ["BUILD_THREADS", "seed_everything", "torch_threads"]
