"""Update arithmetic (shrink loop, scaling) and the scale attack end to end."""

from __future__ import annotations

import numpy as np
import pytest

from clients.model_poisoning import scale_update, shrink_factor, shrink_to_bound, update_norm
from fl_poison.app.client_app import app
from fl_poison.app.experiment import run_experiment
from fl_poison.config import ConfigError, resolve
from fl_poison.engine.inprocess import inprocess_grid
from fl_poison.results import read_rounds
import torch
from torch import nn
from clients.attacks.scale import Scale
from attack_helpers import client_round as _round, seeded_arrays as _arrays

G = {"w": np.zeros((2, 2), np.float32), "b": np.zeros(2, np.float32), "n": np.array(5, np.int64)}


def _state(delta: float) -> dict:
    return {"w": np.full((2, 2), delta, np.float32), "b": np.full(2, delta, np.float32), "n": np.array(9, np.int64)}


def test_update_norm_ignores_integer_buffers():
    assert update_norm(_state(1.0), G) == pytest.approx(np.sqrt(6.0))


@pytest.mark.parametrize("norm,bound,expected", [
    (1.0, 2.0, 1.0), (10.0, 10.0, 1.0), (10.0, 9.5, 0.9), (10.0, 8.9, 0.8), (10.0, 0.5, 0.0), (10.0, 1.0, 0.1)])
def test_shrink_factor_by_hand(norm, bound, expected):
    assert shrink_factor(norm, bound) == pytest.approx(expected)


def test_shrink_to_bound_ends_within_the_bound_and_is_the_first_factor_that_does():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = {"w": rng.normal(size=(2, 2)).astype(np.float32), "b": rng.normal(size=2).astype(np.float32),
             "n": np.array(1, np.int64)}
        bound = float(rng.uniform(0.1, 4))
        new, f, norm = shrink_to_bound(s, G, bound)
        assert norm <= bound + 1e-6
        assert norm == pytest.approx(f * update_norm(s, G), rel=1e-5)
        if f < 1:  # the previous factor would not have fitted
            assert (f + 0.1) * update_norm(s, G) > bound
        assert new["n"] == s["n"]


def test_scale_update_factor_sign_and_noise():
    s = _state(1.0)
    assert np.allclose(scale_update(s, G, 10)["w"], 10)
    assert np.allclose(scale_update(s, G, -1)["b"], -1)
    noisy = scale_update(s, G, 1, noise_std=0.5, rng=np.random.default_rng(1))
    assert noisy["w"].dtype == np.float32 and not np.allclose(noisy["w"], 1)
    assert int(noisy["n"]) == 9


@pytest.mark.parametrize("bad", ["0", "-3", "big", "inf"])
def test_scale_bound_must_be_positive_or_auto(bad):
    with pytest.raises(ConfigError, match="scale-bound"):
        resolve({"attack": "train-and-scale", "source-class": 1, "target-class": 7, "scale-bound": bad})
    assert resolve({"attack": "train-and-scale", "source-class": 1, "target-class": 7,
                    "scale-bound": 2}).get("scale-bound") == "2"


def test_scale_factor_zero_is_refused():
    with pytest.raises(ConfigError, match="scale-factor"):
        resolve({"attack": "scale", "scale-factor": 0})


SMALL = {"dataset": "digits", "num-clients": 6, "clients-per-round": 6, "num-rounds": 2, "seed": 3, "figures": False,
         "num-malicious": 2}


def _run(tmp_path, **over):
    cfg = resolve({**SMALL, **over})
    return run_experiment(inprocess_grid(cfg.to_dict(), cfg["num-clients"], app), cfg, out_dir=tmp_path), cfg


def test_scale_attack_inflates_malicious_norms_end_to_end(tmp_path):
    s, cfg = _run(tmp_path, attack="scale", **{"scale-factor": 10.0, "run-name": "sc"})
    rows = read_rounds(tmp_path / "sc")
    r = rows[1]
    assert r["malicious_update_norm_mean"] > 5 * r["honest_update_norm_mean"]
    assert r["malicious_update_norm_max"] >= r["malicious_update_norm_mean"]
    assert "mean_over_rounds" in s and "max_over_rounds" in s


