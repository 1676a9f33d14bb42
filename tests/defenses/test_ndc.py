"""Norm difference clipping (NDC): clip and drop modes, fixed and median bounds."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.rules.norm_clipping import ndc
from strategies import defenses as D
from config_errors import config_error


def _on_a_line(norms) -> np.ndarray:
    """Updates pointing the same way with the given L2 norms."""
    direction = np.array([3.0, 4.0, 0.0]) / 5.0
    return np.asarray(norms, dtype=float)[:, None] * direction


def test_clip_hand_worked():
    u = _on_a_line([1, 2, 3, 4, 5])
    agg = ndc(u, np.ones(5), bound=3.0, mode="clip")
    # 4 and 5 are scaled down to norm 3; everybody contributes
    np.testing.assert_allclose(agg.update, _on_a_line([(1 + 2 + 3 + 3 + 3) / 5])[0])
    np.testing.assert_array_equal(agg.kept, [True, True, True, False, False])
    np.testing.assert_allclose(agg.weights, np.full(5, 0.2))
    np.testing.assert_allclose(agg.info["norms"], [1, 2, 3, 4, 5])
    assert agg.info["bound"] == 3.0 and agg.info["num_flagged"] == 2


def test_drop_median_hand_worked_matches_ada_reference():
    # ADA's reference keeps norms strictly below the round median: median 3 -> keep 1, 2
    u = _on_a_line([5, 1, 4, 2, 3])
    n = np.array([1.0, 1.0, 1.0, 3.0, 1.0])
    agg = ndc(u, n, bound="median", mode="drop")
    np.testing.assert_array_equal(agg.kept, [False, True, False, True, False])
    np.testing.assert_allclose(agg.update, _on_a_line([(1 * 1 + 2 * 3) / 4])[0])
    np.testing.assert_allclose(agg.weights, [0, 0.25, 0, 0.75, 0])
    assert agg.info["bound"] == 3.0


def test_drop_median_even_k_against_numpy_reference():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(8, 40)) * rng.uniform(0.5, 3, size=(8, 1))
    n = rng.integers(1, 50, size=8).astype(float)
    norms = np.linalg.norm(u, axis=1)
    keep = norms < np.median(norms)
    agg = ndc(u, n, bound="median", mode="drop")
    np.testing.assert_array_equal(agg.kept, keep)
    np.testing.assert_allclose(agg.update, (n[keep, None] * u[keep]).sum(0) / n[keep].sum(), atol=1e-15)
    assert keep.sum() == 4


def test_clip_against_numpy_reference_and_bound_property():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(10, 30)) * rng.uniform(0.1, 4, size=(10, 1))
    n = rng.integers(1, 50, size=10).astype(float)
    bound = 3.0
    norms = np.linalg.norm(u, axis=1)
    clipped = u * np.minimum(1.0, bound / norms)[:, None]
    assert np.all(np.linalg.norm(clipped, axis=1) <= bound + 1e-12)
    agg = ndc(u, n, bound=bound, mode="clip")
    np.testing.assert_allclose(agg.update, (n[:, None] * clipped).sum(0) / n.sum(), atol=1e-15)
    np.testing.assert_array_equal(agg.kept, norms <= bound)


def test_clip_with_median_bound():
    u = _on_a_line([1, 2, 3, 10])
    agg = ndc(u, np.ones(4), bound="median", mode="clip")  # median norm 2.5
    np.testing.assert_allclose(agg.update, _on_a_line([(1 + 2 + 2.5 + 2.5) / 4])[0])
    np.testing.assert_array_equal(agg.kept, [True, True, False, False])


def test_drop_fixed_bound_is_strict():
    u = _on_a_line([1, 2, 3])
    agg = ndc(u, np.ones(3), bound=2.0, mode="drop")
    np.testing.assert_array_equal(agg.kept, [True, False, False])
    np.testing.assert_allclose(agg.update, u[0])


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"bound": -1.0}, "bound"),
        ({"bound": 0.0}, "bound"),
        ({"bound": "mean"}, "bound"),
        ({"bound": float("nan")}, "bound"),
        ({"bound": None}, "bound"),
        ({"mode": "scale"}, "mode"),
    ],
)
def test_rejects_bad_parameters(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ndc(np.ones((3, 2)), np.ones(3), **kwargs)


@pytest.mark.parametrize("mode", ["clip", "drop"])
def test_degenerate_inputs(mode):
    row = np.array([0.5, -1.0, 2.0])
    one = ndc(row[None], np.ones(1), bound="median", mode=mode)
    if mode == "clip":
        np.testing.assert_allclose(one.update, row)  # its norm equals the bound: unchanged
    else:
        np.testing.assert_array_equal(one.update, np.zeros(3))  # dropped: global model unchanged
        assert one.info["empty"]
    two = ndc(np.stack([row, 3 * row]), np.ones(2), bound="median", mode=mode)
    # median of norms |r| and 3|r| is 2|r|: clip scales 3r to 2r -> mean 1.5r; drop keeps r alone
    np.testing.assert_allclose(two.update, 1.5 * row if mode == "clip" else row)
    same = ndc(np.tile(row, (5, 1)), np.ones(5), bound="median", mode=mode)
    # every norm equals the median bound: clip leaves them; drop (strict r < M, the ADA code) drops all
    np.testing.assert_allclose(same.update, row if mode == "clip" else np.zeros(3))
    zero = ndc(np.zeros((4, 3)), np.ones(4), bound="median", mode=mode)
    np.testing.assert_array_equal(zero.update, np.zeros(3))
    fixed = ndc(np.zeros((4, 3)), np.ones(4), bound=1.0, mode=mode)
    np.testing.assert_array_equal(fixed.update, np.zeros(3))
    assert fixed.kept.all()


@pytest.mark.parametrize(
    ("mode", "flagged"),
    [
        # bound 3: clip flags r > 3 (4, 5); drop flags r >= 3 (3, 4, 5) -- strict r < M keeps 1, 2
        ("clip", 2),
        ("drop", 3),
    ],
)
def test_ndc_info_reports_mode_and_flag_count(mode, flagged):
    """The round report's ``mode`` and ``num_flagged`` say what the defense did (drop counts the dropped)."""
    agg = ndc(_on_a_line([1, 2, 3, 4, 5]), np.ones(5), bound=3.0, mode=mode)
    assert agg.info["mode"] == mode
    assert agg.info["num_flagged"] == flagged == int((~agg.kept).sum())
    assert agg.info["empty"] is False


