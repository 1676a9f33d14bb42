"""Pre-aggregation (NNM, bucketing) before any rule: hand-worked mixing, composition with median / Krum, mapping back."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord

from fl_poison.config import ConfigError, config_warnings, resolve
from flower_replies import StubGrid, make_reply
from strategies import defenses as D
from strategies.rules import pre_aggregation as pre
from strategies.rules.robust import pairwise_sq_distances


def _nnm(u, f):
    return pre.nnm(u, np.ones(len(u)), f, pairwise_sq_distances(u))


def test_nnm_by_hand():
    # rows 0, 1, 2, 10 and f = 1: each row averages its K - f = 3 nearest, itself included.
    # row 0: {0, 1, 2} -> 1; row 1: {1, 0, 2} (distances 0, 1, 1) -> 1; row 2: {2, 1, 0} -> 1;
    # row 10: {10, 2, 1} (distances 0, 64, 81) -> 13 / 3
    mixed = _nnm(np.array([[0.0], [1.0], [2.0], [10.0]]), 1)
    np.testing.assert_allclose(mixed.rows[:, 0], [1, 1, 1, 13 / 3])
    assert mixed.groups == [[0, 1, 2], [0, 1, 2], [0, 1, 2], [1, 2, 3]]
    assert mixed.row_of.tolist() == [0, 1, 2, 3]


def test_nnm_counts_a_row_among_its_neighbours_even_when_it_has_equal_twins():
    u = np.array([[1.0], [1.0], [1.0], [5.0]])
    assert _nnm(u, 1).groups[2] == [0, 1, 2]  # itself first, then the lower-index twins


def test_nnm_refuses_f_of_half_the_rows_or_more():
    with pytest.raises(ValueError, match="num-byzantine"):
        _nnm(np.zeros((4, 2)), 2)


def test_bucketing_by_hand_with_a_fixed_permutation():
    u = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    rng = np.random.default_rng(0)
    perm = np.random.default_rng(0).permutation(5)  # the same draw the rule makes
    mixed = pre.bucketing(u, w, 2, rng)
    groups = [sorted(perm[i:i + 2].tolist()) for i in (0, 2, 4)]
    assert mixed.groups == groups and [len(g) for g in groups] == [2, 2, 1]
    np.testing.assert_allclose(mixed.rows[:, 0], [np.mean(g) for g in groups])  # rows are 0..4: mean of indices
    np.testing.assert_allclose(mixed.weights, [w[g].sum() for g in groups])
    for r, g in enumerate(groups):
        assert all(mixed.row_of[j] == r for j in g)


def test_map_back_keeps_a_client_iff_its_bucket_and_splits_the_share():
    u = np.arange(6, dtype=float)[:, None]
    mixed = pre.bucketing(u, np.ones(6), 3, np.random.default_rng(1))
    from strategies.rules.fedavg_math import fedavg

    agg = pre.map_back(fedavg(mixed.rows, mixed.weights, kept=np.array([True, False])), mixed)
    first = mixed.groups[0]
    assert [bool(agg.kept[j]) for j in range(6)] == [j in first for j in range(6)]
    np.testing.assert_allclose(agg.weights, [1 / 3 if j in first else 0.0 for j in range(6)])


# --------------------------------------------------------------------------- through the strategy


@pytest.fixture()
def _identity(server_identity):
    """Flower messages need conftest's ``server_identity``."""


def _round(strategy, updates, sizes=None):
    """One aggregate_train of ``updates`` (rows of a single [1, P] weight) on a zero global model."""
    k, p = updates.shape
    g = [np.zeros((1, p), dtype=np.float32)]
    list(strategy.configure_train(1, ArrayRecord([g[0]]), ConfigRecord(), StubGrid(range(k))))
    sizes = [10] * k if sizes is None else sizes
    arrays, metrics = strategy.aggregate_train(1, [make_reply([row.astype(np.float32)[None]], n, i)
                                                   for i, (row, n) in enumerate(zip(updates, sizes))])
    if arrays is None:
        return None, metrics
    return np.asarray(arrays[next(iter(arrays.keys()))].numpy())[0], metrics


def _attacked(seed=0, honest=8, bad=3, p=6):
    rng = np.random.default_rng(seed)
    u = 1.0 + 0.1 * rng.normal(size=(honest + bad, p))
    u[:bad] = -20.0
    return u


def test_nnm_then_median_by_hand(_identity):
    s = D.Median(pre_aggregation="nnm", pre_aggregation_f=1, min_available_nodes=4, min_train_nodes=4)
    got, m = _round(s, np.array([[0.0], [1.0], [2.0], [10.0]]))
    np.testing.assert_allclose(got, [1.0])  # median of the mixed rows 1, 1, 1, 13/3 (above)
    assert s.last_report.info["pre_aggregation"] == {"rule": "nnm", "num_byzantine": 1, "neighbours": 3}
    assert m["kept"] == [1, 1, 1, 1]


def test_nnm_then_krum_flags_the_attackers(_identity):
    s = D.Krum(num_byzantine=3, pre_aggregation="nnm", pre_aggregation_f=3, min_available_nodes=11,
               min_train_nodes=11)
    u = _attacked()
    got, m = _round(s, u)
    assert sum(m["kept"]) == 1 and m["kept"].index(1) >= 3  # one honest client's mixed row is chosen
    assert np.all(np.abs(got - 1.0) < 0.5)
    assert sum(m["weights"]) == pytest.approx(1.0)


