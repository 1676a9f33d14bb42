"""A run directory is a real folder inside out-dir: links are refused, odd names get one line, exit 2."""

from __future__ import annotations

import os

import pytest

from fl_poison.cli import main

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
