"""Config validation: every bad-input case names the key and fails before any data is loaded."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fl_poison import config as C
from fl_poison.cli import main
import logging
import numpy as np
from fl_poison.config import ConfigError, resolve
from flower_replies import array_record, make_reply
from strategies import defenses as D


def test_defaults_resolve_and_match_pyproject():
    cfg = C.resolve()
    assert cfg["dataset"] == "digits" and cfg.source is None
    flwr_cfg = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert flwr_cfg == C.DEFAULTS  # one configuration everywhere: no key missing, no default drifted


def test_contract_keys_exist():
    for key in ("dataset", "data-dir", "model", "num-clients", "clients-per-round", "num-rounds", "local-epochs",
                "batch-size", "lr", "momentum", "optimizer", "partition", "dirichlet-alpha", "source-class",
                "target-class", "seed"):
        assert key in C.KEYS


def test_strings_from_cli_are_coerced():
    cfg = C.resolve({"num-clients": "20", "lr": "0.1", "figures": "false", "clients-per-round": 5.0})
    assert cfg["num-clients"] == 20 and cfg["lr"] == 0.1 and cfg["figures"] is False
    assert cfg["clients-per-round"] == 5


BAD = [
    ({"datset": "mnist"}, "datset", "dataset"),
    ({"dataset": "imagenet"}, "dataset", "cifar10"),
    ({"model": "vgg"}, "model", "lfighter-cnn"),
    ({"partition": "weird"}, "partition", "dirichlet"),
    ({"malicious-fraction": 1.5}, "malicious-fraction", "[0, 1]"),
    ({"malicious-fraction": -0.1}, "malicious-fraction", "[0, 1]"),
    ({"clients-per-round": 11, "num-clients": 10}, "clients-per-round", "num-clients"),
    ({"dirichlet-alpha": 0}, "dirichlet-alpha", "> 0"),
    ({"dirichlet-alpha": -1}, "dirichlet-alpha", "> 0"),
    ({"source-class": 10, "target-class": 1}, "source-class", "0..9"),
    ({"source-class": 3, "target-class": 3}, "target-class", "different"),
    ({"partition": "extreme", "num-clients": 5, "clients-per-round": 5}, "num-clients", "classes"),
    ({"attack": "label-flip"}, "source-class", "label-flip"),
    ({"source-class": 7}, "target-class", "both"),
    ({"lr": "fast"}, "lr", "number"),
    ({"num-rounds": 0}, "num-rounds", ">= 1"),
    ({"optimizer": "rmsprop"}, "optimizer", "sgd"),
    ({"model": "tolpegin-cifar-cnn"}, "model", ""),
    ({"attack-start-round": 10, "attack-end-round": 5}, "attack-end-round", "attack-start-round"),
    ({"malicious-availability": 1.2}, "malicious-availability", "[0, 1]"),
    ({"injection-rate": 0}, "injection-rate", "(0, 1]"),
    ({"defense": "krum", "clients-per-round": 3, "num-clients": 3, "num-byzantine": 1}, "num-byzantine", "Krum"),
    ({"defense": "bulyan", "clients-per-round": 6, "num-clients": 6, "num-byzantine": 1}, "num-byzantine", "4 * num-byzantine + 3"),
    ({"ndc-bound": "big"}, "ndc-bound", "median"),
    ({"trim-beta": 0.5}, "trim-beta", "[0, 0.5)"),
    ({"malicious-from-source-holders": True}, "malicious-from-source-holders", "source-class"),
]


@pytest.mark.parametrize("values,key,hint", BAD)
def test_bad_values_name_the_key(values, key, hint):
    with pytest.raises(C.ConfigError) as err:
        C.resolve(values)
    assert err.value.key == key
    assert key in str(err.value) and hint in str(err.value)


def test_cli_bad_config_exits_2_before_loading_data(capsys, monkeypatch):
    import fl_poison.data.datasets as ds

    def boom(*a, **k):
        raise AssertionError("data must not be loaded for an invalid config")

    monkeypatch.setattr(ds, "load_dataset", boom)
    rc = main(["run", "--set", "malicious-fraction=2", "--set", "dataset=mnist"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "malicious-fraction" in err and "[0, 1]" in err and "Traceback" not in err


def test_cli_missing_data_file_names_it(tmp_path, capsys):
    rc = main(["run", "--set", "dataset=fashion-mnist", "--set", f"data-dir={tmp_path}", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "train-images-idx3-ubyte" in err and "data-dir" in err


def test_experiment_toml_with_unknown_key(tmp_path, capsys):
    f = tmp_path / "exp.toml"
    f.write_text('[config]\ndataset = "digits"\nnum-clint = 3\n')
    assert main(["run", "--config", str(f)]) == 2
    assert "num-clint" in capsys.readouterr().err


def test_malicious_from_source_holders_impossible(tmp_path, capsys):
    # extreme split of digits over 10 clients: exactly one client holds class 7
    rc = main(["run", "--set", "partition=extreme", "--set", "attack=label-flip", "--set", "source-class=7",
               "--set", "target-class=1", "--set", "num-malicious=3", "--set", "malicious-from-source-holders=true",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "malicious-from-source-holders" in err


def test_dropout_only_for_models_that_have_it():
    assert C.resolve({"dataset": "mnist", "dropout": 0.5})["dropout"] == 0.5
    with pytest.raises(C.ConfigError) as err:
        C.resolve({"dataset": "digits", "dropout": 0.5})
    assert err.value.key == "dropout" and "mlp" in str(err.value)


def test_progress_plain_lines_when_not_a_tty():
    import io

    from fl_poison.cli import Progress

    buf = io.StringIO()
    p = Progress(buf)
    cfg = C.resolve({"num-rounds": 4})
    p({"round": 2, "accuracy": 0.5, "loss": 1.0}, cfg, 10.0)
    out = buf.getvalue()
    assert out.endswith("\n") and "\r" not in out
    assert "round   2/4" in out and "eta   10.0s" in out  # 10 s for 2 rounds -> 10 s for the 2 left


def test_progress_with_a_source_class_but_no_fixed_target():
    """ADA fixes only the source: the progress line shows src-acc and leaves ASR out instead of crashing."""
    import io

    from fl_poison.cli import Progress

    buf = io.StringIO()
    Progress(buf)({"round": 1, "accuracy": 0.5, "loss": 1.0, "source_accuracy": 0.25,
                   "attack_success_rate": None}, C.resolve({"num-rounds": 2}), 1.0)
    assert "src-acc 0.250" in buf.getvalue() and "asr" not in buf.getvalue()


def test_attack_end_round_zero_is_refused_by_its_own_check():
    """The check and the message come from one declaration: 0 is neither >= 1 nor -1."""
    with pytest.raises(C.ConfigError) as err:
        C.resolve({"attack-end-round": 0})
    assert err.value.key == "attack-end-round" and err.value.allowed == "an integer >= 1, or -1"
    assert C.resolve({"attack-end-round": -1})["attack-end-round"] == -1
    assert C.resolve({"attack-end-round": 1})["attack-end-round"] == 1


def _constrained_keys() -> list:
    return [k for k in C.SCHEMA if k.constraint is not None]


@pytest.mark.parametrize("key", _constrained_keys(), ids=lambda k: k.name)
def test_each_bounded_key_refuses_just_outside_its_bound_and_accepts_on_it(key):
    """Cases derived from each key's one declaration (its Interval), core and plug-in keys alike.

    A value just beyond a bound is refused by resolve() with a message that
    names the key and the bound; a value on a closed bound (or the -1
    sentinel) passes the key's own check -- whatever a relation between keys
    then says about it.
    """
    c = key.constraint
    assert key.check is c and key.allowed == c.allowed
    edges = c.edges()
    assert any(not ok for _, ok in edges), "a bounded key has a value it refuses"
    for value, ok in edges:
        assert key.check(value) is ok, (key.name, value)
        try:
            C.resolve({key.name: value})
        except C.ConfigError as err:
            own = err.key == key.name and err.allowed == c.allowed
            assert own is not ok, (key.name, value, str(err))
            if own:
                assert f"'{key.name}'" in str(err)
                for bound in (c.low, c.high):
                    if bound is not None:
                        assert C._num(bound) in str(err), (key.name, str(err))
        else:
            assert ok, (key.name, value)


def test_every_numeric_key_with_a_check_declares_its_bounds_once():
    """A numeric key checks through an Interval, so no hand-written lambda can disagree with its message.

    The exceptions are not intervals: a nonzero factor, and keys whose value is a number or a word.
    """
    not_intervals = {"scale-factor"}
    loose = [k.name for k in C.SCHEMA if k.type in (int, float) and k.check is not None
             and k.constraint is None and k.name not in not_intervals]
    assert loose == []


def test_a_key_cannot_declare_a_constraint_and_its_own_message():
    with pytest.raises(TypeError, match="declare one"):
        C.Key("x", int, 1, "x", constraint=C.at_least(1), allowed="an integer >= 2")
    with pytest.raises(TypeError, match="declare one"):
        C.Key("x", int, 1, "x", constraint=C.at_least(1), check=lambda v: v >= 2)


@pytest.mark.parametrize("interval, text", [
    (C.at_least(1), "an integer >= 1"),
    (C.at_least_or_off(1, " for all"), "an integer >= 1, or -1 for all"),
    (C.above(0), "a number > 0"),
    (C.Interval(float, 0, 0.5), "a number in [0, 0.5)"),
    (C.Interval(float, 0, 1, closed="right", off=-1), "a number in (0, 1], or -1"),
    (C.at_least(1, also="and <= num-clients"), "an integer >= 1 and <= num-clients"),
])
def test_an_interval_states_what_it_checks(interval, text):
    assert interval.allowed == text
    with pytest.raises(ValueError, match=r"^x must be " + __import__("re").escape(text) + r", got 'a'$"):
        interval.validate("a", "x")
    assert not interval(float("inf")) and not interval(float("nan")) and not interval(True)


FAST = ["--set", "num-clients=3", "--set", "clients-per-round=3", "--set", "num-rounds=1", "--set", "figures=false",
        "--set", "received-eval-samples=0", "--set", "engine-workers=1"]


FLIP = {"attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 1}


def config_warnings(cfg, given):
    from fl_poison.config import config_warnings as warnings_of

    return warnings_of(cfg, given)


def _warnings(**values) -> list[str]:
    values = {k.replace("_", "-"): v for k, v in values.items()}
    return config_warnings(resolve(values), values)


def test_a_key_of_a_defense_that_is_not_selected_is_named():
    assert _warnings(defense="median", trim_beta=0.2) == ["'trim-beta' has no effect with defense=median"]
    assert _warnings(defense="median", num_byzantine=1) == ["'num-byzantine' has no effect with defense=median"]


def test_a_key_of_an_attack_that_is_not_selected_is_named():
    assert config_warnings(resolve({**FLIP, "scale-factor": 3.0}), {*FLIP, "scale-factor"}) == \
        ["'scale-factor' has no effect with attack=label-flip"]


def test_keys_of_the_selected_plugins_and_keys_left_alone_say_nothing():
    assert _warnings(defense="trimmed-mean", trim_beta=0.2) == []
    assert _warnings(defense="bulyan", num_byzantine=0, num_clients=10, clients_per_round=10) == []
    assert config_warnings(resolve({"defense": "median"}), {"defense"}) == []  # trim-beta only at its default


def test_an_inert_key_never_stops_resolution_so_sweeps_run_on():
    assert resolve({"defense": "median", "trim-beta": 0.2})["trim-beta"] == 0.2


def test_the_cli_prints_the_warning_once_and_runs(tmp_path, capsys):
    assert main(["run", *FAST, "--set", "defense=median", "--set", "trim-beta=0.2", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("fl-poison: warning: 'trim-beta' has no effect with defense=median") == 1


@pytest.mark.parametrize("keep, f, warned", [(10, -1, True), (-1, 0, True), (-1, -1, False), (9, -1, False)])
def test_multi_krum_keeping_every_update_warns_that_it_is_fedavg(keep, f, warned):
    w = _warnings(defense="multi-krum", multi_krum_keep=keep, num_byzantine=f)
    assert bool(w) == warned
    if warned:
        assert "plain FedAvg" in w[0] and "keeps 10 of 10" in w[0]


@pytest.mark.parametrize("defense", ["pca", "lfighter"])
def test_filters_that_need_three_clients_refuse_fewer_per_round(defense):
    with pytest.raises(ConfigError) as err:
        resolve({"defense": defense, "num-clients": 5, "clients-per-round": 2})
    assert err.value.key == "clients-per-round" and "at least 3" in err.value.allowed
    resolve({"defense": defense, "num-clients": 5, "clients-per-round": 3})


def test_a_round_left_with_fewer_than_three_valid_replies_is_logged(server_identity, caplog):
    g = [np.zeros((2, 3), np.float32), np.zeros(2, np.float32)]
    s = D.LFighter()
    s._global = array_record(g)
    replies = [make_reply([a + i for a in g], 10, i) for i in (1, 2)]
    replies.append(make_reply([np.full_like(g[0], np.nan), g[1]], 10, 3))
    with caplog.at_level(logging.WARNING, "fl_poison.strategy"):
        s.aggregate_train(1, replies)
    assert "only 2 valid update(s); lfighter needs 3 to filter, so it keeps everyone" in caplog.text
    assert s.last_report.kept == [True, True]


def test_dataset_and_model_choices_are_their_registries():
    """No second list in config.py: a data set or model added to its registry is a choice of its key."""
    from fl_poison.data.datasets import DATASETS
    from fl_poison.models import MODEL_NAMES

    assert C.KEYS["dataset"].choices == tuple(DATASETS)
    assert C.KEYS["model"].choices == ("auto", *MODEL_NAMES)
    assert not hasattr(C, "DATASET_CHOICES") and not hasattr(C, "MODEL_CHOICES")
