"""The paper's numbers as data: [paper] cells and claims, pooling of our runs, verdicts, paper_comparison.md."""

import json
import math
from pathlib import Path

import pytest

from fl_poison.cli import main
from fl_poison.experiment_file import load_experiment
from fl_poison.paper_comparison import (CONTRADICTED, NOT_MEASURED, REFERENCE, REPRODUCED, SAME_DIRECTION, Cell,
                                        Claim, PaperError, Pooled, check_claim, compare, parse_paper, pool,
                                        read_metric, rounds_note, select, verdict)
from fl_poison.report import make_report

EXPERIMENTS = Path(__file__).parents[2] / "experiments"

TINY = """[config]  # never runs: every test here stops before training or only plans
dataset = "digits"
attack = "label-flip"
"source-class" = 7
malicious-fraction = 0.25

[sweep.a]
defense = ["fedavg", "median"]
target-class = [1, 3]

[paper]
finding = "x"
claims = CLAIMS

[paper.cell-defaults]
tolerance = 0.05
rounds = 2

[[paper.cells]]
id = "fedavg-asr"
paper = 0.5
metric = "max_over_rounds.ata"
sweep = "a"
where = { defense = "fedavg" }
average-over = ["target-class"]
EXTRA
"""


def tiny(tmp_path: Path, extra: str = "", claims: str = "[]") -> Path:
    f = tmp_path / "exp.toml"
    f.write_text(TINY.replace("EXTRA", extra).replace("CLAIMS", claims))
    return f


def cell(**kw) -> Cell:
    base = dict(id="c", label="c", paper=0.5, metric="max_over_rounds.ata", sweep="a", where=(),
                average_over=("target-class",), tolerance=0.05, rounds=50)
    return Cell(**{**base, **kw})


def member(value, seed=0, target=1, rounds=50, **cfg):
    return ({"seed": seed, "target-class": target, **cfg}, {"rounds": rounds, "max_over_rounds": {"ata": value}})


# ------------------------------------------------------------------------------------------ the parser


def test_ada_file_holds_table_one_and_two_as_cells():
    table = parse_paper(load_experiment(EXPERIMENTS / "ada_mnist.toml").paper)
    cells = {c.id: c for c in table.cells}
    # (LF, TS, ADA-full, ADA-partial) x (ATA, MTA) x 3 eps + 3 controls, + LF without NDC and its control
    assert len(cells) == 29
    assert cells["lf-ata-eps0.1-no-ndc"].paper == 0.912 and cells["lf-ata-eps0.1-no-ndc"].sweep == "table1-lf-no-ndc-eps0.1"
    assert cells["lf-ata-eps0.01"].paper == 0.081 and cells["ts-ata-eps0.05"].paper == 0.191
    assert cells["ada-full-ata-eps0.1"].paper == 0.968 and cells["ada-full-mta-eps0.05"].paper == 0.989
    assert cells["ada-partial-ata-eps0.05"].paper == 0.996 and cells["ada-partial-mta-eps0.01"].paper == 0.965
    lf = cells["lf-ata-eps0.1"]
    assert (lf.metric, lf.sweep, lf.average_over, lf.rounds) == ("max_over_rounds.ata", "table1-eps0.1",
                                                                  ("target-class",), 50)
    assert dict(lf.where) == {"attack": "label-flip", "malicious-fraction": 0.1}
    assert dict(cells["ada-partial-ata-eps0.01"].where) == {"attack": "ada", "ada-knowledge": "partial",
                                                           "malicious-fraction": 0.01}
    assert cells["none-ata-eps0.1"].paper is None and dict(cells["none-ata-eps0.1"].where) == {"attack": "none"}
    assert Claim("ada-full-ata-eps0.01", ">", "lf-ata-eps0.01") in table.claims


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_bundled_paper_section_parses(path):
    exp = load_experiment(path)
    table = parse_paper(exp.paper, str(path))
    assert all(c.sweep is None or c.sweep in exp.sweeps for c in table.cells)  # each cell reads a sweep of its file
    ids = {c.id for c in table.cells}
    assert all(c.left in ids and (not isinstance(c.right, str) or c.right in ids) for c in table.claims)


