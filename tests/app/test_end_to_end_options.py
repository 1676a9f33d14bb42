"""Every run option through real (tiny) federated runs, the CLI subcommands and the node checks.

Fast tests check that run keys reach the defense; the rest are real runs of
1-2 rounds on digits (marked slow), plus one MNIST federation from
``../shared/data``. The model zoo end to end lives elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fl_poison import plugins
from fl_poison.app import client_app as real
from fl_poison.app.experiment import identify_nodes, run_experiment, wait_for_nodes
from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from fl_poison.engine.inprocess import inprocess_grid
from fl_poison.federation import federation_for
from fl_poison.experiment_file import load_experiment
from fl_poison.results import read_rounds
from strategies.registry import STRATEGIES, build_strategy

TINY = {"dataset": "digits", "num-clients": 5, "clients-per-round": 5, "num-rounds": 2, "seed": 1, "figures": False}
FLIP = {"attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 2}
EXPERIMENTS = sorted((Path(__file__).parents[2] / "experiments").glob("*.toml"))


def _run(tmp_path, **over):
    cfg = resolve({**TINY, **over})
    summary = run_experiment(inprocess_grid(cfg.to_dict(), cfg["num-clients"], real.app), cfg, out_dir=tmp_path)
    rows = read_rounds(next(p for p in Path(tmp_path).iterdir() if p.is_dir()))
    return cfg, summary, rows


def _healthy(rows, selected):
    """Every trained round took every selected reply and moved the model."""
    for r in rows[1:]:
        assert r["num_selected"] == selected and r["num_invalid"] == 0 and r["updated"] == 1, r


# --- every defense from run keys, with non-default parameters ------------------------------------------
NON_DEFAULT = {
    "fedavg": ({}, {}),
    "median": ({}, {}),
    "trimmed-mean": ({"trim-beta": 0.3}, {"beta": 0.3}),
    "repeated-median": ({"repeated-median-reweight": True}, {"reweight": True}),
    "krum": ({"num-byzantine": 1}, {"num_byzantine": 1}),
    "multi-krum": ({"num-byzantine": 1, "multi-krum-keep": 2}, {"num_byzantine": 1, "keep": 2}),
    "bulyan": ({"num-byzantine": 0}, {"num_byzantine": 0}),
    "ndc": ({"ndc-bound": "2.5", "ndc-mode": "drop"}, {"bound": 2.5, "mode": "drop"}),
    "foolsgold": ({"foolsgold-features": "all"}, {"features": "all"}),
    "pca": ({"pca-class": 3, "pca-visualise-only": True}, {"source_class": 3, "visualise_only": True, "seed": 1}),
    "lfighter": ({"lfighter-mode": "extreme", "lfighter-min-samples": 2},
                 {"mode": "extreme", "min_samples": 2, "seed": 1}),
    "geometric-median": ({"geomed-eps": 1e-4, "geomed-iterations": 7}, {"eps": 1e-4, "iterations": 7}),
    "centered-clipping": ({"cc-tau": 0.5, "cc-iterations": 3}, {"tau": 0.5, "iterations": 3}),
    "dnc": ({"num-byzantine": 1, "dnc-iterations": 2, "dnc-subsample": 50, "dnc-filter-fraction": 2.0},
            {"num_byzantine": 1, "iterations": 2, "subsample": 50, "filter_fraction": 2.0, "seed": 1}),
    "signguard": ({"signguard-lower": 0.2, "signguard-upper": 2.0, "signguard-coord-fraction": 0.5},
                  {"lower": 0.2, "upper": 2.0, "coord_fraction": 0.5, "seed": 1}),
    "flame": ({"flame-noise": 0.01}, {"noise": 0.01, "seed": 1}),
    "fltrust": ({"server-data-samples": 40}, {}),
    "fldetector": ({"fldetector-window": 3, "fldetector-rule": "mean", "fldetector-gap": "authors"},
                   {"window": 3, "rule": "mean", "gap": "authors", "seed": 1}),
}


plugins.discover()
#: Every registered defense (built-in or from an installed plug-in package), so a new one is covered without
#: editing this file: with the values of NON_DEFAULT where it has an entry, with its defaults where it has none.
#: None is excluded: every defense builds from run keys and runs one round of TINY.
DEFENSES = sorted(plugins.plugins("defense"))


def test_every_non_default_case_names_a_registered_defense():
    assert set(NON_DEFAULT) <= set(STRATEGIES) == set(DEFENSES)


@pytest.mark.parametrize("name", DEFENSES)
def test_defense_parameters_arrive_from_run_keys(name):
    keys, attrs = NON_DEFAULT.get(name, ({}, {}))
    every = getattr(STRATEGIES[name], "needs_every_client", False)  # per-client history: no partial rounds
    cfg = resolve({**TINY, "defense": name, "capture-updates": True, "num-clients": 7,
                   "clients-per-round": 7 if every else 5, **keys})
    s = build_strategy(cfg)
    assert type(s) is STRATEGIES[name] and s.name == name
    for attr, value in attrs.items():
        assert getattr(s, attr) == value, attr
    assert s.capture_updates is True and s.clients_per_round == cfg["clients-per-round"] and s.min_available_nodes == 7


@pytest.mark.slow
@pytest.mark.parametrize("name", DEFENSES)
def test_every_defense_runs_a_round_with_non_default_parameters(tmp_path, name):
    keys, _ = NON_DEFAULT.get(name, ({}, {}))
    cfg, s, rows = _run(tmp_path, defense=name, **{**FLIP, **keys, "num-rounds": 1})
    assert rows[1]["num_selected"] == 5 and rows[1]["num_invalid"] == 0
    log = json.loads((next(tmp_path.iterdir()) / "defense.jsonl").read_text().splitlines()[0])
    assert log["clients"] == [0, 1, 2, 3, 4] and len(log["kept"]) == 5
    assert s["detection"]["tp"] + s["detection"]["fn"] == 2


# --- partitions, train-samples, attack options, optimiser -----------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "extreme"])
def test_every_partition_with_train_samples(tmp_path, scheme):
    n = 10 if scheme == "extreme" else 5
    cfg, s, rows = _run(tmp_path, partition=scheme, **{"train-samples": 600, "num-clients": n,
                                                       "clients-per-round": n, "dirichlet-alpha": 0.3})
    fed = federation_for(cfg)
    idx = np.concatenate(fed.parts)
    assert idx.size == 600 == np.unique(idx).size  # the subset, each sample once
    labels = fed.dataset.y_train.numpy()
    if scheme == "extreme":
        assert all(np.unique(labels[p]).size == 1 for p in fed.parts)
    _healthy(rows, n)
    assert rows[-1]["accuracy"] > rows[0]["accuracy"]


@pytest.mark.slow
def test_source_holders_injection_and_end_round(tmp_path):
    cfg, s, rows = _run(tmp_path, partition="dirichlet", **{**FLIP, "dirichlet-alpha": 0.2, "num-clients": 8,
                                                              "clients-per-round": 8, "malicious-from-source-holders": True,
                                                              "injection-rate": 0.5, "attack-end-round": 1})
    fed = federation_for(cfg)
    labels = fed.dataset.y_train.numpy()
    assert all((labels[fed.parts[c]] == 7).any() for c in s["malicious_clients"])
    assert s["malicious_source_samples"] == {str(c): int((labels[fed.parts[c]] == 7).sum())
                                             for c in s["malicious_clients"]}
    _healthy(rows, 8)
    # round 2 is after attack-end-round: the attackers train honestly, their received accuracy is ordinary
    assert rows[2]["malicious_received_model_accuracy"] > rows[1]["malicious_received_model_accuracy"]


@pytest.mark.slow
def test_random_flip_map_differs_from_reverse(tmp_path):
    base = {"attack": "untargeted-flip", "num-malicious": 2, "num-rounds": 1}
    _, _, rnd = _run(tmp_path / "r", **base, **{"flip-map": "random"})
    _, _, rev = _run(tmp_path / "v", **base, **{"flip-map": "reverse"})
    _healthy(rnd, 5)
    assert rnd[1]["malicious_received_model_accuracy"] < 0.3  # every label moved
    assert rnd[1]["loss"] != rev[1]["loss"]


@pytest.mark.slow
def test_availability_alpha_one_selects_every_attacker(tmp_path):
    cfg, s, rows = _run(tmp_path, **{**FLIP, "num-clients": 8, "clients-per-round": 3,
                                     "malicious-availability": 1.0})
    for r in rows[1:]:  # every slot asks for an attacker: both attackers, then one honest client
        assert r["num_selected"] == 3 and r["num_malicious_selected"] == 2


@pytest.mark.slow
def test_adam_learns(tmp_path):
    _, _, rows = _run(tmp_path, optimizer="adam", lr=0.01)
    _healthy(rows, 5)
    assert rows[-1]["accuracy"] > rows[0]["accuracy"] + 0.2


@pytest.mark.slow
def test_capture_updates_draws_the_update_figure(tmp_path):
    _run(tmp_path, **{**FLIP, "capture-updates": True, "figures": True, "num-rounds": 1})
    d = next(tmp_path.iterdir())
    assert any("update" in p.name or "pca" in p.name for p in d.glob("*.png")), sorted(p.name for p in d.iterdir())


@pytest.mark.slow
def test_mnist_federates_from_shared_data(tmp_path, shared_data):
    _, s, rows = _run(tmp_path, dataset="mnist", **{"data-dir": str(shared_data), "train-samples": 1000,
                                                    "num-rounds": 1, "received-eval-samples": 50})
    _healthy(rows, 5)
    assert rows[1]["accuracy"] > rows[0]["accuracy"] + 0.1
    assert s["model"] and s["num_parameters"] > 1000


# --- experiment files, CLI -----------------------------------------------------------------------------
def _data_present(path: Path, shared: Path) -> bool:
    ds = load_experiment(path).config.get("dataset", "digits")
    return ds == "digits" or (ds == "mnist" and (shared / "mnist" / "train-labels-idx1-ubyte.gz").exists())


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_one_round_of_every_experiment_file_with_data(tmp_path, path):
    from conftest import SHARED_DATA

    if not _data_present(path, SHARED_DATA):
        pytest.skip(f"no data for {path.name} here")
    rc = main(["run", "--config", str(path), "--set", "num-rounds=1", "--set", "train-samples=600",
               "--set", "num-clients=10", "--set", "clients-per-round=10", "--set", "figures=false",
               "--set", f"data-dir={SHARED_DATA}", "--set", "run-name=x", "--out", str(tmp_path)])
    assert rc == 0
    rows = read_rounds(tmp_path / "x")
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["num_invalid"] == 0


def test_cli_keys_lists_every_key_with_its_default(capsys):
    from fl_poison.config import SCHEMA

    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    for key in SCHEMA:
        name = key.name if hasattr(key, "name") else key
        assert name in out, name


def test_cli_datasets_stats(capsys):
    assert main(["datasets", "--stats", "--set", "num-clients=3", "--set", "clients-per-round=3",
                 "--set", "partition=dirichlet"]) == 0
    out = capsys.readouterr().out
    assert "partition=dirichlet of digits over 3 clients" in out
    import re

    sizes = [int(m) for m in re.findall(r"client +\d+: +(\d+) samples", out)]
    cfg = resolve({"num-clients": 3, "clients-per-round": 3, "partition": "dirichlet"})
    assert sizes == [len(p) for p in federation_for(cfg).parts]  # the very split a run would use


@pytest.mark.parametrize("argv,key", [
    (["run", "--set", "defense=nope"], "defense"),
    (["run", "--set", "trim-beta=0.7", "--set", "defense=trimmed-mean"], "trim-beta"),
    (["run", "--set", "nosuchkey=1"], "nosuchkey"),
    (["datasets", "--set", "partition=odd"], "partition"),
])
def test_cli_bad_config_exits_2_naming_the_key(capsys, tmp_path, argv, key):
    assert main([*argv, *(["--out", str(tmp_path)] if argv[0] == "run" else [])]) == 2
    err = capsys.readouterr().err
    assert "fl-poison: error:" in err and key in err
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_cli_compare_errors_on_missing_runs(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope2")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and ("summary.json" in err or "does not exist" in err)


# --- flwr-run node identification ----------------------------------------------------------------------
def test_identify_nodes_maps_partitions():
    cfg = resolve({**TINY})
    grid = inprocess_grid(cfg.to_dict(), 5)
    nodes = wait_for_nodes(grid, 5, timeout=1)
    mapping = identify_nodes(grid, cfg, nodes)
    assert sorted(mapping.values()) == [0, 1, 2, 3, 4] and set(mapping) == set(nodes)


def test_identify_nodes_rejects_a_federation_of_another_size():
    cfg = resolve({**TINY, "num-clients": 4, "clients-per-round": 4})
    grid = inprocess_grid(cfg.to_dict(), 5)  # 5 partitions announced, num-clients = 4
    with pytest.raises(ConfigError) as err:
        identify_nodes(grid, cfg, list(grid.get_node_ids())[:4])
    assert "num-clients" in str(err.value) and "num-supernodes=4" in str(err.value)


def test_identify_nodes_rejects_wrong_partition_ids():
    cfg = resolve({**TINY})
    grid = inprocess_grid(cfg.to_dict(), 5)
    for ctx in grid._contexts.values():  # partitions 1..5 instead of 0..4, num-partitions unknown
        ctx.node_config["partition-id"] = int(ctx.node_config["partition-id"]) + 1
        del ctx.node_config["num-partitions"]
    with pytest.raises(ConfigError) as err:
        identify_nodes(grid, cfg, list(grid.get_node_ids()))
    assert "expected exactly 0..4" in str(err.value)


def test_identify_nodes_reports_a_node_without_partition_id():
    cfg = resolve({**TINY})
    grid = inprocess_grid(cfg.to_dict(), 5)
    del next(iter(grid._contexts.values())).node_config["partition-id"]
    with pytest.raises(RuntimeError, match="partition-id"):
        identify_nodes(grid, cfg, list(grid.get_node_ids()))


def test_wait_for_nodes_times_out_naming_num_clients():
    cfg = resolve({**TINY})
    grid = inprocess_grid(cfg.to_dict(), 2)
    with pytest.raises(RuntimeError, match="num-clients=5"):
        wait_for_nodes(grid, 5, timeout=0)
