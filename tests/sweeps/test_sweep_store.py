"""A sweep's run store: failed runs stay failed, corrupt runs are redone, and a store the sweep cannot
use (a file in the way, a manifest not ours, a run directory linked out of the folder) is refused
with one line naming the path, before anything is written."""

import json
import shutil

import pytest

from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from fl_poison.experiment_file import load_experiment
from fl_poison.sweep import plan, run_state, run_sweep
from test_sweep import tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real two-run sweep of the tiny file, finished once; tests work on copies."""
    root = tmp_path_factory.mktemp("finished")
    f = tiny(root)
    runs = plan(load_experiment(f))
    res = run_sweep(runs, root / "out", engine="local")
    assert sorted(res.complete) == sorted(r.run_id for r in runs)
    return root


@pytest.fixture
def sweep(finished, tmp_path):
    """(experiment file, out dir, planned runs) on a fresh copy of the finished sweep."""
    shutil.copytree(finished / "out", tmp_path / "out", symlinks=True)
    f = tiny(tmp_path)
    return f, tmp_path / "out", plan(load_experiment(f))


def _boom(*a, **k):
    raise RuntimeError("diverged\nsecond line of the message")


def test_a_failed_run_stays_failed_with_its_id_and_error_until_retry_failed(tmp_path, monkeypatch, capsys):
    import fl_poison.app.experiment as experiment

    f, out = tiny(tmp_path), tmp_path / "out"
    ids = sorted(r.run_id for r in plan(load_experiment(f)))
    monkeypatch.setattr(experiment, "run_experiment", _boom)
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 1
    capsys.readouterr()
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 1  # the same command again
    err = capsys.readouterr().err
    assert "0 already done, 0 finished now, 2 failed" in err
    for rid in ids:
        assert f"  {rid} [sweep.a] " in err
    assert err.count("RuntimeError: diverged") == 2 and "second line" not in err
    monkeypatch.undo()
    assert main(["sweep", str(f), "--out", str(out), "--local", "--retry-failed"]) == 0
    assert "0 already done, 2 finished now, 0 failed" in capsys.readouterr().err


@pytest.mark.parametrize("file, damage", [
    ("summary.json", lambda p: p.write_text(p.read_text()[:40])),
    ("summary.json", lambda p: p.write_text("[1, 2]")),
    ("rounds.csv", lambda p: p.write_text("round,accuracy\n0,0.1\n1,zz\n")),
])
def test_a_run_with_corrupt_files_is_not_finished_and_is_redone_saying_so(sweep, capsys, file, damage):
    f, out, runs = sweep
    bad, good = runs[0].run_id, runs[1].run_id
    damage(out / "runs" / bad / file)
    good_mtime = (out / "runs" / good / "summary.json").stat().st_mtime_ns
    assert run_state(out / "runs" / bad) == "corrupt"
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 0
    err = capsys.readouterr().err
    assert f"run {bad} is run again: its files are corrupt ({out / 'runs' / bad / file}:" in err
    assert "1 already done, 1 finished now, 0 failed" in err
    assert run_state(out / "runs" / bad) == "complete"
    assert (out / "runs" / good / "summary.json").stat().st_mtime_ns == good_mtime  # untouched


def test_set_of_a_key_the_grid_varies_is_refused_naming_key_and_sweep(tmp_path, capsys):
    f, out = tiny(tmp_path, "seeds = [0, 1]"), tmp_path / "out"
    assert main(["sweep", str(f), "--out", str(out), "--local", "--set", "defense=krum"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'--set defense'" in err and "[sweep.a]" in err
    assert main(["sweep", str(f), "--out", str(out), "--local", "--set", "seed=3"]) == 2  # seeds = [...] sets seed
    assert "'--set seed'" in capsys.readouterr().err and not out.exists()
    exp = load_experiment(f)
    assert {r.cfg["lr"] for r in plan(exp, overrides={"lr": "0.5"})} == {0.5}  # a key no grid varies is fine
    repeats = load_experiment(tiny(tmp_path, "repeats = 2"))
    assert sorted(r.cfg["seed"] for r in plan(repeats, overrides={"seed": "7"})) == [7, 7, 8, 8]


def test_a_key_only_another_sweep_varies_may_be_set(tmp_path):
    exp = load_experiment(tiny(tmp_path, '[sweep.b]\nlr = [0.1, 0.2]'))
    assert {r.cfg["lr"] for r in plan(exp, ["a"], {"lr": "0.3"})} == {0.3}
    with pytest.raises(ConfigError, match="sweep.b"):
        plan(exp, ["b"], {"lr": "0.3"})


def _manifest(text):
    return lambda out: (out.mkdir(), (out / "manifest.json").write_text(text))


@pytest.mark.parametrize("make, bad", [
    (_manifest('{"experiment": "x", "poi'), "manifest.json"),
    (_manifest("[1, 2]"), "manifest.json"),
    (_manifest('{"points": [{"sweep": "a"}]}'), "manifest.json"),
    (lambda out: (out.mkdir(), (out / "manifest.json").mkdir()), "manifest.json"),
    (lambda out: (out.mkdir(), (out / "runs").write_text("")), "runs"),
    (lambda out: out.write_text(""), ""),
    (lambda out: out.parent.joinpath("file").write_text(""), "__file__"),
], ids=["truncated-manifest", "list-manifest", "manifest-points", "manifest-dir", "runs-file", "out-file",
        "out-under-a-file"])
def test_a_store_that_cannot_be_used_is_one_line_exit_2_naming_the_path(tmp_path, capsys, make, bad):
    f = tiny(tmp_path)
    out = tmp_path / "out"
    make(out)
    if bad == "__file__":
        out, named = tmp_path / "file" / "out", tmp_path / "file"
    else:
        named = out / bad if bad else out
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fl-poison: error: ") and err.count("\n") == 1 and f"'{named}'" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_empty_grid_and_a_file_without_grids_are_refused_before_writing(tmp_path, capsys):
    base = tiny(tmp_path).read_text().split("[sweep.a]")[0]
    empty, none = tmp_path / "empty.toml", tmp_path / "none.toml"
    empty.write_text(base + "[sweep.x]\n")
    none.write_text(base)
    out = tmp_path / "out"
    assert main(["sweep", str(empty), "--out", str(out), "--local"]) == 2
    assert "sweep 'x' varies nothing" in capsys.readouterr().err
    assert main(["sweep", str(none), "--out", str(out), "--local"]) == 2
    err = capsys.readouterr().err
    assert "'[sweep.NAME]'" in err and "it has none" in err and not out.exists()
    once = tmp_path / "once.toml"
    once.write_text(base + "[sweep.x]\nrepeats = 1\n")  # the base config alone, on purpose
    (run,) = plan(load_experiment(once))
    assert run.cfg["seed"] == 4 and run.points == [("x", {"seed": 4})]


@pytest.mark.parametrize("leftover", [True, False], ids=["half-written", "empty"])
def test_a_run_dir_linked_out_of_the_sweep_folder_is_refused_and_never_touched(sweep, tmp_path, capsys, leftover):
    f, out, runs = sweep
    outside = tmp_path / "outside"
    outside.mkdir()
    if leftover:
        (outside / "precious.txt").write_text("keep me")
    link = out / "runs" / runs[0].run_id
    shutil.rmtree(link)
    link.symlink_to(outside, target_is_directory=True)
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"'{link}'" in err and str(outside) in err
    assert sorted(p.name for p in outside.iterdir()) == (["precious.txt"] if leftover else [])
    assert link.is_symlink()


def test_a_run_dir_linked_inside_the_sweep_folder_is_refused_like_a_single_run(sweep, capsys):
    f, out, runs = sweep
    store = out / "elsewhere"
    store.mkdir()
    target = store / runs[0].run_id
    shutil.move(out / "runs" / runs[0].run_id, target)
    (target / "summary.json").unlink()  # half-written: a sweep would clear it, so it must not follow the link
    kept = sorted(p.name for p in target.iterdir())
    link = out / "runs" / runs[0].run_id
    link.symlink_to(target, target_is_directory=True)
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"'{link}'" in err and str(target) in err
    assert sorted(p.name for p in target.iterdir()) == kept and link.is_symlink()


def test_dangling_links_and_files_as_run_dirs_are_refused(sweep, capsys):
    f, out, runs = sweep
    link = out / "runs" / runs[0].run_id
    shutil.rmtree(link)
    link.symlink_to(out / "gone", target_is_directory=True)
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 2
    assert f"'{link}'" in capsys.readouterr().err and not (out / "gone").exists()
    link.unlink()
    link.write_text("")
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 2
    assert f"'{link}' — a run directory (this path is a file)" in capsys.readouterr().err


def test_the_manifest_keeps_the_points_of_earlier_sweeps(tmp_path, sweep):
    f, out, runs = sweep
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 0
    other = tmp_path / "other.toml"
    other.write_text(f.read_text() + '[sweep.b]\ndefense = ["krum"]\n')
    assert main(["sweep", str(other), "--out", str(out), "--local", "--sweep", "b"]) == 0
    points = json.loads((out / "manifest.json").read_text())["points"]
    assert sorted((p["sweep"], p["coords"]["defense"]) for p in points) == [("a", "fedavg"), ("a", "median"),
                                                                            ("b", "krum")]


def test_a_key_at_its_default_does_not_change_the_run_id():
    """A key added to the schema later (here: one at its default) leaves stored runs' ids alone."""
    from fl_poison.sweep import id_of_values, run_id

    cfg = resolve({"dataset": "digits", "attack": "label-flip", "source-class": 1, "target-class": 7})
    values = cfg.to_dict()
    without = {k: v for k, v in values.items() if k != "replacement-gamma"}
    assert run_id(cfg) == id_of_values(values) == id_of_values(without)
    assert id_of_values({**values, "replacement-gamma": 3.0}) != run_id(cfg)  # a non-default value counts
    assert id_of_values({**values, "run-name": "x", "out-dir": "y"}) == run_id(cfg)


