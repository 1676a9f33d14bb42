"""`fl-poison report` on hand-made run directories: numbers checked by hand, every figure written, bad
runs and options refused or named before anything is written."""

import csv
import json
import math
from pathlib import Path

import pytest

from fl_poison.cli import main
from fl_poison.report import aggregate, load_runs, make_report, varied_keys

BASE = {"dataset": "digits", "partition": "iid", "attack": "label-flip", "num-rounds": 4, "attack-start-round": 2,
        "attack-end-round": 3, "num-malicious": -1, "run-name": "", "out-dir": "x"}


def fake_run(root: Path, name: str, defense: str, ratio: float, seed: int, src: float, f1=None, cv=0.1) -> None:
    d = root / "runs" / name
    d.mkdir(parents=True)
    cfg = {**BASE, "defense": defense, "malicious-fraction": ratio, "seed": seed, "run-name": name}
    summary = {"config": cfg, "last10": {"accuracy": 0.9, "loss": 0.3, "source_accuracy": src,
                                         "attack_success_rate": 1 - src},
               "source_accuracy_cv": cv, "wall_seconds": 10.0 + seed,
               "detection": {"precision": f1, "recall": f1, "f1": f1}}
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "rounds.csv").write_text("round,accuracy,source_accuracy\n0,0.1,\n"
                                  + "".join(f"{r},0.9,{src + 0.01 * r}\n" for r in range(1, 5)))


@pytest.fixture
def sweep_dir(tmp_path):
    i = 0
    for defense, base in (("fedavg", 0.5), ("lfighter", 0.9)):
        for ratio in (0.1, 0.3):
            for seed in (0, 1):
                i += 1
                fake_run(tmp_path, f"r{i}", defense, ratio, seed, src=base - ratio + 0.1 * seed,
                         f1=None if defense == "fedavg" else 0.8 + 0.1 * seed)
    (tmp_path / "runs" / "half").mkdir()  # an unfinished run: no summary.json, ignored
    return tmp_path


def test_varied_keys_leave_out_seed_and_run_name(sweep_dir):
    assert varied_keys(load_runs(sweep_dir)) == ["defense", "malicious-fraction"]


def test_a_key_an_older_run_lacks_counts_as_its_default_and_each_key_is_one_column(sweep_dir):
    from fl_poison.config import schema

    default = schema().defaults["alie-z"]
    runs = load_runs(sweep_dir)
    for r in runs[:4]:  # newer runs name the plug-in key at its default; the older ones predate it
        r["config"] = {**r["config"], "alie-z": default, "noise-std": schema().defaults["noise-std"]}
    assert varied_keys(runs) == ["defense", "malicious-fraction"]
    _, _, rows = aggregate(runs)
    assert [r["n"] for r in rows] == [2, 2, 2, 2]
    runs[0]["config"]["alie-z"] = default + 1.0  # a real difference is still a column, once
    assert varied_keys(runs) == ["defense", "malicious-fraction", "alie-z"]


def test_mean_and_std_over_seeds_by_hand(sweep_dir):
    by, names, rows = aggregate(load_runs(sweep_dir))
    assert [(r["defense"], r["malicious-fraction"], r["n"]) for r in rows] == [
        ("fedavg", 0.1, 2), ("fedavg", 0.3, 2), ("lfighter", 0.1, 2), ("lfighter", 0.3, 2)]
    lf = rows[2]
    assert lf["source_accuracy"][0] == pytest.approx(0.85)  # (0.8 + 0.9) / 2
    assert lf["source_accuracy"][1] == pytest.approx(0.1 / math.sqrt(2))  # sample std of {0.8, 0.9}
    assert lf["asr"][0] == pytest.approx(0.15) and lf["f1"][0] == pytest.approx(0.85)
    assert rows[0]["f1"] is None and lf["wall_seconds"][0] == pytest.approx(10.5)
    assert "ata" not in names and "mta" not in names  # absent from every summary -> no column


@pytest.mark.slow
def test_tables_and_figures_are_written(sweep_dir):
    r = make_report(sweep_dir)
    out = sweep_dir / "report"
    names = {p.name for p in r["files"]}
    for m in ("source_accuracy", "asr", "accuracy", "f1"):
        assert {f"vs_ratio_{m}.png", f"heatmap_{m}.png"} <= names
    assert {"table.csv", "table.md", "cv_source_accuracy.md", "rounds_source_accuracy.png"} <= names
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert len(rows) == 4 and float(rows[3]["source_accuracy_mean"]) == pytest.approx(0.65)
    md = (out / "table.md").read_text()
    assert "| lfighter | 0.1 | 2 |" in md and "0.850 ± 0.071" in md
    cv = (out / "cv_source_accuracy.md").read_text()
    assert "malicious-fraction=0.3" in cv and "0.100 ± 0.000" in cv


