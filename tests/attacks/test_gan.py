"""GAN reconstruction + poisoning: C+1 model, metrics of the extra class, generator, persistence, bad input."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from clients import gan
from clients.attacks.gan import GAN, preview_record, read_preview
from clients.behaviour import RoundInput
from clients.store import NodeStore
from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from fl_poison.data.partition import move_class_out
from fl_poison.federation import federation_for, model_outputs, new_model
from fl_poison.metrics.classification import (
    accuracy, attack_success_rate, confusion_matrix, per_class_recall, source_accuracy,
)
from fl_poison.metrics.model_poisoning import mta
from fl_poison.training import TrainSettings, evaluate, get_state
from fl_poison.updates import make_layout
import math
from clients.attacks import gan as gan_attack
from clients.attacks.gan import PREVIEW
from clients.behaviour import Behaviour
from fl_poison.data.datasets import get_spec
from fl_poison.training import local_accuracy
import logging
from flwr.app import ConfigRecord
from flower_replies import make_reply

GAN_KEYS = {"dataset": "digits", "attack": "gan", "source-class": 3, "target-class": 8, "num-malicious": 1}


# --- label voting: C + 1 outputs -------------------------------------------------------------
def test_gan_builds_the_federation_model_with_one_extra_output():
    cfg = resolve(GAN_KEYS)
    assert model_outputs(cfg) == 11
    assert new_model(cfg).fc2.weight.shape[0] == 11
    assert model_outputs(resolve({"dataset": "digits"})) == 10


def test_extra_class_predictions_count_as_wrong_and_are_not_folded():
    # C = 3 real classes, output 3 = the fake class
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 3, 3, 0, 2, 3])
    cm = confusion_matrix(y_true, y_pred, 3, 4)
    assert cm.tolist() == [[1, 0, 0, 1], [1, 0, 0, 1], [0, 0, 1, 1]]
    assert accuracy(cm) == pytest.approx(2 / 6)
    assert per_class_recall(cm) == pytest.approx([0.5, 0.0, 0.5])
    assert source_accuracy(cm, 1) == 0.0 and attack_success_rate(cm, 1, 0) == 0.5
    assert mta(cm, 0) == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        confusion_matrix(y_true, y_pred, 3)  # a fake-class prediction without its column: refused, not folded


def test_evaluate_gives_the_fake_class_its_own_column():
    class AlwaysFake(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Parameter(torch.tensor([0.0, 0.0, 0.0, 5.0]))

        def forward(self, x):
            return self.b.expand(x.shape[0], 4)

    _, cm = evaluate(AlwaysFake(), torch.zeros(5, 1, 2, 2), torch.tensor([0, 1, 2, 2, 1]), 3)
    assert cm.shape == (3, 4) and cm[:, 3].tolist() == [1, 2, 2] and accuracy(cm) == 0.0


def test_output_layer_defenses_see_c_plus_1_rows_and_still_work():
    from strategies.rules.foolsgold import foolsgold
    from strategies.rules.lfighter import lfighter
    from strategies.rules.pca_filter import pca_filter

    model = new_model(resolve(GAN_KEYS))
    state = get_state(model)
    layout = make_layout(list(state), list(state.values()), model.output_layer)
    assert layout.num_classes == 11
    rng = np.random.default_rng(0)
    upd = rng.normal(scale=0.01, size=(8, layout.num_params))
    rows = layout.output_rows(upd)
    assert rows.shape[1] == 11
    w = layout.slice_of(layout.output_weight)
    hidden = layout.shapes[layout.output_weight][1]
    for k in (1, 5):  # two GAN adversaries: large change on the target row (8) and the fake row (10)
        block = upd[k, w].reshape(11, hidden)
        block[8] += 1.0
        block[10] -= 1.0
        upd[k, w] = block.ravel()
    weights = np.ones(8)
    assert sorted(np.flatnonzero(~lfighter(upd, weights, layout, seed=0).kept)) == [1, 5]
    assert sorted(pca_filter(upd, weights, layout, seed=0).info["flagged"]) == [1, 5]
    agg = foolsgold(upd, weights, layout)
    assert agg.update.shape == (layout.num_params,) and np.isfinite(agg.update).all()


# --- the generator ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_dcgan_generator_makes_the_data_sets_shapes(shape):
    g = gan.build_generator("dcgan", 16, 8, shape, seed=0)
    assert tuple(gan.generate(g, 3, seed=1).shape) == (3, *shape)


def test_generator_shape_problem_is_a_config_error():
    assert gan.shape_problem("dcgan", (1, 30, 30)) is not None
    assert gan.shape_problem("mlp", (1, 30, 30)) is None
    spec = SimpleNamespace(num_classes=10, input_shape=(1, 30, 30))
    cfg = dict(resolve(GAN_KEYS))
    with pytest.raises(ConfigError) as e:
        GAN.check_config(cfg, spec)
    assert e.value.key == "gan-generator"


def test_generator_training_lowers_its_loss_against_a_fixed_discriminator():
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5))
    before = {k: v.clone() for k, v in disc.state_dict().items()}
    fixed = gan.frozen(disc)
    g = gan.build_generator("dcgan", 8, 8, (1, 8, 8), seed=0)
    opt = gan.make_optimizer(g, 0.01)
    z = gan.latents(256, 8, seed=9)
    with torch.no_grad():
        start = float(gan.generator_loss(g, fixed, z, 2))
        before_rate = gan.recognition_rate(fixed, gan.generate(g, 200, seed=4), 2)
    gan.train_generator(g, fixed, opt, 2, steps=40, batch=32, seed=3)
    with torch.no_grad():
        end = float(gan.generator_loss(g, fixed, z, 2))
    assert end < 0.75 * start
    assert gan.recognition_rate(fixed, gan.generate(g, 200, seed=4), 2) > max(0.8, before_rate)
    assert all(torch.equal(before[k], v) for k, v in disc.state_dict().items())  # the discriminator is untouched


def test_generator_state_round_trips_through_the_node_store():
    g = gan.build_generator("dcgan", 8, 4, (1, 8, 8), seed=0)
    opt = gan.make_optimizer(g, 0.01)
    disc = gan.frozen(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))
    gan.train_generator(g, disc, opt, 1, steps=3, batch=8, seed=0)
    store = NodeStore(prefix="gan")
    store.put_arrays("generator", gan.pack_state(g, opt))
    g2 = gan.build_generator("dcgan", 8, 4, (1, 8, 8), seed=123)
    opt2 = gan.make_optimizer(g2, 0.01)
    gan.unpack_state(g2, opt2, store.get_arrays("generator"))
    # the same next steps from the restored state: generator and Adam moments both persisted
    gan.train_generator(g, disc, opt, 1, steps=2, batch=8, seed=5)
    gan.train_generator(g2, disc, opt2, 1, steps=2, batch=8, seed=5)
    for (k, a), b in zip(g.state_dict().items(), g2.state_dict().values()):
        assert torch.allclose(a, b), k


def test_preview_record_round_trips():
    imgs = torch.randn(4, 1, 8, 8)
    back, r = read_preview(preview_record(imgs, 7), (1, 8, 8), 7)
    assert r == 7 and np.allclose(back, imgs.numpy(), atol=1e-2)


# --- the adversary never reads G ----------------------------------------------------------------
def test_move_class_out_hands_g_to_the_others_and_drops_nothing():
    labels = np.array([0, 1, 2, 1, 1, 0, 1, 2])
    parts = [np.array([0, 1, 3]), np.array([2, 4]), np.array([5, 6, 7])]
    out = move_class_out(labels, parts, [0], 1)
    assert not (labels[out[0]] == 1).any()
    assert sorted(np.concatenate(out).tolist()) == list(range(8))
    assert out[1].tolist() == [1, 2, 4] and out[2].tolist() == [3, 5, 6, 7]
    with pytest.raises(ValueError):
        move_class_out(labels, parts, [0, 1, 2], 1)


def test_the_adversarys_partition_holds_no_sample_of_g():
    cfg = resolve({**GAN_KEYS, "num-malicious": 2})
    fed = federation_for(cfg)
    labels = fed.dataset.y_train.numpy()
    for c in fed.malicious:
        assert not (labels[fed.parts[c]] == 3).any()
    assert sum(len(p) for p in fed.parts) == len(labels)  # G went to the honest clients, nothing dropped
    off = federation_for(cfg.replace(**{"gan-exclude-source": False}))
    assert any((labels[off.parts[c]] == 3).any() for c in off.malicious)


def test_local_work_never_trains_on_real_g_samples():
    """G samples handed to the adversary anyway (a node's own files) are NaN: a model trained on them would be NaN."""
    cfg = resolve({**GAN_KEYS, "gan-steps": 2, "gan-samples": 10, "gan-width": 4, "gan-latent": 4})
    fed = federation_for(cfg.replace(**{"gan-exclude-source": False}))
    x, y = fed.client_data(0)
    x = x.clone()
    x[y == 3] = float("nan")
    assert (y == 3).any()
    model = new_model(cfg)
    r = RoundInput(cid=0, server_round=1, config=cfg, model=model, global_state=get_state(model), x=x, y=y,
                   settings=TrainSettings.from_config(cfg), num_classes=10, seed=1, rng=np.random.default_rng(1),
                   store=NodeStore(prefix="gan"))
    res = GAN(0, cfg).local_work(r)
    assert all(np.isfinite(v).all() for v in res.state.values())
    assert res.metrics["gan-real-source-samples"] == 0 and res.metrics["gan-active"] == 1.0
    assert int(res.num_examples) == int((y != 3).sum()) + 20  # real non-G data + 10 fake-class + 10 poison


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, key", [
    ({"source-class": -1, "target-class": -1}, "source-class"),
    ({"target-class": 3}, "target-class"),  # G = T
    ({"num-malicious": 10}, "num-malicious"),
    ({"malicious-from-source-holders": True}, "malicious-from-source-holders"),
])
def test_bad_gan_configs_are_refused_before_training(extra, key, tmp_path, capsys):
    keys = {**GAN_KEYS, **extra}
    with pytest.raises(ConfigError) as e:
        resolve(keys)
    assert e.value.key == key
    args = sum((["--set", f"{k}={v}"] for k, v in keys.items()), [])
    assert main(["run", *args, "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_an_adversary_left_without_data_is_refused(tmp_path):
    """partition=extreme: an adversary whose only class is G would hold nothing once G is taken from it."""
    base = {**GAN_KEYS, "partition": "extreme", "num-clients": 10, "clients-per-round": 10, "seed": 1}
    fed = federation_for(resolve({**base, "gan-exclude-source": False}))
    labels = fed.dataset.y_train.numpy()
    g = int(labels[fed.parts[fed.malicious[0]]][0])
    t = (g + 1) % 10
    args = sum((["--set", f"{k}={v}"] for k, v in {**base, "source-class": g, "target-class": t}.items()), [])
    assert main(["run", *args, "--out", str(tmp_path)]) == 2


# --- end to end ----------------------------------------------------------------------------------
def _rounds(path):
    with open(path / "rounds.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_gan_run_persists_the_generator_and_is_reproducible(tmp_path):
    keys = {**GAN_KEYS, "num-clients": 3, "clients-per-round": 3, "num-rounds": 3, "gan-steps": 5,
            "gan-samples": 50, "engine-workers": 1}
    args = sum((["--set", f"{k}={v}"] for k, v in keys.items()), [])
    for name in ("a", "b"):
        assert main(["run", *args, "--set", f"run-name={name}", "--out", str(tmp_path)]) == 0
    a, b = _rounds(tmp_path / "a"), _rounds(tmp_path / "b")
    assert [r["malicious_gan_rounds"] for r in a[1:]] == ["1.0", "2.0", "3.0"]  # the store kept the generator
    assert [r["accuracy"] for r in a] == [r["accuracy"] for r in b]
    assert [r["gan_recognised"] for r in a] == [r["gan_recognised"] for r in b]
    assert all(r["malicious_gan_real_source_samples"] == "0.0" for r in a[1:])
    assert (tmp_path / "a" / "gan_samples.png").exists()
    import json

    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert np.asarray(s["confusion_matrix"]).shape == (10, 11)
    assert s["mean_over_rounds"]["gan_recognised"] is not None
    assert s["mean_over_rounds"]["attack_success_rate"] is not None


# --- the (G, T) report ---------------------------------------------------------------------------
def _fake_run(root, name, cfg, summary):
    import json

    d = root / "runs" / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"config": cfg, "last10": {}, **summary}))
    (d / "rounds.csv").write_text("round,accuracy\n0,0.1\n")  # what a finished run holds besides its summary


