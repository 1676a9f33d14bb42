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
    from strategies.foolsgold import foolsgold
    from strategies.lfighter import lfighter
    from strategies.pca_filter import pca_filter

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
