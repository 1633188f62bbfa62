"""Seeding and thread settings, so two builds give the same weights and similar timings.

The demo is rebuilt on every fresh checkout; accuracy figures in ``BUILD_INFO.json`` and
the tests' expectations only mean something if a rebuild reproduces them. Two torch
threads match the 2-core machines the build time target was set on, and keep the build
from oversubscribing a shared CI runner.

Training the two small classifiers uses *one* thread: their matmuls are too small to
gain from a second, and with two threads a single busy core elsewhere (a parallel test
run) makes torch's worker threads wait on each other. Measured on a 2-core box with
one core kept busy: digits + EMG training took 113 s with two threads, 9 s with one
(6.7 s with one, 13.7 s with two when idle), same accuracy.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

BUILD_THREADS = 2
TRAIN_THREADS = 1


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


__all__ = ["BUILD_THREADS", "TRAIN_THREADS", "seed_everything", "torch_threads"]
