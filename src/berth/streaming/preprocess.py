"""Window preprocessing (seed 001 ``preprocess``) and turning logits into a gesture."""

from __future__ import annotations

import numpy as np

_EPS = np.float32(1e-6)


def zscore(window: np.ndarray) -> np.ndarray:
    """Per-channel z-score over the window's time axis: ``[time, channels]`` in and out."""
    mean = window.mean(axis=0, keepdims=True)
    std = window.std(axis=0, keepdims=True)
    return ((window - mean) / (std + _EPS)).astype(np.float32, copy=False)


def row_distributions(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, logits or None) for a batch of model output rows, flattened per row.

    Outputs that already are probability distributions (a model ending in a softmax)
    are passed through, with None for the logits; any others are taken as logits and
    their softmax is returned with the rows themselves."""
    rows = outputs.reshape(outputs.shape[0], -1).astype(np.float32, copy=False)
    if rows.size and rows.min() >= 0.0 and float(np.abs(rows.sum(axis=1) - 1.0).max()) <= 1e-3:
        return rows, None
    shifted = np.exp(rows - rows.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True), rows


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """The probabilities of :func:`row_distributions`."""
    return row_distributions(logits)[0]