def test_gan_report_pairs_attack_accuracy_with_the_no_attack_rate(tmp_path):
    from clients.gan_report import write_gan_report
    from fl_poison.report import load_runs, make_report

    base = dict(resolve({"dataset": "digits"}))
    rates = np.full((10, 11), 0.01)
    rates[3, 8] = 0.04
    _fake_run(tmp_path, "b0", {**base, "seed": 0}, {"mean_confusion_rates": rates.tolist()})
    for seed, acc in ((0, 0.3), (1, 0.5)):
        cfg = {**base, "attack": "gan", "source-class": 3, "target-class": 8, "seed": seed}
        _fake_run(tmp_path, f"g{seed}", cfg, {"mean_over_rounds": {"attack_success_rate": acc, "gan_recognised": 1.0},
                                              "accuracy": 0.9})
    rep = make_report(tmp_path, figures=False)
    md = (tmp_path / "report" / "gan_pairs.md").read_text()
    assert "| fedavg | 3 | 8 | 2 | 0.400 ± 0.141 | 0.040 | 1.000 | 0.900 |" in md
    assert any(str(f).endswith("gan_pairs.md") for f in rep["files"])
    files = write_gan_report(load_runs(tmp_path), tmp_path / "figs")
    assert {f.name for f in files} >= {"gan_attack_accuracy_fedavg.png", "gan_histogram.png"}


