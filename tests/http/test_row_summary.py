"""/infer's one-row summary agrees with the batch form used everywhere else."""

from __future__ import annotations

import numpy as np
import pytest

from berth.http.seed_api import _row_summary
from berth.streaming.preprocess import row_distributions

_rng = np.random.default_rng(7)


def _probs(size: int) -> np.ndarray:
    values = _rng.random(size).astype(np.float32)
    return values / values.sum()


@pytest.mark.parametrize(
    "row",
    [
        _probs(10),  # a classifier's softmax output: passed through
        _rng.standard_normal(10).astype(np.float32),  # logits: soft-maxed in Python floats
        _rng.standard_normal(10).astype(np.float64) * 50,  # other dtype, large logits
        _probs(300),  # past the small-row limit: numpy path
        _rng.standard_normal(300).astype(np.float32),
        np.array([3.0], dtype=np.float32),  # one logit: probability 1
        np.array([[0.25, 0.75]], dtype=np.float32),  # not flat: read as one row
    ],
    ids=["probs", "logits", "float64-logits", "large-probs", "large-logits", "single", "2-d"],
)
def test_row_summary_matches_row_distributions(row: np.ndarray) -> None:
    probs, logits, top, top_score = _row_summary(row)
    expected_probs, expected_logits = row_distributions(row.reshape(1, -1))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected_probs[0], rtol=1e-5, atol=1e-7)
    if expected_logits is None:
        assert logits is None
    else:
        assert logits is not None
        np.testing.assert_array_equal(logits, expected_logits[0])
    assert top == int(expected_probs[0].argmax())
    assert top_score == pytest.approx(float(expected_probs[0].max()), rel=1e-5)


def test_empty_row_has_no_top() -> None:
    probs, logits, top, top_score = _row_summary(np.zeros(0, dtype=np.float32))
    assert probs.size == 0 and logits is None and top == -1 and top_score is None
