"""The fl-poison command (fl_poison/cli.py): bad input is one line and exit 2, warnings, compare's refusals, FL_POISON_DATA."""

from __future__ import annotations

import json
from pathlib import Path
import pytest


FAST = ["--set", "num-clients=3", "--set", "clients-per-round=3", "--set", "num-rounds=1", "--set", "figures=false",
        "--set", "received-eval-samples=0"]


@pytest.mark.parametrize("args,needle", [
    (["--set", "lr=inf"], "'lr'"),
    (["--set", "lr=nan"], "'lr'"),
    (["--set", "momentum=-inf"], "'momentum'"),
    (["--set", "run-name=../escape"], "'run-name'"),
    (["--set", "run-name=a/b"], "'run-name'"),
    (["--out", ""], "'--out'"),
    (["--set", "model=resnet18"], "16x16"),
    (["--set", "defense=krum", "--set", "num-clients=2", "--set", "clients-per-round=2"], "at least 3"),
    (["--set", "partition=dirichlet", "--set", "dirichlet-alpha=1e-6"], "'dirichlet-alpha'"),
    (["--set", "num-clients=2000", "--set", "clients-per-round=2"], "'num-clients'"),
    (["--set", "partition=extreme", "--set", "train-samples=12"], "'train-samples'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    from fl_poison.cli import main

    if "--out" not in args:
        args = [*args, "--out", str(tmp_path)]
    assert main(["run", "--set", "num-rounds=1", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_attack_that_can_never_act_warns(tmp_path, capsys):
    from fl_poison.cli import main

    assert main(["run", *FAST, "--set", "attack=untargeted-flip", "--set", "attack-start-round=5",
                 "--set", "malicious-fraction=0.4", "--out", str(tmp_path)]) == 0
    assert "attack never acts" in capsys.readouterr().err
    assert main(["run", *FAST, "--set", "attack=untargeted-flip", "--set", "run-name=n",
                 "--out", str(tmp_path)]) == 0
    assert "no client is malicious" in capsys.readouterr().err


def test_train_samples_above_the_data_warns(tmp_path, caplog, monkeypatch):
    from fl_poison import federation
    from fl_poison.cli import main

    monkeypatch.setattr(federation, "_cache", {})  # the warning comes when the split is built, once per process

    assert main(["run", *FAST, "--set", "train-samples=100000", "--out", str(tmp_path)]) == 0
    assert "using all" in caplog.text


def test_compare_refuses_non_runs_and_different_datasets(tmp_path, capsys):
    from fl_poison.cli import main

    assert main(["compare", str(tmp_path), str(tmp_path / "nope")]) == 2
    assert "not a finished run directory" in capsys.readouterr().err
    for name, ds in (("a", "digits"), ("b", "mnist")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"config": {"dataset": ds}}))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "different data sets" in capsys.readouterr().err


def test_fl_poison_data_replaces_the_default_data_dir(monkeypatch, capsys, shared_data):
    from fl_poison.cli import main
    from fl_poison.data.datasets import resolve_data_dir

    monkeypatch.setenv("FL_POISON_DATA", str(shared_data))
    assert resolve_data_dir("data") == shared_data
    assert resolve_data_dir("elsewhere") == Path("elsewhere")
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "from $FL_POISON_DATA" in out
    assert [l for l in out.splitlines() if l.startswith("mnist ")][0].count("found in") == 1