def test_migrate_store_renames_folders_of_an_older_id_rule_and_fixes_the_manifest(tmp_path):
    import json

    from fl_poison.sweep import migrate_store, run_id

    cfg = resolve({"dataset": "digits", "seed": 4})
    old = tmp_path / "runs" / "0123456789abcdef"
    old.mkdir(parents=True)
    (old / "config.json").write_text(json.dumps({**cfg.to_dict(), "run-name": old.name}))
    (old / "summary.json").write_text("{}")
    (tmp_path / "runs" / "junk").mkdir()  # no config.json: left alone
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"experiment": "x.toml", "points": [{"sweep": "s", "coords": {"seed": 4}, "run": old.name},
                                            {"sweep": "s", "coords": {"seed": 5}, "run": "other"}]}))
    new = run_id(cfg)
    assert migrate_store(tmp_path) == {old.name: new}
    moved = tmp_path / "runs" / new
    assert not old.exists() and (moved / "summary.json").exists()
    assert json.loads((moved / "config.json").read_text())["run-name"] == new
    assert [p["run"] for p in json.loads((tmp_path / "manifest.json").read_text())["points"]] == [new, "other"]
    assert (tmp_path / "runs" / "junk").is_dir()
    assert migrate_store(tmp_path) == {}  # idempotent


def _hold_lock(out):
    """A second sweep's stand-in: holds ``out``'s lock until killed."""
    import subprocess
    import sys
    import time

    code = ("import sys, time\nfrom fl_poison.store_lock import locked_store\n"
            f"with locked_store({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_sweep_into_a_store_in_use_is_refused_and_a_killed_holder_leaves_no_stale_lock(sweep, capsys):
    import os
    import signal

    f, out, runs = sweep
    before = sorted(p.name for p in (out / "runs").iterdir())
    holder = _hold_lock(out)
    try:
        assert main(["sweep", str(f), "--out", str(out), "--local"]) == 2
        err = capsys.readouterr().err
        assert "--out" in err and str(out) in err and f"pid {holder.pid}" in err and "resumes" in err
        assert len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in (out / "runs").iterdir()) == before  # nothing moved
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a sweep killed with no chance to clean up
        holder.wait()
    assert main(["sweep", str(f), "--out", str(out), "--local"]) == 0  # the lock went with its holder
    assert not any(".sweep.lock" in p.name for p in (out / "runs").iterdir())
