"""Backdoor: trigger placement and stamping, the poisoned set, bad input, end to end with backdoor accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clients.trigger import backdoor_set, poison_indices, stamp, trigger_position
from fl_poison.app.client_app import app
from fl_poison.app.experiment import run_experiment
from config_errors import assert_refused
from fl_poison.config import resolve
from fl_poison.engine.inprocess import inprocess_grid
from fl_poison.metrics.model_poisoning import backdoor_accuracy
from fl_poison.results import read_rounds
from torch import nn
from clients.attacks.backdoor import Backdoor, trigger_args
from clients.behaviour import RoundInput
from fl_poison.data.datasets import get_spec
from attack_helpers import client_round as _round, seeded_arrays as _arrays


def test_trigger_position_and_stamping_by_hand():
    assert trigger_position((1, 28, 28), 3, -1, -1) == (25, 25)
    assert trigger_position((3, 32, 32), 4, 0, 2) == (0, 2)
    x = torch.zeros(2, 3, 5, 5)
    out = stamp(x, 2, 1, -1, torch.tensor([1.0, 2.0, 3.0]))
    assert x.abs().sum() == 0  # a copy
    for ch, v in enumerate([1.0, 2.0, 3.0]):
        want = torch.zeros(5, 5)
        want[1:3, 3:5] = v
        assert torch.equal(out[0, ch], want) and torch.equal(out[1, ch], want)


@pytest.mark.parametrize("shape,size,row,col", [((1, 8, 8), 9, -1, -1), ((1, 28, 28), 3, 26, 0),
                                                ((1, 28, 28), 3, 0, 27), ((1, 8, 8), 0, 0, 0)])
def test_trigger_that_does_not_fit(shape, size, row, col):
    with pytest.raises(ValueError):
        trigger_position(shape, size, row, col)


def test_backdoor_set_relabels_only_the_chosen_share():
    x, y = torch.zeros(10, 1, 4, 4), torch.arange(10)
    idx = poison_indices(10, 0.3, np.random.default_rng(0))
    assert len(idx) == 3 and len(set(idx.tolist())) == 3
    x2, y2 = backdoor_set(x, y, idx, 7, 2, -1, -1, torch.tensor([1.0]))
    mask = np.zeros(10, bool)
    mask[idx] = True
    assert (y2[mask] == 7).all() and torch.equal(y2[~mask], y[~mask])
    assert (x2[mask][:, :, 2:, 2:] == 1).all() and x2[~mask].abs().sum() == 0


def test_backdoor_accuracy_by_hand():
    assert backdoor_accuracy(np.array([7, 7, 1, 7]), 7) == 0.75


def test_backdoor_accuracy_leaves_out_target_class_samples_by_hand():
    from fl_poison.metrics.model_poisoning import backdoor_test_mask

    y = np.array([0, 3, 1, 3, 3, 2])
    assert backdoor_test_mask(y, 3).tolist() == [True, False, True, False, False, True]
    assert backdoor_test_mask(torch.tensor(y), 0).tolist() == [False, True, True, True, True, True]


def test_backdoor_accuracy_of_a_run_is_measured_on_non_target_test_samples(monkeypatch):
    """digits: 360 test samples, 37 of class 3; the triggered set is the other 323, stamped."""
    from types import SimpleNamespace

    import clients.attacks.backdoor as B
    from clients.attacks.backdoor import trigger_args
    from fl_poison.data.datasets import load_dataset

    cfg = resolve({"dataset": "digits", "attack": "backdoor", "target-class": 3, "trigger-size": 2})
    ds = load_dataset("digits", cfg["data-dir"])
    seen = []

    def predict(model, x, batch_size):
        seen.append(x)
        return np.full(int(x.shape[0]), 3)  # every triggered sample lands on the target

    monkeypatch.setattr(B, "predict", predict)
    measured = B.Backdoor.measurement(cfg, SimpleNamespace(dataset=ds))
    assert measured.test_metrics(0, None) == {"backdoor_accuracy": 1.0}
    (x,) = seen
    assert len(ds.y_test) == 360 and int((ds.y_test == 3).sum()) == 37 and x.shape[0] == 323
    assert torch.equal(x, stamp(ds.x_test[ds.y_test != 3], *trigger_args(cfg)))


@pytest.mark.parametrize("over,key", [
    ({"trigger-size": 29}, "trigger-size"), ({"trigger-row": 26}, "trigger-row"), ({"trigger-col": 27}, "trigger-col"),
    ({"target-class": -1}, "target-class"), ({"source-class": 1}, "source-class")])
def test_bad_backdoor_config_before_data(over, key, capsys):
    base = {"dataset": "mnist", "data-dir": "/nonexistent", "attack": "backdoor", "target-class": 0}
    assert_refused({**base, **over}, key, capsys)


@pytest.mark.slow
def test_backdoor_end_to_end_measures_backdoor_accuracy(tmp_path):
    cfg = resolve({"dataset": "digits", "num-clients": 6, "clients-per-round": 6, "num-rounds": 2, "seed": 3,
                   "figures": True, "num-malicious": 3, "attack": "backdoor", "target-class": 0,
                   "poison-fraction": 0.5, "backdoor-boost": 2.0, "trigger-size": 2, "run-name": "bd"})
    s = run_experiment(inprocess_grid(cfg.to_dict(), 6, app), cfg, out_dir=tmp_path)
    rows = read_rounds(tmp_path / "bd")
    assert all(0 <= r["backdoor_accuracy"] <= 1 for r in rows)
    assert s["backdoor_accuracy"] == pytest.approx(rows[-1]["backdoor_accuracy"])
    assert s["max_over_rounds"]["backdoor_accuracy"] >= s["mean_over_rounds"]["backdoor_accuracy"]
    assert (tmp_path / "bd" / "update_norms.png").exists()
    assert rows[-1]["backdoor_accuracy"] > rows[0]["backdoor_accuracy"]  # half the clients poison: it takes


# --- backdoor attack: the config it reads, the poisoned set, boosting ----------------------------
BACKDOOR = {"dataset": "digits", "attack": "backdoor", "target-class": 7, "poison-fraction": 0.5, "seed": 5,
            "trigger-size": 2, "trigger-row": 1, "trigger-col": 3, "trigger-value": 1.0}


def _backdoor_round(cfg, *, cid: int = 0, server_round: int = 1) -> RoundInput:
    x, y = torch.zeros(40, 1, 8, 8), torch.arange(40) % 7  # labels 0..6: a 7 marks a poisoned sample
    return _round(cfg, nn.Linear(1, 1), x, y, cid=cid, server_round=server_round)


# --- trigger geometry and stamping ---------------------------------------------------------------
@pytest.mark.parametrize("size,row,col,corner", [
    (1, -1, -1, (7, 7)),  # the smallest trigger: one pixel in the bottom-right corner
    (8, -1, -1, (0, 0)),  # the largest: the whole image
    (3, 0, 0, (0, 0)),  # explicitly at the top-left edge
    (3, 5, 0, (5, 0)), (3, 0, 5, (0, 5)),  # against the bottom / right edge by index
])
def test_trigger_fits_at_every_edge(size, row, col, corner):
    assert trigger_position((1, 8, 8), size, row, col) == corner


@pytest.mark.parametrize("row,col,key,valid", [(26, 0, "trigger-row", "0..25"), (0, 27, "trigger-col", "0..25")])
def test_misplaced_trigger_message_gives_the_valid_range(row, col, key, valid):
    with pytest.raises(ValueError) as e:
        trigger_position((1, 28, 28), 3, row, col)
    msg = str(e.value)
    assert msg.startswith(key) and f"({valid}, or -1)" in msg


def test_stamp_writes_the_exact_value_in_the_images_precision():
    """A float64 image gets exactly 0.1, not 0.1 rounded through float32 first."""
    out = stamp(torch.zeros(2, 1, 4, 4, dtype=torch.float64), 2, -1, -1, 0.1)
    assert out.dtype == torch.float64
    assert (out[:, :, 2:, 2:] == 0.1).all() and out[:, :, :2].abs().sum() == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_backdoor_set_takes_indices_of_any_integer_dtype(dtype):
    """Compact index arrays select samples (uint8 is not a mask, int16 is not refused)."""
    x, y = torch.zeros(5, 1, 3, 3), torch.arange(5)
    x2, y2 = backdoor_set(x, y, np.array([1, 3], dtype=dtype), 9, 1, 0, 0, torch.tensor([2.0]))
    assert y2.tolist() == [0, 9, 2, 9, 4]
    assert x2[:, 0, 0, 0].tolist() == [0, 2, 0, 2, 0] and float(x2.sum()) == 4.0


# --- the poisoned share --------------------------------------------------------------------------
@pytest.mark.parametrize("n,fraction,expected_len", [(10, 0.01, 1), (1, 0.5, 1), (1, 0.1, 1), (10, 0.25, 2)])
def test_poison_indices_count(n, fraction, expected_len):
    """round(fraction * n) samples, but at least one as soon as there is a sample (Python's round: 2.5 -> 2)."""
    assert len(poison_indices(n, fraction, np.random.default_rng(0))) == expected_len


def test_poison_indices_of_an_empty_set_is_an_empty_integer_index():
    idx = poison_indices(0, 0.5, np.random.default_rng(0))
    assert idx.shape == (0,) and idx.dtype.kind == "i"
    assert np.arange(0)[idx].shape == (0,)  # usable as an index (a float array is not)


def test_poison_indices_draws_without_replacement():
    """fraction 1 poisons every sample exactly once."""
    for seed in range(5):
        assert np.array_equal(poison_indices(20, 1.0, np.random.default_rng(seed)), np.arange(20))


def test_trigger_args_reads_the_trigger_keys_and_normalises_the_value():
    """MNIST normalises a raw pixel v to (v - 0.1307) / 0.3081."""
    cfg = resolve({"dataset": "mnist", "data-dir": "/nonexistent", "attack": "backdoor", "target-class": 1,
                   "trigger-size": 2, "trigger-row": 1, "trigger-col": 3, "trigger-value": 0.5})
    size, row, col, value = trigger_args(cfg)
    assert (size, row, col) == (2, 1, 3)
    assert value.tolist() == pytest.approx([(0.5 - 0.1307) / 0.3081])


def test_backdoor_training_set_poisons_the_configured_share():
    cfg = resolve(BACKDOOR)
    r = _backdoor_round(cfg)
    x2, y2 = Backdoor(0, cfg).training_set(r)
    hit = (y2 == 7).numpy()
    assert hit.sum() == 20  # poison-fraction 0.5 of 40
    assert torch.equal(y2[~hit], r.y[~hit]) and x2[~hit].abs().sum() == 0
    white = float(get_spec("digits").pixel_value(1.0)[0])  # trigger-value 1.0 = a white digits pixel
    assert (x2[hit][:, :, 1:3, 3:5] == white).all()
    outside = x2[hit].clone()
    outside[:, :, 1:3, 3:5] = 0
    assert outside.abs().sum() == 0
    # the same (seed, round, client) poisons the same samples; another client others
    assert torch.equal(Backdoor(0, cfg).training_set(_backdoor_round(cfg))[1], y2)
    other = Backdoor(1, cfg).training_set(_backdoor_round(cfg, cid=1))[1]
    assert not torch.equal(other, y2)


def test_backdoor_boost_scales_the_update_and_1_sends_the_trained_weights_untouched():
    g, s = _arrays(0), _arrays(1)
    r = _round(resolve(BACKDOOR), nn.Linear(1, 1), torch.zeros(1, 1), torch.zeros(1), global_state=g)
    off = Backdoor(0, resolve(BACKDOOR)).craft(r, s)
    for k in s:  # bit for bit: g + 1 * (s - g) would round some float32 entries
        assert np.array_equal(off[k], s[k])
    boosted = Backdoor(0, resolve({**BACKDOOR, "backdoor-boost": 3.0})).craft(r, s)
    for k in ("w", "b"):
        np.testing.assert_allclose(boosted[k], g[k] + 3 * (s[k] - g[k]), rtol=1e-5, atol=1e-5)
    assert boosted["n"] == s["n"]