def test_gan_runs_that_differ_in_any_key_but_the_seed_are_separate_rows_claims_and_heatmaps(tmp_path):
    from clients.gan_report import pair_rows, write_gan_report
    from fl_poison.report import load_runs

    base = dict(resolve({"dataset": "digits", "attack": "gan", "source-class": 3, "target-class": 8}))
    for name, seed, samples, acc in (("a0", 0, 250, 0.1), ("a1", 1, 250, 0.2), ("b0", 0, 500, 0.6)):
        _fake_run(tmp_path, name, {**base, "seed": seed, "gan-samples": samples},
                  {"mean_over_rounds": {"attack_success_rate": acc}, "accuracy": 0.9})
    rows = pair_rows(load_runs(tmp_path))
    assert [(r["setting"], r["n"], round(r["attack_accuracy"], 3)) for r in rows] == [
        ("gan-samples=250", 2, 0.15), ("gan-samples=500", 1, 0.6)]  # never pooled: 0.3 would mix them
    files = {f.name for f in write_gan_report(load_runs(tmp_path), tmp_path / "rep")}
    assert {"gan_attack_accuracy_fedavg_gan-samples=250.png", "gan_attack_accuracy_fedavg_gan-samples=500.png"} <= files
    claims = (tmp_path / "rep" / "gan_claims.md").read_text()
    assert "### defense = fedavg, gan-samples=250" in claims and "### defense = fedavg, gan-samples=500" in claims
    assert "| fedavg, gan-samples=500 | 3 | 8 | 1 | 0.600 ± 0.000 |" in (tmp_path / "rep" / "gan_pairs.md").read_text()


