"""Sweeps: replicate axes, stable run ids, validation of every point, resume after a crash."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from fl_poison.experiment_file import expand, load_experiment
from fl_poison.sweep import GridErrors, parse_resources, plan, run_id, run_state, run_sweep, write_manifest

REPO = Path(__file__).parents[2]
TINY = """[config]
dataset = "digits"
num-clients = 3
clients-per-round = 3
num-rounds = 1
local-epochs = 1
attack = "label-flip"
source-class = 7
target-class = 1
num-malicious = 1
figures = false
seed = 4
[sweep.a]
defense = ["fedavg", "median"]
{extra}
[paper]
finding = "test"
"""


def tiny(tmp_path, extra="") -> Path:
    f = tmp_path / "tiny.toml"
    f.write_text(TINY.format(extra=extra))
    return f


def test_repeats_add_a_fastest_seed_axis_from_the_base_seed():
    pts = expand({"defense": ["fedavg", "median"], "repeats": 2}, base_seed=5)
    assert pts == [{"defense": "fedavg", "seed": 5}, {"defense": "fedavg", "seed": 6},
                   {"defense": "median", "seed": 5}, {"defense": "median", "seed": 6}]


def test_seeds_cross_with_zipped_axes():
    pts = expand({"source-class,target-class": [[7, 1], [4, 9]], "seeds": [3, 0]})
    assert pts == [{"source-class": 7, "target-class": 1, "seed": 3}, {"source-class": 7, "target-class": 1, "seed": 0},
                   {"source-class": 4, "target-class": 9, "seed": 3}, {"source-class": 4, "target-class": 9, "seed": 0}]


@pytest.mark.parametrize("grid", [{"repeats": 0}, {"repeats": "2"}, {"seeds": []}, {"seeds": [1, 1]},
                                  {"seeds": [-1]}, {"seeds": [0], "repeats": 2}, {"seed": [0, 1], "repeats": 2}])
def test_bad_replicate_entries_are_config_errors(grid):
    with pytest.raises(ConfigError):
        expand(grid)


def test_experiment_files_accept_seeds_and_repeats(tmp_path):
    exp = load_experiment(tiny(tmp_path, "repeats = 3"))
    assert len(plan(exp)) == 6
    assert sorted({r.cfg["seed"] for r in plan(exp)}) == [4, 5, 6]


def test_run_id_ignores_output_location_and_key_order_but_not_settings():
    a = resolve({"dataset": "digits", "seed": 1, "defense": "median"})
    b = resolve({"defense": "median", "seed": 1, "dataset": "digits", "run-name": "x", "out-dir": "elsewhere"})
    assert run_id(a) == run_id(b) and len(run_id(a)) == 16
    assert run_id(a) != run_id(resolve({"dataset": "digits", "seed": 2, "defense": "median"}))


@pytest.mark.slow
def test_grid_points_that_differ_only_in_a_plug_in_key_are_two_runs(tmp_path):
    """``scale-bound`` belongs to the train-and-scale attack, not to the core keys: it is hashed all the same."""
    from fl_poison.config import schema

    assert schema().owners["scale-bound"] != ("core",)
    extra = 'attack = ["train-and-scale"]\nscale-bound = ["auto", "2.0"]'
    runs = plan(load_experiment(tiny(tmp_path, extra)))
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4  # 2 defenses x 2 bounds
    by_bound = {}
    for r in runs:
        by_bound.setdefault(r.cfg["defense"], set()).add(r.run_id)
    assert all(len(ids) == 2 for ids in by_bound.values())


def _grid_size(grid: dict) -> int:
    """Points of one [sweep.NAME] table, counted from the TOML: each axis's list, times seeds or repeats."""
    n = 1
    for axis, values in grid.items():
        n *= values if axis == "repeats" else len(values)
    return n


