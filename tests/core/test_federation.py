"""fl_poison/federation.py: roles and client data, the attackers' plan, the training pool, the initial model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import logging  # noqa: E402
from fl_poison import federation as FED  # noqa: E402
from fl_poison.config import ConfigError, resolve  # noqa: E402


SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "seed": 3}


FLIP = {"attack": "label-flip", "source-class": 7, "target-class": 1}


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _pool_without_the_last_class(n_samples: int) -> int:
    """A seed whose digits training pool of ``n_samples`` has no sample of class 9 (a fixture search, seeded)."""
    labels = FED.federation_for(resolve(SMALL)).dataset.y_train.numpy()
    for seed in range(200):
        if not np.any(labels[FED.training_pool(len(labels), n_samples, seed)] == 9):
            return seed
    raise AssertionError("no such seed")


def test_federation_roles_and_client_data():
    """honest = every client id not drawn as malicious; client_data = the partition's own rows."""
    fed = FED.federation_for(resolve({**SMALL, **FLIP, "num-malicious": 2}))
    assert fed.config is not None and fed.config.digest() == resolve({**SMALL, **FLIP, "num-malicious": 2}).digest()
    assert fed.num_classes == 10 and len(fed.malicious) == 2
    assert fed.honest == tuple(sorted(set(range(4)) - set(fed.malicious)))
    for cid in (0, 3):
        x, y = fed.client_data(cid)
        rows = torch.from_numpy(fed.parts[cid])
        assert torch.equal(x, fed.dataset.x_train[rows]) and torch.equal(y, fed.dataset.y_train[rows])
    assert FED.federation_for(resolve({**SMALL, **FLIP, "num-malicious": 2})) is fed  # built once per config


def test_model_name_auto_is_the_data_sets_default():
    from fl_poison.data.datasets import get_spec

    assert FED.model_name(resolve({"dataset": "mnist"})) == get_spec("mnist").default_model
    assert FED.model_name(resolve({"dataset": "mnist", "model": "mlp"})) == "mlp"


def test_plan_attackers_without_an_attack_is_empty():
    cfg = resolve({**SMALL, "num-malicious": 2})
    assert FED.plan_attackers(cfg, [np.arange(3)] * 4, np.zeros(12, dtype=np.int64)) == ()


def test_plan_attackers_uses_the_fraction_when_no_count_is_set():
    cfg = resolve({**SMALL, **FLIP, "malicious-fraction": 0.5})
    got = FED.plan_attackers(cfg, [np.arange(3)] * 4, np.zeros(12, dtype=np.int64))
    assert len(got) == 2 and set(got) <= set(range(4))  # half of 4 clients


@pytest.mark.parametrize("keys,bad_key", [
    ({"num-malicious": 3, "malicious-from-source-holders": True}, "malicious-from-source-holders"),
])
def test_plan_attackers_names_the_key_that_made_the_draw_impossible(keys, bad_key):
    """Only clients 0 and 1 hold the source class 7: three source-holding attackers cannot be drawn."""
    cfg = resolve({**SMALL, **FLIP, **keys})
    labels = np.array([7] * 5 + [7] * 5 + [1] * 5 + [1] * 5)
    parts = [np.arange(0, 5), np.arange(5, 10), np.arange(10, 15), np.arange(15, 20)]
    with pytest.raises(ConfigError) as err:
        FED.plan_attackers(cfg, parts, labels)
    assert err.value.key == bad_key and err.value.value == cfg[bad_key]
    assert "only 2 of 4 clients hold the source class" in str(err.value)


def test_federation_from_files_uses_the_data_dir(shared_data):
    """A file-based data set (MNIST) is read from ``data-dir``."""
    cfg = resolve({"dataset": "mnist", "data-dir": str(shared_data), "num-clients": 2, "clients-per-round": 2,
                   "train-samples": 50})
    fed = FED.federation_for(cfg)
    assert fed.dataset.spec.name == "mnist" and sum(len(p) for p in fed.parts) == 50


def test_extreme_split_counts_the_data_sets_classes_not_the_pools():
    """A pool lacking class 9 cannot give class 9's client anything: the split uses the data set's 10 classes."""
    seed = _pool_without_the_last_class(40)
    cfg = resolve({**SMALL, "seed": seed, "train-samples": 40, "partition": "extreme", "num-clients": 10,
                   "clients-per-round": 10})
    with pytest.raises(ConfigError) as err:
        FED.federation_for(cfg)
    assert err.value.key == "train-samples" and "class 9 has 0 samples for 1 clients" in str(err.value)