@pytest.mark.slow
def test_generator_persists_across_rounds_under_flwr_run(tmp_path):
    """Flower's simulation runtime keeps the node's Context.state: the generator trains on in round 2."""
    from pathlib import Path

    from test_flower_simulation import FLWR, flwr_run_simulation

    if not Path(FLWR).exists():
        pytest.skip("flwr CLI not installed")
    keys = {**GAN_KEYS, "num-clients": 3, "clients-per-round": 3, "num-rounds": 2, "gan-steps": 3,
            "gan-samples": 20, "out-dir": str(tmp_path), "run-name": "sim"}
    proc = flwr_run_simulation(keys, tmp_path, timeout=420)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = _rounds(tmp_path / "sim")
    assert [r["malicious_gan_rounds"] for r in rows[1:]] == ["1.0", "2.0"]
    assert rows[2]["gan_recognised"] != ""


G, T = 3, 8  # source class (generated, never held) and target class (the poison's label)


BASE = {"dataset": "digits", "attack": "gan", "source-class": G, "target-class": T, "num-malicious": 1,
        "gan-steps": 3, "gan-samples": 10, "gan-width": 4, "gan-latent": 4, "received-eval-samples": -1}


def _cfg(**extra):
    return resolve({**BASE, **extra})


def _round(cfg, *, cid=0, server_round=1, store=None, model=None, x=None, y=None, seed=11) -> RoundInput:
    """One round's input for client ``cid`` (its digits share unless ``x, y`` are given)."""
    if x is None:
        x, y = federation_for(cfg).client_data(cid)
    model = new_model(cfg) if model is None else model
    return RoundInput(cid=cid, server_round=server_round, config=cfg, model=model, global_state=get_state(model),
                      x=x, y=y, settings=TrainSettings.from_config(cfg), num_classes=10, seed=seed,
                      rng=np.random.default_rng(seed), store=store if store is not None else NodeStore(prefix="gan"))


def _constant(k: int, outputs: int = 11) -> nn.Module:
    """A linear model on 8x8 images that predicts class ``k`` for every input (zero weights, bias peaked at k)."""
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, outputs))
    with torch.no_grad():
        m[1].weight.zero_()
        m[1].bias.zero_()
        m[1].bias[k] = 5.0
    return m


def _real(cfg, cid=0):
    """Client ``cid``'s data without class G (what the adversary may train on)."""
    x, y = federation_for(cfg).client_data(cid)
    return x[y != G], y[y != G]


def _spy(monkeypatch, name):
    """Wrap ``clients.gan.<name>`` as the plug-in sees it; return the list of (args, kwargs, result) of its calls."""
    calls = []
    real = getattr(gan, name)

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    monkeypatch.setattr(gan_attack.gan, name, wrapper)
    return calls


# --- gan-start-accuracy --------------------------------------------------------------------------
def _started(cfg, store, model, x, y, server_round=1) -> bool:
    return GAN(0, cfg).started(_round(cfg, store=store, model=model, x=x, y=y, server_round=server_round), x, y)


