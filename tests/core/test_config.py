"""Config validation: every bad-input case names the key and fails before any data is loaded."""

import tomllib
from pathlib import Path

import pytest

from fl_poison import config as C
from fl_poison.cli import main


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
    ({"defense": "bulyan", "clients-per-round": 6, "num-clients": 6, "num-byzantine": 1}, "num-byzantine", "4*f + 3"),
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


def test_every_integer_or_minus_one_key_checks_what_its_message_says():
    """A key whose message says "an integer >= N, or -1" accepts -1 and N, and refuses N - 1 and -2."""
    import re

    found = 0
    for key in C.SCHEMA:
        m = re.match(r"an integer >= (\d+), or -1", key.allowed)
        if not m or key.check is None:
            continue
        found += 1
        lo = int(m.group(1))
        assert key.check(-1) and key.check(lo) and key.check(lo + 5), key.name
        assert not key.check(-2), key.name
        if lo - 1 != -1:
            assert not key.check(lo - 1), key.name
    assert found >= 5
