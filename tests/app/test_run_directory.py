"""A run directory is a real folder inside out-dir: links are refused, odd names get one line, exit 2."""

from __future__ import annotations

import os

import pytest

from fl_poison.cli import main
import json
from pathlib import Path

FAST = ["--set", "num-clients=3", "--set", "clients-per-round=3", "--set", "num-rounds=1", "--set", "figures=false",
        "--set", "received-eval-samples=0"]


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fl-poison: error: "), err
    return lines[0]


@pytest.mark.parametrize("inside", [False, True], ids=["target-outside-out-dir", "target-inside-out-dir"])
def test_overwrite_never_deletes_or_writes_through_a_symlinked_run_directory(tmp_path, capsys, inside):
    out = tmp_path / "out"
    out.mkdir()
    target = (out / "elsewhere") if inside else (tmp_path / "outside")
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    (out / "myrun").symlink_to(target)
    code = main(["run", *FAST, "--set", "run-name=myrun", "--out", str(out), "--overwrite"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "'run-name'" in line and str(out / "myrun") in line and "symbolic link" in line
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]  # nothing deleted, nothing written
    assert (target / "keep.txt").read_text() == "precious"


def test_a_symlinked_out_dir_is_still_a_place_to_write(tmp_path):
    real = tmp_path / "big-disk"
    real.mkdir()
    (tmp_path / "results").symlink_to(real)
    assert main(["run", *FAST, "--set", "run-name=r", "--out", str(tmp_path / "results")]) == 0
    assert (real / "r" / "summary.json").is_file()


def test_a_lock_file_that_is_a_link_is_refused(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    os.symlink(tmp_path / "elsewhere.lock", run / ".lock")
    assert main(["run", *FAST, "--set", "run-name=r", "--out", str(tmp_path), "--overwrite"]) == 2
    assert ".lock" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "elsewhere.lock").exists()


@pytest.mark.parametrize("key", ["run-name", "out-dir", "initial-model"])
def test_a_nul_byte_in_a_text_key_is_one_line_naming_the_key(tmp_path, capsys, key):
    toml = tmp_path / "nul.toml"
    toml.write_text(f'[config]\n{key} = "a\\u0000b"\nnum-rounds = 1\n')
    assert main(["run", "-c", str(toml), "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"'{key}'" in line and "NUL" in line
    assert not (tmp_path / "o").exists()


def test_a_used_run_directory_is_refused_unless_overwrite(tmp_path, capsys):
    from fl_poison.cli import main

    d = tmp_path / "x"
    d.mkdir()
    (d / "model.npz").write_text("old")
    assert main(["run", *FAST, "--set", "run-name=x", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (d / "model.npz").read_text() == "old"
    assert main(["run", *FAST, "--set", "run-name=x", "--out", str(tmp_path), "--overwrite"]) == 0
    assert json.loads((d / "status.json").read_text()) == {"status": "complete", "round": 1}
    assert (d / "summary.json").exists() and not list(d.glob("*.tmp"))
    # generated names hash the config: the same config again is the same directory -> refused
    assert main(["run", *FAST, "--out", str(tmp_path / "gen")]) == 0
    assert main(["run", *FAST, "--out", str(tmp_path / "gen")]) == 2


def test_a_second_writer_is_locked_out(tmp_path):
    import fcntl

    from fl_poison.config import ConfigError
    from fl_poison.results import claim_run_dir

    lock = claim_run_dir(tmp_path / "r")
    with pytest.raises(ConfigError, match="another process holds"):
        claim_run_dir(tmp_path / "r", overwrite=True)
    lock.close()
    claim_run_dir(tmp_path / "r", overwrite=True).close()


def test_summary_is_written_last(tmp_path, monkeypatch):
    from fl_poison import results

    order = []
    real = results.write_json
    monkeypatch.setattr(results, "write_json", lambda p, d: (order.append(p.name), real(p, d)))
    monkeypatch.setattr(results.np, "savez", lambda p, **kw: order.append("model.npz"))
    from fl_poison.cli import main

    assert main(["run", *FAST, "--set", "run-name=o", "--out", str(tmp_path)]) == 0
    assert order.index("summary.json") > order.index("model.npz") and order[-1] == "status.json"


def test_out_that_is_a_file_fails_before_loading_data(tmp_path, capsys, monkeypatch):
    from fl_poison import federation
    from fl_poison.cli import main

    monkeypatch.setattr(federation, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    f = tmp_path / "file"
    f.write_text("")
    assert main(["run", "--out", str(f)]) == 2
    assert "this path is a file" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_dir_that_cannot_be_created_is_a_config_error_even_for_root():
    """os.access says "writable" to root for /proc; the probe must still refuse before any training."""
    from fl_poison.config import ConfigError
    from fl_poison.results import check_run_dir

    with pytest.raises(ConfigError) as err:
        check_run_dir(Path("/proc/fl-poison-test/run"))
    assert err.value.key == "--out" and "can be created" in str(err.value)