# --- the generator across rounds -----------------------------------------------------------------
def _weights(g):
    return {k: v.detach().clone() for k, v in g.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# --- the round: before and after the attack starts -----------------------------------------------
def test_before_the_attack_window_the_adversary_trains_honestly_on_its_real_data():
    """Round 1 with attack-start-round=2: plain training on the non-G data, no generator, no preview."""
    cfg = _cfg(**{"attack-start-round": 2, "num-rounds": 3})
    store = NodeStore(prefix="gan")
    r = _round(cfg, store=store)
    received = local_accuracy(new_model(cfg), *_real(cfg))
    res = GAN(0, cfg).local_work(r)
    assert res.metrics["gan-active"] == 0.0
    assert res.num_examples == len(_real(cfg)[1])
    assert res.records == {}
    assert res.metrics["received-model-accuracy"] == pytest.approx(received)
    assert store.get_arrays("generator") is None  # nothing of the generator was made or kept
    assert all(np.isfinite(v).all() for v in res.state.values())


def test_an_adversarial_round_replies_with_its_metrics_and_preview(monkeypatch):
    """Every reply metric, by name, with the value it stands for; the preview of 64 images of the round."""
    losses = _spy(monkeypatch, "train_generator")
    cfg = _cfg()
    real_x, real_y = _real(cfg)
    received = local_accuracy(new_model(cfg), real_x, real_y)  # scored on real data, not on the generated images
    res = GAN(0, cfg).local_work(_round(cfg, server_round=4))
    m = res.metrics
    (steps,) = [out for _, _, out in losses]
    assert len(steps) == 3 and steps[0] != steps[-1] and steps[1] != steps[-1]
    assert m["gan-active"] == 1.0 and m["gan-rounds"] == 1.0
    assert m["gan-loss-first"] == steps[0] and m["gan-loss-last"] == steps[-1]
    assert isinstance(m["gan-recognised-received"], float) and 0.0 <= m["gan-recognised-received"] <= 1.0
    assert m["gan-real-source-samples"] == 0.0
    assert m["received-model-accuracy"] == pytest.approx(received)
    assert res.num_examples == len(real_y) + 10 + 10  # gan-fake-samples = -1: as many fake-class images as poison
    images, rnd = read_preview(res.records["gan-preview"], (1, 8, 8), 4)
    assert rnd == 4 and images.shape == (PREVIEW, 1, 8, 8) and images.dtype == np.float32


def test_without_generator_steps_the_loss_metrics_are_nan():
    cfg = _cfg(**{"gan-steps": 0})
    res = GAN(0, cfg).local_work(_round(cfg))
    assert math.isnan(res.metrics["gan-loss-first"]) and math.isnan(res.metrics["gan-loss-last"])
    assert res.metrics["gan-active"] == 1.0


@pytest.mark.parametrize("fake, n_fake", [(0, 0), (3, 3), (-1, 10)])
def test_gan_fake_samples_sets_the_fake_class_images_and_poison_stays_gan_samples(monkeypatch, fake, n_fake):
    """The training set: real non-G data, ``n_fake`` images labelled C (=10), gan-samples images labelled T."""
    seen = []
    real_train = Behaviour.train_and_reply

    def spy(r, x, y, scored=None):
        seen.append(y.clone())
        return real_train(r, x, y, scored=scored)

    monkeypatch.setattr(GAN, "train_and_reply", staticmethod(spy))
    cfg = _cfg(**{"gan-fake-samples": fake})
    real_y = _real(cfg)[1]
    res = GAN(0, cfg).local_work(_round(cfg))
    (y,) = seen
    assert res.num_examples == len(real_y) + n_fake + 10
    assert y.dtype == real_y.dtype
    assert int((y == 10).sum()) == n_fake
    assert int((y == T).sum()) == int((real_y == T).sum()) + 10


def test_the_attack_waits_for_the_received_model_to_reach_gan_start_accuracy_and_then_stays_on():
    """Half the data is class 0: a model predicting 0 scores exactly 0.5 -- enough for 0.5 (>=), not for 0.75.
    Once started, a later (worse) model does not stop it."""
    cfg_half, cfg_high = _cfg(**{"gan-start-accuracy": 0.5}), _cfg(**{"gan-start-accuracy": 0.75})
    x = torch.randn(8, 1, 8, 8)
    y = torch.tensor([0, 0, 0, 0, 1, 2, 4, 5])
    store = NodeStore(prefix="gan")
    assert not _started(cfg_high, store, _constant(0), x, y)
    assert _started(cfg_half, NodeStore(prefix="gan"), _constant(0), x, y)  # accuracy == threshold starts it
    assert _started(cfg_high, store, _constant(0), x, torch.zeros(8, dtype=torch.long))  # accuracy 1.0
    assert _started(cfg_high, store, _constant(9), x, y)  # accuracy 0 now, but the attack has started
    assert not _started(cfg_high, NodeStore(prefix="gan"), _constant(9), x, y)


def test_a_started_attack_still_stops_outside_its_window():
    cfg = _cfg(**{"attack-start-round": 2, "attack-end-round": 2, "num-rounds": 3})
    x, y = torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    assert not _started(cfg, NodeStore(prefix="gan"), _constant(0), x, y, server_round=1)
    assert _started(cfg, NodeStore(prefix="gan"), _constant(0), x, y, server_round=2)
    assert not _started(cfg, NodeStore(prefix="gan"), _constant(0), x, y, server_round=3)


def test_local_work_with_gan_start_accuracy_scores_the_real_data():
    """An untrained model is far below 0.99 on the digits: honest round. 0.0 is always reached: the attack runs."""
    for threshold, active in ((0.99, 0.0), (0.0, 1.0)):
        cfg = _cfg(**{"gan-start-accuracy": threshold})
        assert GAN(0, cfg).local_work(_round(cfg)).metrics["gan-active"] == active


def test_the_generator_and_its_round_count_persist_in_the_node_store():
    cfg = _cfg()
    store = NodeStore(prefix="gan")
    fresh, _, zero = GAN(0, cfg).generator(_round(cfg))
    assert zero == 0
    first = GAN(0, cfg).local_work(_round(cfg, store=store, server_round=1, seed=1))
    kept, opt, rounds = GAN(0, cfg).generator(_round(cfg, store=store, server_round=2))
    assert rounds == 1 and first.metrics["gan-rounds"] == 1.0
    assert not _same(_weights(fresh), _weights(kept))  # the trained generator, not a fresh one
    assert all(int(s["step"]) == 3 for s in opt.state.values())  # Adam's state came back too (3 steps)
    second = GAN(0, cfg).local_work(_round(cfg, store=store, server_round=2, seed=2))
    assert second.metrics["gan-rounds"] == 2.0
    third = GAN(0, cfg).local_work(_round(cfg, store=store, server_round=3, seed=3))
    assert third.metrics["gan-rounds"] == 3.0


def test_the_generator_is_a_dcgan_with_the_data_sets_normalisation():
    cfg = _cfg()
    spec = get_spec("digits")
    g, _, _ = GAN(0, cfg).generator(_round(cfg))
    assert isinstance(g, gan.DCGANGenerator)
    assert g.pixels.mean.flatten().tolist() == pytest.approx(list(spec.mean))
    assert g.pixels.std.flatten().tolist() == pytest.approx(list(spec.std))
    g_mlp, _, _ = GAN(0, _cfg(**{"gan-generator": "mlp"})).generator(_round(cfg))
    assert isinstance(g_mlp, gan.MLPGenerator)


def test_the_generator_lives_on_the_models_device():
    cfg = _cfg()
    r = _round(cfg)
    r.model = r.model.to("meta")  # a device other than the CPU the generator is built on
    g, _, _ = GAN(0, cfg).generator(r)
    assert next(g.parameters()).device.type == "meta"


def test_the_first_generator_is_fixed_by_run_seed_and_client():
    def init(seed, cid):
        cfg = _cfg(seed=seed)
        return _weights(GAN(cid, cfg).generator(_round(cfg))[0])

    assert _same(init(0, 1), init(0, 1))
    assert not _same(init(0, 1), init(0, 2))
    assert not _same(init(1, 0), init(2, 0))


def test_the_preview_uses_one_latent_batch_per_run_seed_and_client_every_round(monkeypatch):
    """``gan-preview`` images come from a fixed latent batch: the same every round, distinct per (seed, client)."""
    calls = _spy(monkeypatch, "generate")

    def preview_seed(seed, cid, server_round):
        cfg = _cfg(seed=seed)
        calls.clear()
        GAN(cid, cfg).local_work(_round(cfg, cid=cid, server_round=server_round, seed=100 + server_round))
        (s,) = [args[2] for args, _, _ in calls if args[1] == PREVIEW]
        return s

    assert preview_seed(0, 1, 1) == preview_seed(0, 1, 2)
    assert len({preview_seed(0, 1, 1), preview_seed(0, 2, 1), preview_seed(1, 0, 1), preview_seed(2, 0, 1)}) == 4


def test_derived_seeds_are_reproducible_and_distinct_per_salt():
    assert gan_attack._sub(7, 1) == gan_attack._sub(7, 1)
    assert len({gan_attack._sub(7, s) for s in range(1, 6)}) == 5


# --- the run plan's errors ------------------------------------------------------------------------
@pytest.mark.parametrize("extra, key, value, allowed", [
    ({"num-malicious": -1, "malicious-fraction": 1.0}, "malicious-fraction", 1.0,
     "fewer adversaries than num-clients (10) for attack=gan: some honest client must hold source-class"),
    ({"num-malicious": 10}, "num-malicious", 10,
     "fewer adversaries than num-clients (10) for attack=gan: some honest client must hold source-class"),
    ({"malicious-from-source-holders": True}, "malicious-from-source-holders", True,
     "false for attack=gan with gan-exclude-source=true (the adversary holds no sample of source-class)"),
])
def test_check_config_names_the_key_the_value_and_what_is_allowed(extra, key, value, allowed):
    """Under gan-exclude-source some honest client must be left to hold G; the error says which key to change."""
    with pytest.raises(ConfigError) as e:
        _cfg(**extra)
    assert (e.value.key, e.value.value) == (key, value)
    assert str(e.value).endswith(allowed)


def test_adjust_partitions_refuses_a_plan_with_no_honest_client_to_hold_g():
    cfg = _cfg()
    labels = np.array([0, 3, 1, 3])
    with pytest.raises(ConfigError) as e:
        GAN.adjust_partitions(cfg, [np.array([0, 1]), np.array([2, 3])], labels, (0, 1))
    assert e.value.key == "num-malicious" and e.value.value == cfg["num-malicious"]
    assert "class 3" in str(e.value)  # move_class_out's reason is passed on


def test_adjust_partitions_refuses_an_adversary_left_empty_and_names_the_way_out():
    cfg = _cfg()
    labels = np.array([0, 3, 3, 1])
    with pytest.raises(ConfigError) as e:
        GAN.adjust_partitions(cfg, [np.array([0, 3]), np.array([1, 2])], labels, (1,))
    assert e.value.key == "partition" and e.value.value == cfg["partition"]
    msg = str(e.value)
    assert "class 3" in msg and "client 1" in msg
    assert msg.endswith("held only that class); use another partition or gan-exclude-source=false")


# --- clients.gan: the MLP generator, to_pixels, unpack_state ------------------------------------
def test_the_mlp_generator_makes_any_shape_within_the_normalised_pixel_range():
    """A non-square 3x5x7 image: pixels (tanh + 1) / 2 in [0, 1], normalised per channel by mean / std."""
    mean, std = (0.5, 0.2, 0.0), (0.25, 0.5, 2.0)
    g = gan.build_generator("mlp", 6, 3, (3, 5, 7), mean, std, seed=0)
    assert g.net[0].in_features == 6 and g.net[0].out_features == 12  # hidden layer of 4 * width
    assert any(isinstance(m, nn.ReLU) for m in g.net)
    out = gan.generate(g, 5, seed=1)
    assert out.shape == (5, 3, 5, 7)
    pixels = out * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert float(pixels.min()) >= -1e-6 and float(pixels.max()) <= 1 + 1e-6
    assert float(pixels.std()) > 0.01  # not a constant image


def test_the_mlp_generator_learns_to_fool_a_fixed_discriminator():
    torch.manual_seed(0)
    disc = gan.frozen(nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 5, 4)))
    g = gan.build_generator("mlp", 4, 4, (2, 3, 5), seed=0)
    opt = gan.make_optimizer(g, 0.05)
    before = gan.recognition_rate(disc, gan.generate(g, 100, seed=2), 1)
    gan.train_generator(g, disc, opt, 1, steps=30, batch=16, seed=0)
    assert gan.recognition_rate(disc, gan.generate(g, 100, seed=2), 1) > max(0.9, before)


