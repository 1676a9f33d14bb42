"""Tests for mutants that survived mutmut in the core modules.

Covers fl_poison/federation.py, fl_poison/metrics/{classification,detection,
model_poisoning,poisoning}.py, fl_poison/threat.py and fl_poison/sampling.py.
Older survivor tests for threat, sampling and the metrics live in
test_mutation_survivors.py; these add what that file does not pin. Equivalent
mutants are listed, with reasons, in the mutation work notes, not here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from fl_poison.metrics import model_poisoning as MP


# --- fl_poison/metrics/model_poisoning.py ---------------------------------------------------------------


def test_backdoor_accuracy_of_no_triggered_sample_is_nan_without_a_warning():
    """An empty prediction set is undefined (NaN), decided by the size guard, not by np.mean's 0/0."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(MP.backdoor_accuracy(np.zeros(0, dtype=np.int64), 3))


def test_most_common_target_counts_class_zero_and_skips_non_targets():
    """Class 0 is a real target; negatives, None, NaN and inf mean "none chosen" however often they occur."""
    assert MP.most_common_target([0, 0, 3]) == 0
    assert MP.most_common_target([0.0]) == 0
    assert MP.most_common_target([-1, -1, None, float("nan"), float("nan"), float("inf"), float("inf"), 2.0]) == 2
    assert MP.most_common_target([5, 4, 5, 4]) == 4  # a tie goes to the smallest class


# rows true, columns predicted; the 4th column is an extra (GAN "fake") output that no sample has
CM = np.array([[5, 1, 0, 0],
               [2, 6, 1, 1],
               [0, 0, 4, 0]])


def test_attack_round_metrics_by_hand():
    """Source 1: MTA = (5 + 4) / (6 + 4) over the other classes' rows, max_ATA = 1 - 6/10."""
    got = MP.attack_round_metrics(CM, 1)
    assert got == {"mta": pytest.approx(0.9), "max_ata": pytest.approx(0.4), "source_row": [2, 6, 1, 1]}
    assert all(type(v) is int for v in got["source_row"])
    assert MP.attack_round_metrics(CM, None) == {}


def test_mta_of_a_source_only_test_set_is_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(MP.mta(np.array([[0, 0], [1, 4]]), 1))