def test_bucketing_then_krum_keeps_the_chosen_bucket(_identity):
    s = D.Krum(num_byzantine=1, pre_aggregation="bucketing", bucket_size=2, pre_aggregation_seed=4,
               min_available_nodes=11, min_train_nodes=11)
    u = _attacked()
    got, m = _round(s, u)
    about = s.last_report.info["pre_aggregation"]
    assert about["rule"] == "bucketing" and sorted(sum(about["buckets"], [])) == list(range(11))
    chosen = [b for b in about["buckets"] if all(m["kept"][c] for c in b)]
    assert len(chosen) == 1 and sum(m["kept"]) == len(chosen[0])  # kept = exactly the chosen bucket's members
    np.testing.assert_allclose(got, u[chosen[0]].mean(axis=0), atol=1e-5)
    assert sum(m["weights"]) == pytest.approx(1.0)


def test_bucketing_then_median_is_seeded_by_run_seed_and_round(_identity):
    u = _attacked(seed=2)
    a = D.Median(pre_aggregation="bucketing", bucket_size=3, pre_aggregation_seed=7, min_train_nodes=11,
                 min_available_nodes=11)
    b = D.Median(pre_aggregation="bucketing", bucket_size=3, pre_aggregation_seed=7, min_train_nodes=11,
                 min_available_nodes=11)
    ga, _ = _round(a, u)
    gb, _ = _round(b, u)
    np.testing.assert_array_equal(ga, gb)
    assert a.last_report.info["pre_aggregation"]["buckets"] == b.last_report.info["pre_aggregation"]["buckets"]


def test_equal_updates_stay_that_update_after_mixing(_identity):
    row = np.array([0.5, -1.0, 2.0])
    for kw in ({"pre_aggregation": "nnm", "pre_aggregation_f": 2}, {"pre_aggregation": "bucketing", "bucket_size": 2}):
        got, _ = _round(D.Median(min_train_nodes=7, min_available_nodes=7, **kw), np.tile(row, (7, 1)))
        np.testing.assert_allclose(got, row, atol=1e-6)


def test_nnm_with_too_few_valid_updates_keeps_the_model_and_says_why(_identity):
    s = D.Median(pre_aggregation="nnm", pre_aggregation_f=2, min_available_nodes=3, min_train_nodes=3)
    got, m = _round(s, np.ones((3, 2)))
    assert m["updated"] == 0 and "pre-aggregation=nnm" in s.last_report.info["error"]


# --------------------------------------------------------------------------- run keys


def test_run_keys_reach_the_strategy():
    from strategies.registry import build_strategy

    s = build_strategy(resolve({"defense": "median", "pre-aggregation": "bucketing", "bucket-size": 3, "seed": 5}))
    assert (s.pre_aggregation, s.bucket_size, s.pre_aggregation_seed) == ("bucketing", 3, 5)
    s = build_strategy(resolve({"defense": "krum", "pre-aggregation": "nnm", "num-byzantine": 2}))
    assert (s.pre_aggregation, s.pre_aggregation_f) == ("nnm", 2)


@pytest.mark.parametrize("over,key", [({"bucket-size": 0}, "bucket-size"), ({"pre-aggregation": "sum"}, "pre-aggregation"),
                                      ({"pre-aggregation": "nnm", "num-byzantine": 5}, "num-byzantine")])
def test_bad_values_name_the_key(over, key):
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "median", **over})
    assert err.value.key == key


def test_bucketing_checks_the_rules_budget_against_the_number_of_buckets():
    # 6 clients in buckets of 2: Krum sees 3 bucket means, so f = 1 leaves 3 - 1 - 2 = 0 neighbours
    with pytest.raises(ConfigError) as err:
        resolve({"defense": "krum", "num-clients": 6, "clients-per-round": 6, "num-byzantine": 1,
                 "pre-aggregation": "bucketing"})
    assert err.value.key == "num-byzantine" and "3 bucket means" in str(err.value)
    resolve({"defense": "krum", "num-clients": 6, "clients-per-round": 6, "num-byzantine": 1})  # fine without
    with pytest.raises(ConfigError, match="bucket means"):
        resolve({"defense": "flame", "num-clients": 4, "clients-per-round": 4, "pre-aggregation": "bucketing"})


def test_num_byzantine_is_nnms_f_so_it_does_not_warn_with_median():
    cfg = resolve({"defense": "median", "pre-aggregation": "nnm", "num-byzantine": 2})
    assert config_warnings(cfg, ["num-byzantine", "pre-aggregation"]) == []
    cfg = resolve({"defense": "median", "bucket-size": 3})
    assert config_warnings(cfg, ["bucket-size"]) == ["'bucket-size' has no effect with pre-aggregation=none"]


@pytest.mark.slow
def test_a_real_run_with_bucketing_records_the_buckets_and_detection_per_client(tmp_path):
    import json
    from pathlib import Path

    from fl_poison.app import client_app as real
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.inprocess import inprocess_grid

    cfg = resolve({"dataset": "digits", "num-clients": 8, "clients-per-round": 8, "num-rounds": 1, "seed": 1,
                   "figures": False, "defense": "krum", "num-byzantine": 1, "pre-aggregation": "bucketing",
                   "attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 2})
    summary = run_experiment(inprocess_grid(cfg.to_dict(), 8, real.app), cfg, out_dir=tmp_path)
    run_dir = next(p for p in Path(tmp_path).iterdir() if p.is_dir())
    log = json.loads((run_dir / "defense.jsonl").read_text().splitlines()[0])
    buckets = log["info"]["pre_aggregation"]["buckets"]
    assert sorted(sum(buckets, [])) == list(range(8)) and all(len(b) == 2 for b in buckets)
    kept = [c for c, k in zip(log["clients"], log["kept"]) if k]
    assert sorted(kept) in [sorted(b) for b in buckets]  # Krum chose one bucket: its two clients are kept
    assert summary["detection"]["tp"] + summary["detection"]["fn"] == 2