def test_to_pixels_undoes_the_per_channel_normalisation_and_clips_to_the_unit_range():
    images = np.array([[[[0.0, 2.0, 4.0], [-4.0, -1.0, 1.0]],
                        [[-1.0, 0.4, 0.0], [1.8, 3.0, -0.2]]]])  # float64, N=1, C=2, H=2, W=3
    out = gan.to_pixels(images, (0.5, 0.1), (0.25, 0.5))
    expected = np.array([[[[0.5, 1.0, 1.0], [0.0, 0.25, 0.75]],
                          [[0.0, 0.3, 0.1], [1.0, 1.0, 0.0]]]], dtype=np.float32)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_unpack_state_refuses_arrays_that_miss_a_generator_weight():
    g = gan.build_generator("dcgan", 4, 4, (1, 8, 8), seed=0)
    arrays = gan.pack_state(g, gan.make_optimizer(g, 0.01))
    del arrays["g.fc.0.bias"]
    g2 = gan.build_generator("dcgan", 4, 4, (1, 8, 8), seed=1)
    with pytest.raises(RuntimeError, match="fc.0.bias"):
        gan.unpack_state(g2, gan.make_optimizer(g2, 0.01), arrays)


# --- clients.behaviour: which behaviour a client runs ---------------------------------------------
def test_behaviour_for_gives_the_adversary_the_attack_and_the_others_honest_training():
    from clients.behaviour import behaviour_for

    cfg = _cfg()
    bad, good = behaviour_for(cfg, 3, True), behaviour_for(cfg, 4, False)
    assert type(bad) is GAN and bad.cid == 3 and bad.config is cfg
    assert type(good) is Behaviour and good.cid == 4 and good.config is cfg