@pytest.mark.parametrize("row,target,expected", [
    ([2, 1, 1], 0, 0.5),  # target 0 is a class like any other
    ([2, 1, 1], 2, 0.25),
    ([2, 1, 1], 3, float("nan")),  # no such class: undefined, not an IndexError
    ([2, 1, 1], -1, float("nan")),  # no negative indexing from the end
    ([0, 0, 0], 1, float("nan")),  # no source sample
])
def test_ata_by_hand(row, target, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MP.ata(row, target) == pytest.approx(expected, nan_ok=True)


def test_max_ata_by_hand():
    assert MP.max_ata([3, 1, 0], 0) == pytest.approx(0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(MP.max_ata([0, 0, 0], 0))


def test_norm_columns_split_honest_and_malicious():
    got = MP.norm_columns([0, 1, 2, 3], [1.0, 2.0, 3.0, 6.0], {1, 3})
    assert got == {"honest_update_norm_mean": 2.0, "honest_update_norm_max": 3.0,
                   "malicious_update_norm_mean": 4.0, "malicious_update_norm_max": 6.0}
    assert MP.norm_columns([0, 2], [1.0, 3.0], {1}) == {
        "honest_update_norm_mean": 2.0, "honest_update_norm_max": 3.0,
        "malicious_update_norm_mean": None, "malicious_update_norm_max": None}


def test_predict_in_eval_mode_and_in_batches():
    """Batches of 3 over 7 rows give the argmax of one full eval-mode forward pass; dropout is off."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Dropout(0.9), torch.nn.Linear(5, 3))
    x = torch.randn(7, 4)
    model.train()
    got = MP.predict(model, x, batch_size=3)
    assert not model.training
    with torch.no_grad():
        want = model(x).argmax(1).numpy()
    assert np.array_equal(got, want) and got.shape == (7,)
    empty = MP.predict(model, x[:0])
    assert empty.shape == (0,) and empty.dtype == np.int64




# --- fl_poison/metrics/classification.py ----------------------------------------------------------------
from sklearn.metrics import confusion_matrix as sk_confusion_matrix  # noqa: E402

from fl_poison.metrics import classification as C  # noqa: E402


def test_confusion_matrix_with_an_extra_output_matches_sklearn():
    """A GAN-style extra output C gets its own column; the rest is sklearn's rows-true, columns-predicted matrix."""
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([0, 3, 2, 1, 1, 3])
    got = C.confusion_matrix(y, p, 3, num_outputs=4)
    assert got.shape == (3, 4)
    assert np.array_equal(got, sk_confusion_matrix(y, p, labels=range(4))[:3])


def test_confusion_matrix_of_uint8_labels_does_not_overflow():
    """Labels as stored in idx files (uint8) with 20 classes: t * outputs + p must not wrap around in uint8."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 20, size=200).astype(np.uint8)
    p = rng.integers(0, 20, size=200).astype(np.uint8)
    assert np.array_equal(C.confusion_matrix(y, p, 20), sk_confusion_matrix(y, p, labels=range(20)))


@pytest.mark.parametrize("y,p,outputs,msg", [
    ([0, 3], [0, 0], None, "true labels must be in 0..2"),  # one past the end, nothing negative
    ([-1, 0], [0, 0], None, "true labels must be in 0..2"),  # negative, nothing past the end
    ([0, 0], [0, 3], None, "predictions must be in 0..2"),
    ([0, 0], [-1, 0], None, "predictions must be in 0..2"),
    ([0, 0], [0, 4], 4, "predictions must be in 0..3"),
    ([0, 0], [0, 0], 2, "num_outputs (2) must be >= num_classes (3)"),
])
def test_confusion_matrix_messages_name_the_allowed_range(y, p, outputs, msg):
    with pytest.raises(ValueError) as err:
        C.confusion_matrix(np.array(y), np.array(p), 3, num_outputs=outputs)
    assert str(err.value) == msg


@pytest.mark.parametrize("values,expected", [
    ([5.0], 0.0),  # one value: no spread, not undefined
    ([0.5, 1.5], 0.5),  # mean exactly 1: sigma / 1
    ([1.0, None, float("nan"), 3.0], 0.5),  # missing rounds are skipped: sigma([1, 3]) / 2
])
def test_coefficient_of_variation_by_hand(values, expected):
    assert C.coefficient_of_variation(values) == pytest.approx(expected)


@pytest.mark.parametrize("values", [[], [None, float("nan")], [1.0, -1.0]])
def test_coefficient_of_variation_undefined_is_nan_without_a_warning(values):
    """No value, or mean 0 (sigma/0): NaN from the guard, never numpy's empty-mean or division warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(C.coefficient_of_variation(values))



def test_per_class_recall_of_a_c_by_outputs_matrix_and_single_sample_classes():
    """Rows are the C real classes (an extra output column is only ever wrong); a class with 1 sample is 0 or 1."""
    cm = np.array([[1, 0, 0, 0],   # class 0: its one sample right
                   [0, 0, 0, 1],   # class 1: its one sample sent to the extra output 3
                   [0, 1, 2, 1]])
    assert C.per_class_recall(cm) == [1.0, 0.0, 0.5]


def test_last_k_mean_skips_missing_values():
    assert C.last_k_mean([1.0, None, float("nan"), 3.0]) == 2.0


# --- fl_poison/metrics/detection.py ---------------------------------------------------------------------
from fl_poison.metrics.detection import Detection  # noqa: E402


def test_detection_sum_adds_every_count_fieldwise():
    """Summing rounds' detections (the summary's tail) adds all four counts; distinct values catch a swap."""
    assert Detection(1, 2, 3, 4) + Detection(10, 20, 30, 40) == Detection(tp=11, fp=22, fn=33, tn=44)


# --- fl_poison/federation.py ----------------------------------------------------------------------------
import logging  # noqa: E402

from fl_poison import federation as FED  # noqa: E402
from fl_poison.config import ConfigError, resolve  # noqa: E402

SMALL = {"dataset": "digits", "num-clients": 4, "clients-per-round": 4, "seed": 3}
FLIP = {"attack": "label-flip", "source-class": 7, "target-class": 1}


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


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


def test_new_model_is_seeded_and_takes_the_dropout_key():
    """Same seed -> same weights; an explicit dropout reaches the model, -1 keeps the model's default."""
    cfg = resolve({"dataset": "mnist", "dropout": 0.3})
    a, b = _state(FED.new_model(cfg)), _state(FED.new_model(cfg))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other = _state(FED.new_model(cfg.replace(seed=cfg["seed"] + 1)))
    assert not all(np.array_equal(a[k], other[k]) for k in a)
    rates = [m.p for m in FED.new_model(cfg).modules() if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d))]
    assert rates and all(p == 0.3 for p in rates)
    from fl_poison.models import build_model

    default = [m.p for m in build_model("lfighter-cnn", 10, (1, 28, 28)).modules()
               if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d))]
    got = [m.p for m in FED.new_model(cfg.replace(dropout=-1.0)).modules()
           if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d))]
    assert got == default


def test_model_outputs_is_a_python_int():
    assert FED.model_outputs(resolve(SMALL)) == 10 and type(FED.model_outputs(resolve(SMALL))) is int


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


def _pool_without_the_last_class(n_samples: int) -> int:
    """A seed whose digits training pool of ``n_samples`` has no sample of class 9 (a fixture search, seeded)."""
    labels = FED.federation_for(resolve(SMALL)).dataset.y_train.numpy()
    for seed in range(200):
        if not np.any(labels[FED.training_pool(len(labels), n_samples, seed)] == 9):
            return seed
    raise AssertionError("no such seed")


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


# --- fl_poison/threat.py ----------------------------------------------------------------------------------
from fl_poison.threat import choose_malicious, num_malicious  # noqa: E402


@pytest.mark.parametrize("call,msg", [
    (lambda: num_malicious(5, 1.5, -1),
     "malicious-fraction must be in [0, 1], got 1.5 (or set num-malicious to an absolute count)"),
    (lambda: choose_malicious(5, -1, seed=0),
     "num-malicious / malicious-fraction resolved to -1 malicious clients; allowed: >= 0"),
])
def test_threat_messages_are_exact(call, msg):
    """The whole message, not a fragment: a garbled end of the sentence is a garbled contract."""
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == msg


# --- fl_poison/sampling.py --------------------------------------------------------------------------------
from fl_poison.sampling import sample_with_availability  # noqa: E402


def test_availability_repeat_message_is_exact():
    with pytest.raises(ValueError) as err:
        sample_with_availability(np.random.default_rng(0), [1, 1], [5], 1, 0.5)
    assert str(err.value) == "honest and malicious client ids must not repeat"