def test_by_and_metric_options_and_partial_sweeps(sweep_dir):
    by, names, rows = aggregate(load_runs(sweep_dir), by=["defense"], metrics=["asr"])
    assert names == ["asr"] and [r["n"] for r in rows] == [4, 4]
    with pytest.raises(ValueError):
        aggregate(load_runs(sweep_dir), metrics=["nope"])
    (sweep_dir / "runs" / "r8" / "summary.json").unlink()  # a sweep still running
    rows = aggregate(load_runs(sweep_dir))[2]
    assert rows[-1]["n"] == 1 and rows[-1]["source_accuracy"][1] == 0.0


def test_cli_report(sweep_dir, tmp_path, capsys):
    assert main(["report", str(sweep_dir), "--out", str(tmp_path / "rep"), "--metric", "source_accuracy"]) == 0
    assert "| defense | malicious-fraction | n | source_accuracy |" in capsys.readouterr().out
    assert (tmp_path / "rep" / "vs_ratio_source_accuracy.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2


def test_means_do_not_depend_on_the_order_runs_are_listed_in():
    """Run ids hash the whole config: a new key renames every run directory. The table must not change."""
    from fl_poison.report import aggregate

    vals = [0.02834747652200631, 0.8357651039198697, 0.43276706790505337]  # mean differs by order
    runs = [{"config": {"defense": "x", "seed": i}, "summary": {"last10": {"accuracy": v}, "accuracy": v}}
            for i, v in enumerate(vals)]
    _, _, forward = aggregate(runs, by=["defense"], metrics=["accuracy"])
    _, _, backward = aggregate(runs[::-1], by=["defense"], metrics=["accuracy"])
    assert forward[0]["accuracy"] == backward[0]["accuracy"]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_runs_with_unreadable_files_are_skipped_and_named(sweep_dir, tmp_path, capsys):
    runs = sweep_dir / "runs"
    (runs / "r1" / "summary.json").write_text((runs / "r1" / "summary.json").read_text()[:30])
    (runs / "r2" / "summary.json").write_text("[1, 2]")
    (runs / "r3" / "rounds.csv").write_text("round,accuracy,source_accuracy\n0,0.1,\n1,x,0.4\n")
    assert main(["report", str(sweep_dir), "--out", str(tmp_path / "rep"), "--metric", "source_accuracy"]) == 0
    err = capsys.readouterr().err
    assert "skipped run r1: summary.json: not valid JSON" in err
    assert "skipped run r2: summary.json: a JSON object expected, got a list" in err
    assert "skipped run r3: rounds.csv: line 3, column 'accuracy': 'x' is not a number" in err
    rows = list(csv.DictReader((tmp_path / "rep" / "table.csv").open()))
    # r1, r2 are fedavg at 0.1 (its row goes), r3 one of fedavg at 0.3
    assert [(r["defense"], r["malicious-fraction"], int(r["n"])) for r in rows] == [
        ("fedavg", "0.3", 1), ("lfighter", "0.1", 2), ("lfighter", "0.3", 2)]


def test_strict_refuses_unreadable_runs_and_writes_nothing(sweep_dir, capsys):
    (sweep_dir / "runs" / "r5" / "summary.json").write_text('{"config": ')
    assert main(["report", str(sweep_dir), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "nothing written" in err and "run r5: summary.json: not valid JSON" in err
    assert not (sweep_dir / "report").exists()


def test_a_failure_while_writing_leaves_the_old_report_and_no_half_new_one(sweep_dir, monkeypatch):
    import fl_poison.report as report

    out = sweep_dir / "report"
    out.mkdir()
    (out / "table.md").write_text("the previous report\n")

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "rounds_figure", broken)
    with pytest.raises(RuntimeError):
        make_report(sweep_dir, metrics=["source_accuracy"])
    assert _names(out) == ["table.md"] and (out / "table.md").read_text() == "the previous report\n"
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["report", "runs"]  # no temporary folder left


def test_by_a_key_no_run_has_is_refused_listing_the_keys_that_vary(sweep_dir, capsys):
    assert main(["report", str(sweep_dir), "--by", "nosuchkey"]) == 2
    err = capsys.readouterr().err
    assert "'--by': 'nosuchkey'" in err and "defense, malicious-fraction" in err
    assert not (sweep_dir / "report").exists()
    assert [r["n"] for r in aggregate(load_runs(sweep_dir), by=["seed"])[2]] == [4, 4]  # any run key works


def test_runs_naming_no_finished_run_is_refused_and_a_unique_prefix_picks_one(sweep_dir, capsys):
    from fl_poison.report import pick_runs

    assert main(["report", str(sweep_dir), "--runs", "deadbeef"]) == 2
    assert "'--runs': 'deadbeef'" in capsys.readouterr().err and not (sweep_dir / "report").exists()
    runs = load_runs(sweep_dir)
    assert [r["dir"].name for r in pick_runs(runs, ["r3", "r1"], sweep_dir)] == ["r3", "r1"]  # exact wins
    with pytest.raises(ValueError, match="a prefix of 8 runs"):
        pick_runs(runs, ["r"], sweep_dir)


def test_report_out_that_is_a_file_is_one_line_exit_2(sweep_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    for out in (tmp_path / "taken", tmp_path / "taken" / "report"):
        assert main(["report", str(sweep_dir), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"'{tmp_path / 'taken'}'" in err