@pytest.mark.parametrize("n,k", [(10, -1), (10, 10), (10, 11)])
def test_training_pool_is_everything_unless_a_proper_subset_is_asked_for(n, k):
    assert np.array_equal(FED.training_pool(n, k, 0), np.arange(n))


def test_training_pool_subset_is_seeded_sorted_and_distinct():
    a = FED.training_pool(1000, 999, 5)
    assert a.size == 999 and np.all(np.diff(a) > 0) and a[0] >= 0 and a[-1] < 1000
    small = FED.training_pool(1000, 50, 5)
    assert np.array_equal(small, FED.training_pool(1000, 50, 5))
    assert not np.array_equal(small, FED.training_pool(1000, 50, 6))
    assert small.size == 50 and np.all(np.diff(small) > 0)


def test_federation_warns_when_train_samples_exceeds_the_data_set(caplog):
    """More samples asked for than exist: use all of them and say so (only when strictly more)."""
    with caplog.at_level(logging.WARNING, logger="fl_poison"):
        fed = FED.federation_for(resolve({**SMALL, "train-samples": 5000}))
    n = len(fed.dataset.y_train)
    assert sum(len(p) for p in fed.parts) == n
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("fl_poison", logging.WARNING, f"train-samples=5000 is more than the {n} training samples of digits: "
                                       f"using all {n}")]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fl_poison"):
        FED.federation_for(resolve({**SMALL, "train-samples": n}))
    assert "train-samples" not in caplog.text


@pytest.mark.parametrize("keys,bad_key,text", [
    # 3 samples over 4 clients: the partitioner says "exceeds", whatever the scheme
    ({"train-samples": 3}, "num-clients", "an iid split of 3 samples over 4 clients that can be made: "
                                          "num_clients (4) exceeds the 3 samples"),
    ({"train-samples": 3, "partition": "dirichlet"}, "num-clients", "a dirichlet split of 3 samples over 4 clients"),
    # 12 samples cannot give each of 10 clients a class of its own
    ({"train-samples": 12, "partition": "extreme", "num-clients": 10, "clients-per-round": 10},
     "train-samples", "an extreme split of 12 samples over 10 clients that can be made: extreme partition: class"),
    # alpha so small that every class lands on one client: someone gets fewer than the minimum
    ({"train-samples": 40, "partition": "dirichlet", "dirichlet-alpha": 1e-4},
     "dirichlet-alpha", "a dirichlet split of 40 samples over 4 clients that can be made: dirichlet split"),
])
def test_an_impossible_split_is_a_config_error_naming_its_key(keys, bad_key, text):
    cfg = resolve({**SMALL, **keys})
    with pytest.raises(ConfigError) as err:
        FED.federation_for(cfg)
    assert err.value.key == bad_key and err.value.value == cfg[bad_key]
    assert text in str(err.value)


def test_federation_parts_index_the_training_pool():
    """With a subset pool, parts hold indices into the full training set, covering the pool exactly once."""
    cfg = resolve({**SMALL, "train-samples": 100})
    fed = FED.federation_for(cfg)
    pool = FED.training_pool(len(fed.dataset.y_train), 100, cfg["seed"])
    assert np.array_equal(np.sort(np.concatenate(fed.parts)), pool)


def test_initial_state_fresh_or_loaded_and_cast(tmp_path, monkeypatch):
    """'' gives the seeded model; a file (``~`` expanded) is loaded, cast to the model's dtypes."""
    cfg = resolve(SMALL)
    fresh = _state(FED.new_model(cfg))
    got = FED.initial_state(cfg)
    assert list(got) == list(fresh) and all(np.array_equal(got[k], fresh[k]) for k in fresh)
    monkeypatch.setenv("HOME", str(tmp_path))
    saved = {k: np.full(v.shape, 0.25, dtype=np.float64) for k, v in fresh.items()}
    np.savez(tmp_path / "m.npz", **saved)
    loaded = FED.initial_state(resolve({**SMALL, "initial-model": "~/m.npz"}))
    assert list(loaded) == list(fresh)
    for k in fresh:
        assert loaded[k].dtype == fresh[k].dtype and np.all(loaded[k] == 0.25)