def test_nan_or_absent_paper_value_is_a_reference_row(tmp_path):
    table = parse_paper(load_experiment(tiny(tmp_path, '[[paper.cells]]\nid = "r"\nmetric = "mta"\npaper = nan\n'
                                                      '[[paper.cells]]\nid = "s"\nmetric = "mta"\n')).paper)
    assert [c.paper for c in table.cells] == [0.5, None, None]


SECOND = '[[paper.cells]]\nid = "second"\n'
BAD_CELLS = {  # a second cell (after a good one) -> what the one error line says
    "metric-no-run-writes": (SECOND + 'metric = "max_over_rounds.atta"\n',
                             "metric 'max_over_rounds.atta' is not a metric any run writes "
                             "(did you mean max_over_rounds.ata?)"),
    "unknown-key": (SECOND + 'metric = "mta"\ntolerence = 0.1\n', "unknown key 'tolerence' (did you mean tolerance?)"),
    "filter-not-a-run-key": (SECOND + 'metric = "mta"\nwhere = { atack = "label-flip" }\n',
                             "where key 'atack' is not a run key"),
    "filter-bad-value": (SECOND + 'metric = "mta"\nwhere = { attack = "label-flp" }\n',
                         "where attack = 'label-flp': one of none"),
    "paper-not-a-number": (SECOND + 'metric = "mta"\npaper = "0.9"\n', "paper = '0.9': a number"),
    "missing-metric": (SECOND, "missing value for 'metric'"),
    "missing-tolerance": (SECOND + 'metric = "mta"\npaper = 0.4\ntolerance = nan\n', "tolerance = nan: a number >= 0"),
    "missing-id": ('[[paper.cells]]\nmetric = "mta"\n', "cells[1]: missing value for 'id'"),
}


@pytest.mark.parametrize("case", BAD_CELLS, ids=list(BAD_CELLS))
def test_bad_cell_stops_the_sweep_with_one_line_before_anything(tmp_path, capsys, case):
    extra, message = BAD_CELLS[case]
    f = tiny(tmp_path, extra)
    out = tmp_path / "out"
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fl-poison: error: {f} [paper] ") and message in err[0], err
    assert case == "missing-id" or "cell 'second'" in err[0]
    assert not out.exists()  # no manifest, no run


def test_a_paper_value_without_tolerance_is_refused():
    paper = {"cells": [{"id": "x", "metric": "mta", "paper": 0.4}]}
    with pytest.raises(PaperError, match=r"f.toml \[paper\] cell 'x': missing value for 'tolerance'"):
        parse_paper(paper, "f.toml")