def test_the_dcgan_generator_is_hitajs_architecture_and_stores_no_normalisation_constants():
    """Linear -> (2w, H/4, W/4) -> ConvT + BatchNorm + ReLU -> ConvT; mean / std are not part of its stored state."""
    g = gan.build_generator("dcgan", 4, 3, (1, 8, 8), (0.5,), (0.25,), seed=0)
    assert [type(m) for m in g.up] == [nn.Unflatten, nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU, nn.ConvTranspose2d]
    keys = set(gan.pack_state(g, gan.make_optimizer(g, 0.01)))
    assert keys and not any("pixels" in k for k in keys)


# --- the generator's shape check and an inactive round ---------------------------------------------------
@pytest.mark.parametrize("kind,shape,problem", [
    ("wgan", (1, 8, 8), "one of dcgan, mlp"),
    ("dcgan", (8, 8), "a (C, H, W) image shape, got (8, 8)"),
    ("mlp", (1, 0, 8), "a (C, H, W) image shape, got (1, 0, 8)"),
    ("dcgan", (4, 8, 8), None),  # up to 4 channels
    ("dcgan", (5, 8, 8), "1-4 channels; the data set's images are 5x8x8"),
    ("mlp", (5, 8, 8), None),
])
def test_generator_shape_problem_names_what_is_allowed(kind, shape, problem):
    got = gan.shape_problem(kind, shape)
    assert got is None if problem is None else problem in got


def test_an_inactive_round_neither_poisons_the_data_nor_crafts_the_reply():
    """Outside the attack window a malicious client trains exactly like an honest one."""

    class Outside(Behaviour):
        malicious = True

        def active(self, server_round: int) -> bool:
            return False

        def training_set(self, r):
            raise AssertionError("training_set called outside the attack window")

        def craft(self, r, state):
            raise AssertionError("craft called outside the attack window")

    cfg = _cfg(attack="none")
    r = _round(cfg)
    got = Outside(0, cfg).local_work(r)
    assert got.num_examples == r.y.shape[0]
    assert set(got.metrics) == {"train-loss", "train-accuracy", "received-model-accuracy"}


def test_training_applies_the_rounds_augmentation():
    seen = []

    def augment(xb, gen):
        seen.append(xb.shape[0])
        return xb

    cfg = _cfg(attack="none")
    r = _round(cfg)
    r.augment = augment
    Behaviour(0, cfg).local_work(r)
    assert sum(seen) == r.y.shape[0] * cfg["local-epochs"]  # every sample of every epoch went through it


