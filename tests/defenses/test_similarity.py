"""Cosine similarity (strategies/rules/similarity.py): float64 math, zero rows, exactly parallel rows."""

from __future__ import annotations

import numpy as np
import pytest
from strategies.rules.similarity import angle_matrix, cosine_matrix


def test_cosine_matrix_message_and_float64_math():
    with pytest.raises(ValueError) as err:
        cosine_matrix(np.ones(3))
    assert str(err.value) == "expected a [K, F] matrix, got shape (3,)"
    # float32 rows are compared in float64: cos(e0, e0 + e1) = 1 / sqrt(2) to full precision
    cos = cosine_matrix(np.array([[1.0, 0.0], [1.0, 1.0]], dtype=np.float32))
    assert cos.dtype == np.float64
    assert cos[0, 1] == pytest.approx(1 / np.sqrt(2), rel=1e-15)


def test_cosine_matrix_small_and_zero_rows():
    """Rows of norm < 1 are normalised too; a zero row has cosine 0 with everything, itself included."""
    x = np.array([[0.03, 0.04], [0.0, 0.0], [0.0, 0.5]])
    expected = np.array([[1.0, 0.0, 0.8], [0.0, 0.0, 0.0], [0.8, 0.0, 1.0]])
    np.testing.assert_allclose(cosine_matrix(x), expected, rtol=1e-15, atol=0)
    theta = angle_matrix(x)
    np.testing.assert_array_equal(np.diag(theta), [0.0, 0.0, 0.0])
    assert theta[0, 1] == pytest.approx(np.pi / 2)


def test_parallel_and_opposite_rows_are_snapped_to_exactly_plus_minus_one():
    """Rounding leaves u.v of parallel unit vectors at 1 - 1e-16; the snap makes copies exactly parallel."""
    x = np.random.default_rng(0).normal(size=(7, 7))[6]  # a row whose raw products miss +-1 by ~1e-16
    rows = np.stack([x, 3 * x, -x])
    unit = rows / np.linalg.norm(rows, axis=1)[:, None]
    raw = unit @ unit.T
    assert raw[0, 1] != 1.0 and raw[0, 2] != -1.0  # the precondition that makes this test meaningful
    cos = cosine_matrix(rows)
    np.testing.assert_array_equal(cos, [[1, 1, -1], [1, 1, -1], [-1, -1, 1]])
    np.testing.assert_array_equal(angle_matrix(rows)[0], [0.0, 0.0, np.pi])