def test_ndc_bound_values():
    from strategies.rules.norm_clipping import check_bound

    assert check_bound("median") == "median"
    assert check_bound("0.5") == 0.5 and check_bound(2) == 2.0
    for bad in ("0", "-1", "inf", "nan"):
        with pytest.raises(ValueError, match=f"^bound must be a finite number > 0, or 'median', got '{bad}'$"):
            check_bound(bad)
        e = config_error(defense="ndc", **{"ndc-bound": bad})
        assert e.key == "ndc-bound" and "a finite number > 0, or 'median'" in str(e)
    assert D.NormDifferenceClipping(bound="0.5").bound == 0.5


def test_ndc_strategy_uses_its_bound_and_mode():
    # norms 0.5, 0.8, 3: with bound 1 "drop" keeps the first two (the median bound 0.8 would keep one,
    # "clip" would keep the third, scaled to norm 1)
    upd = np.array([[0.3, 0.4, 0.0], [0.0, 0.0, 0.8], [3.0, 0.0, 0.0]])
    n = np.array([10.0, 30.0, 20.0])
    agg = D.NormDifferenceClipping(bound=1.0, mode="drop").aggregate_updates(upd, n, None, [0, 1, 2], 1)
    np.testing.assert_array_equal(agg.kept, [True, True, False])
    np.testing.assert_allclose(agg.update, (10 * upd[0] + 30 * upd[1]) / 40)