def test_received_model_accuracy_sample_size():
    """n = 0: not measured (NaN); 0 < n < len: a seeded subsample of n; otherwise every sample."""
    from clients.behaviour import received_model_accuracy

    cfg = _cfg(attack="none")
    x, y = federation_for(cfg).client_data(0)
    model = _constant(int(y[0]), outputs=10)
    everyone = local_accuracy(model, x, y)
    assert 0 < everyone < 1
    assert math.isnan(received_model_accuracy(model, x, y, 0, seed=4))
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(4))[:1]
    one = received_model_accuracy(model, x, y, 1, seed=4)
    assert one in (0.0, 1.0) and one == local_accuracy(model, x[idx], y[idx])
    assert received_model_accuracy(model, x, y, -1, seed=4) == everyone


GAN_RUN_KEYS = {"attack": "gan", "source-class": 3, "target-class": 8, "num-malicious": 1}


GIB = 1024 ** 3


@pytest.fixture
def sixteen_gib(monkeypatch):
    """A machine with 16 GiB, whatever this one has."""
    monkeypatch.setattr("fl_poison.devices.memory_bytes", lambda device: 16 * GIB, raising=False)


def _tracker():
    from clients.gan_measurement import GanMeasurement
    from fl_poison.federation import new_model

    cfg = resolve({**GAN_RUN_KEYS, "figures": False})
    fed = SimpleNamespace(dataset=SimpleNamespace(spec=get_spec("digits")))
    return GanMeasurement(cfg, fed), new_model(cfg)


def _reply(node: int, preview: dict):
    msg = make_reply([np.zeros(2, np.float32)], 10, node)
    msg.content["gan-preview"] = ConfigRecord(preview)
    return msg


def _good(server_round: int = 2, n: int = PREVIEW) -> dict:
    return preview_record(torch.zeros(n, 1, 8, 8), server_round)


def _bad(kind: str) -> dict:
    p = _good()
    if kind == "short-bytes":
        p["images"] = p["images"][:-2]
    elif kind == "wrong-image-shape":
        p["shape"] = [PREVIEW, 1, 4, 16]
    elif kind == "too-many-images":
        p = preview_record(torch.zeros(PREVIEW + 1, 1, 8, 8), 2)
    elif kind == "shape-not-ints":
        p["shape"] = "64,1,8,8"
    elif kind == "missing-images":
        del p["images"]
    elif kind == "future-round":
        p["round"] = 99
    elif kind == "nan-pixels":
        p = preview_record(torch.full((PREVIEW, 1, 8, 8), float("nan")), 2)
    return p


@pytest.mark.parametrize("kind, shape", [("dcgan", (1, 8, 8)), ("dcgan", (1, 28, 28)), ("dcgan", (3, 32, 32)),
                                         ("mlp", (1, 8, 8)), ("mlp", (3, 5, 7))])
def test_generator_size_counts_the_parameters_build_generator_makes(kind, shape):
    g = gan.build_generator(kind, 7, 5, shape)
    assert gan.generator_size(kind, 7, 5, shape)[0] == sum(p.numel() for p in g.parameters())


@pytest.mark.parametrize("key, value", [("gan-latent", 10 ** 9), ("gan-samples", 10 ** 8), ("gan-batch", 10 ** 8),
                                        ("gan-width", 10 ** 6), ("gan-fake-samples", 10 ** 8)])
def test_a_gan_round_that_cannot_fit_in_memory_is_refused_naming_its_key(sixteen_gib, key, value):
    with pytest.raises(ConfigError) as err:
        resolve({**GAN_RUN_KEYS, key: value})
    assert err.value.key == key and "16.0 GiB" in str(err.value)


def test_the_default_gan_and_the_papers_mnist_sizes_fit(sixteen_gib):
    resolve(GAN_RUN_KEYS)
    resolve({**GAN_RUN_KEYS, "dataset": "mnist", "gan-samples": 5000, "gan-batch": 256})


def test_the_cli_refuses_an_oversized_gan_before_loading_data(sixteen_gib, monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("data loaded")

    monkeypatch.setattr("fl_poison.federation.federation_for", boom)
    args = ["run", *[f"--set={k}={v}" for k, v in GAN_RUN_KEYS.items()], "--set", "gan-latent=1000000000"]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fl-poison: error: invalid value for 'gan-latent'")


@pytest.mark.parametrize("kind", ["short-bytes", "wrong-image-shape", "too-many-images", "shape-not-ints",
                                  "missing-images", "future-round", "nan-pixels"])
def test_a_malformed_preview_is_logged_and_skipped_for_the_next_good_one(server_identity, caplog, kind):
    tracker, model = _tracker()
    ex = SimpleNamespace(replies=[_reply(7, _bad(kind)), _reply(8, _good(2))])
    with caplog.at_level(logging.WARNING, "fl_poison.experiment"):
        out = tracker.round_metrics(2, model, ex.replies)
    assert "gan-preview of node 7" in caplog.text
    assert out["gan_recognised"] is not None and tracker.snapshots.keys() == {2}
    assert tracker.summary_entries()["gan"]["invalid_previews"] == 1


def test_only_malformed_previews_leave_the_round_without_a_measurement(server_identity):
    tracker, model = _tracker()
    out = tracker.round_metrics(1, model, [_reply(7, _bad("short-bytes"))])
    assert out == {"gan_recognised": None} and not tracker.snapshots