def test_ada_mnist_plan_has_one_run_per_distinct_grid_point():
    import tomllib

    path = REPO / "experiments" / "ada_mnist.toml"
    sweeps = tomllib.loads(path.read_text())["sweep"]
    points = sum(_grid_size(g) for g in sweeps.values())
    exp = load_experiment(path)
    distinct = {tuple(sorted((k, str(v)) for k, v in resolve(exp.config, c).items() if k not in ("run-name", "out-dir")))
                for name in exp.sweeps for c in expand(exp.sweeps[name], int(resolve(exp.config)["seed"]))}
    runs = plan(exp)
    assert len(distinct) == points  # no two grid points of the file ask for the same run
    assert len(runs) == len({r.run_id for r in runs}) == points
    assert sum(len(r.points) for r in runs) == points


def test_run_id_is_the_same_in_another_process():
    code = ("from fl_poison.config import resolve; from fl_poison.sweep import run_id;"
            "print(run_id(resolve({'dataset': 'digits', 'seed': 1})))")
    env = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == run_id(resolve({"dataset": "digits", "seed": 1}))


def test_duplicate_points_share_one_run_and_the_manifest_lists_both(tmp_path):
    f = tiny(tmp_path, '[sweep.b]\ndefense = ["median", "krum"]')
    exp = load_experiment(f)
    runs = plan(exp)
    assert len(runs) == 3  # median appears in both grids: one run
    assert {len(r.points) for r in runs} == {1, 2}
    man = json.loads(write_manifest(tmp_path / "out", f, runs).read_text())
    assert len(man["points"]) == 4 and {p["run"] for p in man["points"]} == {r.run_id for r in runs}


def test_every_bad_grid_point_is_reported_at_once_with_exit_2(tmp_path, capsys):
    f = tiny(tmp_path, 'malicious-fraction = [0.2, 1.5]\n"source-class,target-class" = [[7, 1], [12, 1]]\n'
                       "num-malicious = [-1]\n")
    with pytest.raises(GridErrors) as err:
        plan(load_experiment(f))
    assert len(err.value.errors) == 2 * 3  # 2 defenses x (1.5 with a good pair, 0.2 with class 12, 1.5 with 12)
    out = tmp_path / "out"
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 2
    msg = capsys.readouterr().err
    assert "6 invalid grid point(s)" in msg and '"malicious-fraction": 1.5' in msg and '"source-class": 12' in msg
    assert not (out / "runs").exists()  # nothing ran


def test_unknown_sweep_name_and_bad_resources_exit_2(tmp_path):
    f = tiny(tmp_path)
    assert main(["sweep", str(f), "--sweep", "nope", "--local", "--out", str(tmp_path / "o")]) == 2
    assert main(["sweep", str(f), "--resources", "tpus=1", "--out", str(tmp_path / "o")]) == 2
    assert parse_resources("cpus=2,gpus=0.25") == (2.0, 0.25)


def test_resume_redoes_a_half_written_run_keeps_failed_ones_until_retry(tmp_path, monkeypatch):
    exp = load_experiment(tiny(tmp_path, "repeats = 2"))
    runs = plan(exp)
    out = tmp_path / "out"
    runs_dir = out / "runs"
    half, failed = runs[0], runs[1]
    (runs_dir / half.run_id).mkdir(parents=True)
    (runs_dir / half.run_id / "rounds.csv").write_text("round,accuracy\n0,0.1\n")  # a killed worker's leftovers
    (runs_dir / failed.run_id).mkdir()
    (runs_dir / failed.run_id / "error.json").write_text('{"error": "boom"}')
    assert run_state(runs_dir / half.run_id) == "partial" and run_state(runs_dir / failed.run_id) == "failed"

    res = run_sweep(runs, out, engine="local")
    assert (res.skipped, len(res.complete), res.failed, res.failed_before) == (0, 3, [], [failed.run_id])
    assert run_state(runs_dir / half.run_id) == "complete"
    assert "tp" in (runs_dir / half.run_id / "rounds.csv").read_text()  # rewritten, not the leftover
    assert run_state(runs_dir / failed.run_id) == "failed"

    again = run_sweep(runs, out, engine="local")  # nothing finished is run twice
    assert (again.skipped, again.complete, again.all_failed) == (3, [], [failed.run_id])
    retried = run_sweep(runs, out, engine="local", retry_failed=True)
    assert retried.complete == [failed.run_id] and not (runs_dir / failed.run_id / "error.json").exists()
    assert sorted(p.name for p in runs_dir.iterdir()) == sorted(r.run_id for r in runs)


