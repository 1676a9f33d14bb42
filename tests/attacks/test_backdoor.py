"""Backdoor: trigger placement and stamping, the poisoned set, bad input, end to end with backdoor accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clients.trigger import backdoor_set, poison_indices, stamp, trigger_position
from fl_poison.app.client_app import app
from fl_poison.app.experiment import run_experiment
from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from fl_poison.engine.inprocess import inprocess_grid
from fl_poison.metrics.model_poisoning import backdoor_accuracy
from fl_poison.results import read_rounds


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
    with pytest.raises(ConfigError) as e:
        resolve({**base, **over})
    assert e.value.key == key
    args = ["run"] + [a for k, v in {**base, **over}.items() for a in ("--set", f"{k}={v}")]
    assert main(args) == 2 and f"'{key}'" in capsys.readouterr().err


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