@pytest.mark.parametrize("extra,claims,message", [
    ('[[paper.cells]]\nid = "x"\nmetric = "mta"\nsweep = "a"\nwhere = { defense = "krum" }\n', "[]",
     "cell 'x': where {'defense': 'krum'} matches no point of sweep 'a'"),
    ('[[paper.cells]]\nid = "x"\nmetric = "backdoor_accuracy"\nsweep = "a"\n', "[]",
     "cell 'x': metric 'backdoor_accuracy' needs attack = backdoor"),
    ("", '[["fedavg-asr", ">", "nope"]]', "claims[0]: 'nope' is not a cell id"),
    ("", '[["fedavg-asr", ">", 0.7]]', "claims[0]: fedavg-asr > 0.7 contradicts the paper's own values (0.5 vs 0.7)"),
    ("", '[["fedavg-asr", "=>", 0.2]]', "claims[0]: ['fedavg-asr', '=>', 0.2]: [cell id, one of > < >= <="),
    ('[[paper.cells]]\nid = "fedavg-asr"\nmetric = "mta"\n', "[]", "cell 'fedavg-asr': a second cell with this id"),
])
def test_cells_that_can_read_nothing_and_bad_claims_stop_the_sweep(tmp_path, capsys, extra, claims, message):
    f = tiny(tmp_path, extra, claims)
    assert main(["sweep", str(f), "--out", str(tmp_path / "out"), "--local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_prose_key_holding_data_is_refused():
    with pytest.raises(PaperError, match=r"key 'cels': prose keys hold strings.*did you mean cells"):
        parse_paper({"finding": "x", "cels": [{"id": "a"}]}, "f.toml")


def test_a_cell_naming_a_grid_the_file_lacks_is_a_warning_at_sweep_time(tmp_path):
    from fl_poison.paper_report import check_sweep
    from fl_poison.sweep import plan

    exp = load_experiment(tiny(tmp_path, '[[paper.cells]]\nid = "later"\nmetric = "mta"\nsweep = "b"\n'))
    warnings = check_sweep(exp, plan(exp))
    assert len(warnings) == 1 and "cell 'later': sweep 'b' is not a grid of this file" in warnings[0]


# ------------------------------------------------------------------------------------------ pooling


def test_pool_means_over_targets_within_a_seed_then_mean_and_std_over_seeds():
    members = [member(0.2, 0, 1), member(0.4, 0, 3), member(0.5, 1, 1), member(0.9, 1, 3)]
    p = pool(cell(), members)
    assert p.mean == pytest.approx(0.5)  # seeds: (0.2 + 0.4) / 2 = 0.3 and (0.5 + 0.9) / 2 = 0.7
    assert p.std == pytest.approx(0.4 / math.sqrt(2))  # sample std of {0.3, 0.7}, not of the four runs
    assert (p.seeds, p.runs, p.notes, p.blocker) == (2, 4, [], None)


def test_pool_says_when_a_seed_lacks_some_targets_and_when_runs_lack_the_metric():
    members = [member(0.2, 0, 1), member(0.4, 0, 3), member(0.5, 1, 1), member(None, 1, 3)]
    p = pool(cell(), members)
    assert p.mean == pytest.approx((0.3 + 0.5) / 2) and p.seeds == 2 and p.runs == 3
    assert p.notes == ["1 of 4 runs have no max_over_rounds.ata", "seed 1 has 1 of 2 target-class values"]


def test_pool_refuses_runs_that_differ_in_a_key_the_cell_neither_filters_nor_averages():
    p = pool(cell(), [member(0.2, defense="fedavg"), member(0.8, defense="krum")])
    assert p.mean is None and "differ in defense" in p.blocker
    assert pool(cell(where=(("defense", "krum"),)), [member(0.8, defense="krum")]).mean == 0.8


def test_pool_reads_a_key_an_older_run_lacks_as_its_default():
    """A run written before a key existed held its default: it pools with a run that records the default."""
    older = member(0.2, 0)
    newer = member(0.4, 1)
    newer[0]["replacement-gamma"] = -1.0
    assert pool(cell(), [older, newer]).mean == pytest.approx(0.3)
    newer[0]["replacement-gamma"] = 2.0  # a real difference still blocks
    assert "differ in replacement-gamma" in pool(cell(), [older, newer]).blocker


def test_read_metric_treats_null_nan_and_missing_alike():
    s = {"max_over_rounds": {"ata": None, "mta": float("nan")}, "detection": {"f1": 0.5}, "ata": True}
    assert [read_metric(s, m) for m in ("max_over_rounds.ata", "max_over_rounds.mta", "last10.ata", "ata")] == [None] * 4
    assert read_metric(s, "detection.f1") == 0.5


# ------------------------------------------------------------------------------------------ verdicts


def pooled(mean, rounds=(50,), std=0.01):
    return Pooled(mean, std, 2, 2, rounds)


def test_verdict_reproduced_within_the_tolerance_inclusive():
    assert verdict(cell(), pooled(0.55)) == (REPRODUCED, "within tolerance: off by +0.050, allowed ±0.05")
    assert verdict(cell(), pooled(0.46))[0] == REPRODUCED


def test_verdict_same_direction_when_every_claim_on_the_cell_holds():
    claims = [check_claim(Claim("c", ">", "ctrl"), {"c": 0.5, "ctrl": None}, {"c": 0.3, "ctrl": 0.1})]
    v, reason = verdict(cell(), pooled(0.3), claims)
    assert v == SAME_DIRECTION and reason == "off by -0.200, allowed ±0.05; holds: c > ctrl (ours 0.300 > 0.100)"
    unknown = check_claim(Claim("c", "<", "ada"), {"c": 0.5, "ada": 0.9}, {"c": 0.3, "ada": None})
    v, reason = verdict(cell(), pooled(0.3), [*claims, unknown])  # an unchecked claim decides nothing
    assert v == SAME_DIRECTION and reason.endswith("unchecked: c < ada (ours 0.300 < —)")
    assert verdict(cell(), pooled(0.3), [unknown])[0] == CONTRADICTED  # nothing held


def test_verdict_contradicted_when_a_claim_fails_or_none_is_stated():
    ok = check_claim(Claim("c", ">", 0.2), {"c": 0.5}, {"c": 0.3})
    bad = check_claim(Claim("other", ">", "c"), {"other": 0.9, "c": 0.5}, {"other": 0.25, "c": 0.3})
    v, reason = verdict(cell(), pooled(0.3), [ok, bad])
    assert v == CONTRADICTED and "fails: other > c (ours 0.250 > 0.300)" in reason
    assert v == CONTRADICTED and "holds: c > 0.2" in reason  # one failing claim outweighs one that holds
    assert verdict(cell(), pooled(0.3)) == (CONTRADICTED, "off by -0.200, allowed ±0.05; no ordering claim")


def test_verdict_names_rounds_that_differ_from_the_cells_setting():
    v, reason = verdict(cell(), pooled(0.5, rounds=(20,)))
    assert v == REPRODUCED and reason.endswith("runs cut to 20 of the paper's 50 rounds")
    assert rounds_note(50, (10, 20)) == "runs cut to 10–20 of the paper's 50 rounds"
    assert rounds_note(50, (100,)) == "runs with 100 of the paper's 50 rounds"
    assert rounds_note(None, (20,)) is None and rounds_note(50, (50,)) is None


def test_verdict_reference_and_not_measured():
    assert verdict(cell(paper=None, tolerance=None), pooled(0.1)) == (REFERENCE, "no paper value")
    none = pool(cell(where=(("attack", "ada"),)), [])
    assert verdict(cell(), none) == (NOT_MEASURED, "n=0 runs (sweep a, attack=ada)")


def test_compare_reads_only_the_cells_sweep_and_finished_runs():
    c = cell(where=(("attack", "label-flip"),))
    runs = [{"id": "r1", "config": member(0.52)[0] | {"attack": "label-flip"}, "summary": member(0.52)[1]},
            {"id": "r2", "config": member(0.9, seed=1)[0] | {"attack": "label-flip"}, "summary": member(0.9)[1]},
            {"id": "r3", "config": member(0.1, seed=2)[0] | {"attack": "label-flip"},
             "summary": {**member(0.1)[1], "status": "no_update"}}]
    from fl_poison.paper_comparison import PaperTable

    results, _ = compare(PaperTable("f", [c]), runs, {"r1": {"a"}, "r2": {"b"}, "r3": {"a"}})
    assert results[0].ours.runs == 1 and results[0].ours.mean == 0.52 and results[0].verdict == REPRODUCED


# ------------------------------------------------------------------------------------------ the report


def fake_sweep(root: Path, exp: Path, runs: dict[str, tuple[dict, float | None, int]], sweep="a") -> Path:
    """A sweep folder by hand: runs/<id>/{summary,config}.json and rounds.csv, manifest.json naming ``exp``."""
    points = []
    for rid, (cfg, ata, rounds) in runs.items():
        d = root / "runs" / rid
        d.mkdir(parents=True)
        full = {"dataset": "digits", "attack": "label-flip", "source-class": 2, "num-rounds": rounds,
                "run-name": rid, **cfg}
        summary = {"config": full, "rounds": rounds, "last10": {"accuracy": 0.9},
                   "max_over_rounds": {"ata": ata, "mta": 0.95}}
        (d / "summary.json").write_text(json.dumps(summary))
        (d / "config.json").write_text(json.dumps(full))
        (d / "rounds.csv").write_text("round,accuracy\n0,0.1\n1,0.9\n")
        points.append({"sweep": sweep, "coords": cfg, "run": rid})
    (root / "manifest.json").write_text(json.dumps({"experiment": str(exp), "points": points}))
    return root


REPORT_PAPER = """[config]
dataset = "digits"

[sweep.a]
attack = ["label-flip", "none"]

[paper]
finding = "x"
claims = [["lf", ">", "ctrl"], ["ada", ">", "lf"]]

[paper.cell-defaults]
metric = "max_over_rounds.ata"
tolerance = 0.05
rounds = 50
sweep = "a"
average-over = ["target-class"]

[[paper.cells]]
id = "lf"
paper = 0.9
where = { attack = "label-flip" }

[[paper.cells]]
id = "lf-mta"
label = "LF MTA"
paper = 0.99
metric = "max_over_rounds.mta"
tolerance = 0.01
where = { attack = "label-flip" }

[[paper.cells]]
id = "ctrl"
where = { attack = "none" }

[[paper.cells]]
id = "ada"
paper = 0.95
where = { attack = "ada" }
"""


@pytest.fixture
def report_dir(tmp_path):
    exp = tmp_path / "paper.toml"
    exp.write_text(REPORT_PAPER)
    runs = {f"lf-s{s}-t{t}": ({"attack": "label-flip", "seed": s, "target-class": t}, v, 50)
            for (s, t), v in {(0, 1): 0.6, (0, 3): 0.8, (1, 1): 0.7, (1, 3): 0.9}.items()}
    runs |= {f"none-s{s}-t{t}": ({"attack": "none", "seed": s, "target-class": t}, 0.01 * (t + s), 20)
             for s in (0, 1) for t in (1, 3)}
    return fake_sweep(tmp_path / "sweep", exp, runs)


def test_report_writes_paper_comparison_with_the_verdicts(report_dir, capsys):
    make_report(report_dir, figures=False)
    md = (report_dir / "report" / "paper_comparison.md").read_text()
    rows = {line.split("`")[1]: line for line in md.splitlines() if line.startswith("| ") and "`" in line}
    # LF: seeds (0.6 + 0.8) / 2 = 0.7 and (0.7 + 0.9) / 2 = 0.8 -> 0.75 ± 0.0707; paper 0.9: off by 0.15, but
    # LF > control holds and ADA > LF cannot be checked (no ADA runs): same direction, the reason says why
    assert "| 0.900 ± 0.05 | 0.750 ± 0.071 (n=2, 4 runs) | -0.150 | same direction | off by -0.150, allowed " \
           "±0.05; holds: lf > ctrl (ours 0.750 > 0.025); unchecked: ada > lf (ours — > 0.750) |" in rows["lf"]
    assert "| -0.040 | contradicted | off by -0.040, allowed ±0.01; no ordering claim |" in rows["lf-mta"]
    assert "| LF MTA (`lf-mta`) | max_over_rounds.mta | 0.990 ± 0.01 | 0.950 ± 0.000 (n=2, 4 runs) |" in rows["lf-mta"]
    # control: seeds (0.01 + 0.03) / 2 = 0.02 and (0.02 + 0.04) / 2 = 0.03 -> 0.025 ± 0.0071, 20 rounds
    assert "| — | 0.025 ± 0.007 (n=2, 4 runs) | — | reference | no paper value; runs cut to 20 of the paper's " \
           "50 rounds |" in rows["ctrl"]
    assert "| — (n=0) | — | not measured | n=0 runs (sweep a, attack=ada) |" in rows["ada"]
    assert "| lf > ctrl | 0.900 > — | 0.750 > 0.025 | yes |" in md
    assert "| ada > lf | 0.950 > 0.900 | — > 0.750 | unknown (a side has no runs) |" in md


def test_report_same_direction_and_reproduced_on_a_sweep_folder(tmp_path):
    exp = tmp_path / "paper.toml"
    exp.write_text(REPORT_PAPER.replace('claims = [["lf", ">", "ctrl"], ["ada", ">", "lf"]]',
                                        'claims = [["lf", ">", "ctrl"]]').replace("paper = 0.99", "paper = 0.95"))
    runs = {f"lf-s{s}": ({"attack": "label-flip", "seed": s, "target-class": 1}, 0.5, 50) for s in (0, 1)}
    runs |= {"ctrl": ({"attack": "none", "seed": 0, "target-class": 1}, 0.02, 50)}
    folder = fake_sweep(tmp_path / "sweep", exp, runs)
    assert main(["report", str(folder)]) == 0
    md = (folder / "report" / "paper_comparison.md").read_text()
    assert "| -0.400 | same direction | off by -0.400, allowed ±0.05; holds: lf > ctrl (ours 0.500 > 0.020) |" in md
    assert "| +0.000 | reproduced | within tolerance: off by +0.000, allowed ±0.01 |" in md
    png = folder / "report" / "paper_comparison.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_report_refuses_a_bad_table_before_writing_anything(report_dir, capsys):
    exp = Path(json.loads((report_dir / "manifest.json").read_text())["experiment"])
    exp.write_text(exp.read_text().replace('id = "ctrl"', 'id = "ctrl"\nmetric = "max_ata_over"'))
    assert main(["report", str(report_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[paper] cell 'ctrl': metric 'max_ata_over' is not a metric any run writes" in err[0]
    assert not (report_dir / "report").exists()


def test_report_without_cells_or_manifest_writes_no_paper_comparison(report_dir, tmp_path):
    exp = Path(json.loads((report_dir / "manifest.json").read_text())["experiment"])
    exp.write_text('[config]\ndataset = "digits"\n[paper]\nfinding = "prose only"\n')
    make_report(report_dir, figures=False)
    assert not (report_dir / "report" / "paper_comparison.md").exists()
    (report_dir / "manifest.json").unlink()
    make_report(report_dir, out=tmp_path / "r2", figures=False)
    assert not (tmp_path / "r2" / "paper_comparison.md").exists()


def test_manifest_records_the_experiment_file_from_any_folder(tmp_path, monkeypatch):
    from fl_poison.sweep import plan, write_manifest

    f = tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    man = json.loads(write_manifest(tmp_path / "out", Path("exp.toml"), plan(load_experiment("exp.toml"))).read_text())
    assert Path(man["experiment"]).is_absolute() and Path(man["experiment"]) == f.resolve()
    assert (tmp_path / "out" / man["experiment_from_store"]).resolve() == f.resolve()


def test_a_store_moved_with_its_experiment_file_still_finds_it(tmp_path, monkeypatch):
    """A repository cloned elsewhere: the manifest's absolute path is gone, its path from the store is not."""
    from fl_poison.paper_report import experiment_path
    from fl_poison.sweep import plan, write_manifest

    tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path / "store", Path("exp.toml"), plan(load_experiment("exp.toml")))
    moved = tmp_path / "clone"
    moved.mkdir()
    for name in ("exp.toml", "store"):
        (tmp_path / name).rename(moved / name)
    man = json.loads((moved / "store" / "manifest.json").read_text())
    assert not Path(man["experiment"]).exists()
    assert experiment_path(man, moved / "store").resolve() == (moved / "exp.toml").resolve()
    assert experiment_path({"experiment": man["experiment"]}, moved / "store") is None


def test_a_diverged_run_counts_with_its_last_model_and_a_note():
    """A model the attack drove to NaN is the attack's result: pooled at its last accuracy, rounds as planned."""
    c = cell(metric="accuracy", average_over=(), sweep=None)
    done = ({"seed": 0, "num-rounds": 30}, {"rounds": 30, "accuracy": 0.5})
    lost = ({"seed": 1, "num-rounds": 30}, {"rounds": 6, "accuracy": 0.1, "status": "non_finite"})
    p = pool(c, [done, lost])
    assert p.mean == pytest.approx(0.3) and p.seeds == 2 and p.rounds == (30,)
    assert p.notes == ["1 of 2 runs diverged (non-finite model at round 6); they count with the last evaluated "
                       "model's accuracy"]
    runs = [{"id": "r1", "config": lost[0], "summary": lost[1]},
            {"id": "r2", "config": {"seed": 2}, "summary": {"rounds": 3, "accuracy": 0.9, "status": "failed"}}]
    assert [cfg for cfg, _ in select(c, runs, None)] == [lost[0]]  # a run that raised is still left out


def test_a_claim_smaller_than_the_seeds_spread_is_marked_so():
    c = Claim("a", ">", "b")
    close = check_claim(c, {}, {"a": 0.19, "b": 0.186}, {"a": 0.009, "b": 0.002})
    assert close.holds and close.within_spread and close.spread == pytest.approx(math.hypot(0.009, 0.002))
    clear = check_claim(c, {}, {"a": 0.97, "b": 0.19}, {"a": 0.004, "b": 0.009})
    assert clear.holds and not clear.within_spread
    number = check_claim(Claim("a", "<=", 0.2), {}, {"a": 0.195}, {"a": 0.01})
    assert number.spread == pytest.approx(0.01) and number.within_spread  # a number side has no spread
    assert not check_claim(c, {}, {"a": 0.19, "b": 0.186}).within_spread  # no stds given: nothing to say