def test_a_raising_run_keeps_its_error_and_traceback(tmp_path, monkeypatch):
    import fl_poison.app.experiment as experiment

    def boom(*a, **k):
        raise RuntimeError("diverged")

    monkeypatch.setattr(experiment, "run_experiment", boom)
    runs = plan(load_experiment(tiny(tmp_path)))
    res = run_sweep(runs[:1], tmp_path / "out", engine="local")
    err = json.loads((tmp_path / "out" / "runs" / runs[0].run_id / "error.json").read_text())
    assert res.failed == [runs[0].run_id] and err["error"] == "RuntimeError: diverged"
    assert "Traceback" in err["traceback"] and "boom" in err["traceback"]


def test_a_sweep_task_runs_the_batched_engine_where_engine_picks_it_with_the_serial_numbers(tmp_path, monkeypatch):
    """``engine`` is not in the run id, so a batched task must give the serial task's numbers; ``parallel`` and
    ``auto`` on the CPU run serially inside a task (a task never forks a pool), and a refused ``engine=batched``
    is that run's error, naming the key."""
    exp = load_experiment(tiny(tmp_path))
    summaries = {}
    for engine in ("serial", "batched", "parallel", "auto"):
        runs = plan(exp, overrides={"engine": engine})
        assert [r.run_id for r in runs] == [r.run_id for r in plan(exp)]
        res = run_sweep(runs[:1], tmp_path / engine, engine="local")
        assert res.complete == [runs[0].run_id]
        summaries[engine] = json.loads((tmp_path / engine / "runs" / runs[0].run_id / "summary.json").read_text())
    assert {e: s["engine"] for e, s in summaries.items()} == {
        "serial": "InProcessGrid", "batched": "BatchedGrid", "parallel": "InProcessGrid", "auto": "InProcessGrid"}
    for key in ("accuracy", "loss"):
        assert summaries["batched"][key] == pytest.approx(summaries["serial"][key], abs=1e-4)
    from fl_poison.engine import memory

    monkeypatch.setattr(memory, "budget_bytes", lambda mb, device: 1)  # a device with no room for one client
    refused = plan(exp, overrides={"engine": "batched"})
    res = run_sweep(refused[:1], tmp_path / "refused", engine="local")
    err = json.loads((tmp_path / "refused" / "runs" / refused[0].run_id / "error.json").read_text())
    assert res.failed == [refused[0].run_id] and "'engine-memory-mb'" in err["error"] and "batched" in err["error"]
    assert not (tmp_path / "refused" / "runs" / refused[0].run_id / "rounds.csv").exists()


@pytest.mark.slow
def test_ray_tasks_give_the_same_runs_as_the_local_engine(tmp_path):
    """A real local Ray with one CPU: same run ids, same numbers as in-process (fixed seeds)."""
    pytest.importorskip("ray")
    runs = plan(load_experiment(tiny(tmp_path)))
    local = run_sweep(runs, tmp_path / "local", engine="local")
    ray_res = run_sweep(runs, tmp_path / "ray", engine="ray", max_parallel=1)
    assert sorted(local.complete) == sorted(ray_res.complete) == sorted(r.run_id for r in runs)
    for r in runs:
        a = json.loads((tmp_path / "local" / "runs" / r.run_id / "summary.json").read_text())
        b = json.loads((tmp_path / "ray" / "runs" / r.run_id / "summary.json").read_text())
        assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]
