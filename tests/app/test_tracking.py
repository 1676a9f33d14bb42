"""tracking = tensorboard | mlflow: the config and rounds.csv's metrics in a local store under the run directory."""

from __future__ import annotations

import json
import os
import sys

import pytest

from fl_poison import tracking
from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from fl_poison.results import read_rounds, read_summary

RUN = ["--set", "dataset=digits", "--set", "num-clients=4", "--set", "clients-per-round=4", "--set", "num-rounds=2",
       "--set", "attack=label-flip", "--set", "source-class=7", "--set", "target-class=1", "--set", "num-malicious=1",
       "--set", "defense=median", "--set", "figures=false", "--set", "engine-workers=1", "--set", "run-name=t"]


def _same_as_rounds_csv(run_dir, logged: dict[str, dict[int, float]]) -> None:
    """Every numeric rounds.csv cell was logged under its column at its round (float32 precision)."""
    rows = read_rounds(run_dir)
    assert [r["round"] for r in rows] == [0, 1, 2]
    checked = 0
    for r in rows:
        for col, v in r.items():
            if col == "round" or v is None:
                continue
            assert logged[col][int(r["round"])] == pytest.approx(v, rel=1e-6, abs=1e-6), (col, r["round"])
            checked += 1
    assert checked > 60
    assert {"accuracy", "loss", "attack_success_rate", "ata", "tp", "num_flagged", "elapsed"} <= set(logged)


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_config_and_every_rounds_csv_value(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["run", *RUN, "--set", "tracking=tensorboard", "--out", str(tmp_path)]) == 0
    run = tmp_path / "t"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    logged = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
    _same_as_rounds_csv(run, logged)
    # the config as a text summary (a table of every key), and the final status
    config_text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| tracking | `\"tensorboard\"` |" in config_text and "| defense | `\"median\"` |" in config_text
    assert acc.Tensors("status/text_summary")[-1].tensor_proto.string_val[0].decode() == "complete"
    assert read_summary(run)["config"]["tracking"] == "tensorboard"


@pytest.mark.slow
def test_mlflow_file_store_holds_the_config_and_every_rounds_csv_value(tmp_path, monkeypatch):
    """Only where mlflow is installed (it is not in the dev extra: large); skipped otherwise."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert main(["run", *RUN, "--set", "tracking=mlflow", "--out", str(tmp_path)]) == 0
    run = tmp_path / "t"
    assert "MLFLOW_TRACKING_URI" not in os.environ  # set only while the run was open
    assert os.environ.get("MLFLOW_ALLOW_FILE_STORE") is None
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only when allowed
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("fl-poison").experiment_id])
    assert found.info.run_name == "t" and found.info.status == "FINISHED"
    assert json.loads(found.data.params["num-rounds"]) == 2 and found.data.params["defense"] == "median"
    logged = {k: {m.step: m.value for m in client.get_metric_history(found.info.run_id, k)}
              for k in found.data.metrics}
    _same_as_rounds_csv(run, logged)


@pytest.mark.parametrize("name, extra", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_tracker_package_is_one_config_line_before_anything_runs(tmp_path, capsys, monkeypatch,
                                                                         name, extra):
    monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError, as if not installed
    with pytest.raises(ConfigError, match=f"tracking.*pip install 'fl-poison\\[{extra}\\]'"):
        tracking.check_installed(resolve({"tracking": name}))
    assert main(["run", *RUN, "--set", f"tracking={name}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fl-poison: error: invalid value for 'tracking': '{name}' — none, or install the {name} "
                   f"package: pip install 'fl-poison[{extra}]'"]
    assert not (tmp_path / "t").exists()  # refused before the run directory or any data


def test_tracking_none_writes_no_store_and_is_not_part_of_the_run_id(tmp_path):
    from fl_poison.sweep import run_id

    assert resolve({})["tracking"] == "none"
    with pytest.raises(ConfigError, match="one of none, tensorboard, mlflow"):
        resolve({"tracking": "wandb"})
    tracking.check_installed(resolve({}))  # nothing to import
    assert run_id(resolve({"tracking": "mlflow"})) == run_id(resolve({}))  # how a run is logged, not what it is
    t = tracking.open_tracker(resolve({}), tmp_path)
    t.log_round(1, {"accuracy": 0.5})
    t.close("complete")
    assert list(tmp_path.iterdir()) == []


def test_scalars_are_the_finite_numbers_of_a_row():
    row = {"round": 3, "accuracy": 0.5, "updated": 1, "flag": True, "source_accuracy": None, "loss": float("nan"),
           "per_class_recall": [0.1], "name": "x", "f1": 1}
    assert tracking.scalars(row) == {"accuracy": 0.5, "updated": 1.0, "f1": 1.0}


def test_a_sweep_plan_lists_every_point_whose_tracker_is_missing(tmp_path, monkeypatch):
    from fl_poison.experiment_file import load_experiment
    from fl_poison.sweep import GridErrors, plan

    monkeypatch.setitem(sys.modules, "mlflow", None)
    exp = tmp_path / "e.toml"
    exp.write_text('[config]\ndataset = "digits"\n\n[sweep.g]\ntracking = ["none", "mlflow"]\nseeds = [0, 1]\n')
    with pytest.raises(GridErrors) as err:
        plan(load_experiment(exp))
    assert [(c["tracking"], c["seed"]) for _, c, _ in err.value.errors] == [("mlflow", 0), ("mlflow", 1)]
    assert all("pip install 'fl-poison[mlflow]'" in m for _, _, m in err.value.errors)
