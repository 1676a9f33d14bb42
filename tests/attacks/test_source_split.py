"""``honest-holds-source=false``: the ADA authors' split, the attackers' pool, the no-attack control, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clients.attacks.label_flip import attack_set
from clients.behaviour import RoundInput
from clients.store import NodeStore
from fl_poison.app.client_app import app
from fl_poison.app.experiment import run_experiment
from fl_poison.app.node import local_node
from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from fl_poison.engine.inprocess import inprocess_grid
from fl_poison.federation import federation_for
from fl_poison.training import TrainSettings
from fl_poison.federation import plan_attackers

AUTHORS = {"dataset": "digits", "num-clients": 10, "clients-per-round": 5, "attack": "label-flip",
           "source-class": 3, "target-class": 8, "num-malicious": 3, "honest-holds-source": False,
           "injection-rate": 0.5, "train-samples": 1000}


def test_no_honest_client_holds_a_source_sample_and_the_pool_is_what_no_honest_client_holds():
    fed = federation_for(resolve(AUTHORS))
    labels = fed.dataset.y_train.numpy()
    honest = np.concatenate([fed.parts[c] for c in fed.honest])
    assert not (labels[honest] == 3).any()
    assert all(not (labels[fed.parts[c]] == 3).any() and fed.parts[c].size for c in range(10))
    assert not np.intersect1d(fed.spare, honest).size
    assert np.array_equal(np.union1d(fed.spare, honest), np.arange(labels.size))  # the whole training set
    assert set(np.flatnonzero(labels == 3)) <= set(fed.spare.tolist())  # every source sample, train-samples or not
    with_source = federation_for(resolve({**AUTHORS, "honest-holds-source": True}))
    assert with_source.spare is None and any((labels[with_source.parts[c]] == 3).any() for c in with_source.honest)


def test_only_attackers_get_the_pool():
    cfg = resolve(AUTHORS)
    fed = federation_for(cfg)
    for c in range(10):
        node = local_node(cfg, {"partition-id": c, "num-partitions": 10})
        assert (node.pool is not None) == (c in fed.malicious)


def _round(cfg, x, y, pool, server_round=1, cid=0) -> RoundInput:
    return RoundInput(cid=cid, server_round=server_round, config=cfg, model=torch.nn.Linear(1, 1), global_state={},
                      x=x, y=y, settings=TrainSettings.from_config(cfg), num_classes=10, seed=1,
                      rng=np.random.default_rng(1), store=NodeStore(), pool=pool)


def test_an_attacker_draws_half_source_half_clean_from_the_pool_at_its_local_size_afresh_each_round():
    """Local set of 40 (no source), pool of 100 source + 200 clean: 20 flipped-to-be + 20 clean, distinct,
    all from the pool, the same for the same (seed, round, client), another draw next round."""
    cfg = resolve(AUTHORS)
    local_y = torch.tensor([0, 1, 4, 5] * 10)
    pool_y = torch.tensor([3] * 100 + [0, 1, 2, 4] * 50)
    pool_x = torch.arange(300, dtype=torch.float32)[:, None] + 1000  # row id + 1000: never a local row
    x, y = attack_set(_round(cfg, torch.zeros(40, 1), local_y, (pool_x, pool_y)), 3, 0.5)
    assert len(y) == 40 and int((y == 3).sum()) == 20
    ids = (x[:, 0] - 1000).long()
    assert torch.equal(pool_y[ids], y) and len(set(ids.tolist())) == 40
    again, _ = attack_set(_round(cfg, torch.zeros(40, 1), local_y, (pool_x, pool_y)), 3, 0.5)
    later, _ = attack_set(_round(cfg, torch.zeros(40, 1), local_y, (pool_x, pool_y), server_round=2), 3, 0.5)
    assert torch.equal(again, x) and not torch.equal(later, x)


def test_injection_keeps_the_attackers_set_size_and_its_fedavg_weight(tmp_path):
    """Under FedAvg an attacker weighs what an honest client of its size weighs (its reply's num-examples)."""
    cfg = resolve({"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "num-rounds": 1, "seed": 2,
                   "attack": "label-flip", "source-class": 3, "target-class": 8, "num-malicious": 1,
                   "injection-rate": 0.5, "figures": False, "run-name": "w", "partition": "iid"})
    s = run_experiment(inprocess_grid(cfg.to_dict(), 4, app), cfg, out_dir=tmp_path)
    fed = federation_for(cfg)
    import json

    rec = json.loads((tmp_path / "w" / "defense.jsonl").read_text().splitlines()[0])
    sizes = np.array([fed.parts[c].size for c in rec["clients"]], float)
    np.testing.assert_allclose(rec["weights"], sizes / sizes.sum())
    assert s["malicious_clients"][0] in rec["clients"]


def test_the_no_attack_control_reports_ata_and_mta(tmp_path):
    """attack=none with a class pair and honest-holds-source=false: nobody trains on 3; ATA (3 -> 8) and MTA exist."""
    cfg = resolve({**AUTHORS, "attack": "none", "num-malicious": -1, "injection-rate": -1.0, "num-rounds": 2,
                   "figures": False, "run-name": "control"})
    fed = federation_for(cfg)
    labels = fed.dataset.y_train.numpy()
    assert not any((labels[p] == 3).any() for p in fed.parts) and fed.malicious == ()
    s = run_experiment(inprocess_grid(cfg.to_dict(), 10, app), cfg, out_dir=tmp_path)
    assert s["ata_target"] == 8 and 0 <= s["ata"] <= 1 and 0 < s["mta"] <= 1
    assert s["max_over_rounds"]["ata"] is not None and s["min_over_rounds"]["mta"] is not None


@pytest.mark.parametrize("over,key,words", [
    ({"attack": "none", "source-class": -1, "target-class": -1}, "honest-holds-source", "source-class"),
    ({"attack": "backdoor", "source-class": -1}, "honest-holds-source", "source-class"),
    ({"attack": "gan", "target-class": 8}, "honest-holds-source", "attack=gan"),
    ({"injection-rate": -1.0}, "injection-rate", "honest-holds-source=false"),
])
def test_bad_combinations_are_refused_in_one_line_before_data(over, key, words, capsys):
    keys = {**AUTHORS, "data-dir": "/nonexistent", **over}
    with pytest.raises(ConfigError) as e:
        resolve(keys)
    assert e.value.key == key and words in str(e.value)
    args = ["run"] + [a for k, v in keys.items() for a in ("--set", f"{k}={v}")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{key}'" in err[0]


def test_an_empty_attackers_set_is_refused_by_name(capsys):
    """One class per client, attackers among the source holders: they would hold nothing once 3 is taken away."""
    keys = {**AUTHORS, "partition": "extreme", "malicious-from-source-holders": True, "num-malicious": 1,
            "train-samples": -1}
    with pytest.raises(ConfigError) as e:
        federation_for(resolve(keys))
    assert e.value.key == "honest-holds-source" and "would be left with none" in str(e.value)
    assert main(["run"] + [a for k, v in keys.items() for a in ("--set", f"{k}={v}")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'honest-holds-source'" in err[-1]


def test_the_split_works_with_attackers_drawn_among_the_source_holders_of_a_dirichlet_split():
    """Attackers are chosen on the partition as drawn (they held the source); then every part loses it."""
    cfg = resolve({**AUTHORS, "partition": "dirichlet", "dirichlet-alpha": 0.3, "malicious-from-source-holders": True})
    fed = federation_for(cfg)
    labels = fed.dataset.y_train.numpy()
    drawn = federation_for(resolve({**AUTHORS, "partition": "dirichlet", "dirichlet-alpha": 0.3,
                                    "malicious-from-source-holders": True, "honest-holds-source": True}))
    assert fed.malicious == drawn.malicious and all((labels[drawn.parts[c]] == 3).any() for c in fed.malicious)
    assert not any((labels[p] == 3).any() for p in fed.parts)
    assert local_node(cfg, {"partition-id": fed.malicious[0], "num-partitions": 10}).pool[1].shape[0] == fed.spare.size


SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "num-rounds": 1, "seed": 3,
         "figures": False}


# --- 1. attackers drawn among holders of the SOURCE class -------------------------------------------
def test_source_holder_attackers_hold_the_source_not_the_target():
    cfg = resolve({**SMALL, "attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 2,
                   "malicious-from-source-holders": True})
    labels = np.array([7] * 5 + [7] * 5 + [1] * 5 + [1] * 5)
    parts = [np.arange(0, 5), np.arange(5, 10), np.arange(10, 15), np.arange(15, 20)]
    assert plan_attackers(cfg, parts, labels) == (0, 1)  # only 0 and 1 hold class 7


def test_source_holder_attackers_in_a_real_federation():
    cfg = resolve({**SMALL, "num-clients": 10, "partition": "dirichlet", "dirichlet-alpha": 0.1, "attack": "label-flip",
                   "source-class": 7,
                   "target-class": 1, "num-malicious": 2, "malicious-from-source-holders": True})
    fed = federation_for(cfg)
    labels = fed.dataset.y_train.numpy()
    holders = {c for c, p in enumerate(fed.parts) if (labels[p] == 7).any()}
    assert len(holders) < 10  # the extreme split leaves clients without class 7: the test can fail
    assert set(fed.malicious) <= holders