def test_train_and_scale_norm_within_bound_end_to_end(tmp_path):
    s, cfg = _run(tmp_path, attack="train-and-scale",
                  **{"source-class": 3, "target-class": 8, "scale-bound": "0.5", "run-name": "ts"})
    rows = read_rounds(tmp_path / "ts")
    for r in rows[1:]:
        assert r["malicious_update_norm_max"] <= 0.5 + 1e-5
        assert r["malicious_scale_bound"] == pytest.approx(0.5)
    assert s["ata_target"] == 8 and s["ata"] == pytest.approx(s["attack_success_rate"])
    auto, _ = _run(tmp_path, attack="train-and-scale", **{"source-class": 3, "target-class": 8, "run-name": "tsa"})
    rows = read_rounds(tmp_path / "tsa")
    assert all(r["malicious_update_norm_max"] <= r["honest_update_norm_max"] * 1.5 for r in rows[1:])


# --- scale attack --------------------------------------------------------------------------------
def test_scale_noise_comes_from_the_rounds_generator():
    """scale-noise adds N(0, std^2) drawn from r.rng: reproducible for the round's seed, of the configured std."""
    cfg = resolve({"dataset": "digits", "attack": "scale", "scale-factor": 2.0, "scale-noise": 0.5})
    g, s = _arrays(0), _arrays(1)

    def crafted(seed):
        r = _round(cfg, nn.Linear(1, 1), torch.zeros(1, 1), torch.zeros(1), seed=seed, global_state=g)
        return Scale(0, cfg).craft(r, s)

    a, b = crafted(3), crafted(3)
    assert all(np.array_equal(a[k], b[k]) for k in s)
    noise = a["w"] - (g["w"] + 2 * (s["w"] - g["w"]))
    assert noise.std() == pytest.approx(0.5, rel=0.1) and abs(noise.mean()) < 0.1
    assert not np.array_equal(crafted(4)["w"], a["w"])


# --- update arithmetic ---------------------------------------------------------------------------
def test_scale_update_noise_is_n_0_std_per_float_entry_from_the_given_generator():
    """Same draws as numpy's own N(0, std) in state order; integer buffers anywhere in the dict pass through."""
    g, s = _arrays(0), _arrays(1)
    g, s = {"n": g.pop("n"), **g}, {"n": s.pop("n"), **s}  # the buffer first, as BatchNorm's may be
    out = scale_update(s, g, -1.5, noise_std=0.3, rng=np.random.default_rng(7))
    draws = np.random.default_rng(7)
    assert list(out) == ["n", "w", "b"] and out["n"] == s["n"]
    for k in ("w", "b"):
        want = g[k] + (-1.5) * (s[k] - g[k]) + draws.normal(0.0, 0.3, size=s[k].shape)
        assert out[k].dtype == np.float32
        np.testing.assert_allclose(out[k], want, rtol=1e-5, atol=1e-5)


def test_scale_update_refuses_noise_without_a_generator():
    with pytest.raises(ValueError, match="^noise needs a generator$"):
        scale_update(_arrays(1), _arrays(0), 2.0, noise_std=0.5)


@pytest.mark.parametrize("bound,step,message", [
    (0.0, 0.1, "bound must be > 0"),
    (5.0, 0.0, r"step must be in \(0, 1\]"),  # norm 4 already fits: only the check can refuse
    (5.0, 2.0, r"step must be in \(0, 1\]"),
])
def test_shrink_factor_refuses_a_bad_bound_or_step(bound, step, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        shrink_factor(4.0, bound, step)


def test_shrink_factor_step_1_is_all_or_nothing():
    assert shrink_factor(4.0, 5.0, 1.0) == 1.0 and shrink_factor(10.0, 5.0, 1.0) == 0.0


def test_shrink_to_bound_sends_an_update_that_fits_untouched():
    """Factor 1: the trained weights bit for bit (g + 1 * (s - g) would round some float32 entries)."""
    g, s = _arrays(0), _arrays(1)
    new, factor, norm = shrink_to_bound(s, g, 1e6)
    assert factor == 1.0 and norm == pytest.approx(update_norm(s, g))
    assert all(np.array_equal(new[k], s[k]) for k in s)
