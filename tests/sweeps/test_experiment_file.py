"""Experiment files and grid expansion; every bundled experiment must resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_poison.config import ConfigError, resolve
from fl_poison.experiment_file import expand, load_experiment

EXPERIMENTS = sorted((Path(__file__).parents[2] / "experiments").glob("*.toml"))


def test_cartesian_and_zipped_axes():
    pts = expand({"seed": [0, 1], "source-class,target-class": [[7, 1], [4, 6]]})
    assert pts == [{"seed": 0, "source-class": 7, "target-class": 1}, {"seed": 0, "source-class": 4, "target-class": 6},
                   {"seed": 1, "source-class": 7, "target-class": 1}, {"seed": 1, "source-class": 4, "target-class": 6}]
    assert expand({}) == [{}]
    with pytest.raises(ConfigError):
        expand({"source-class,target-class": [[7]]})


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_bundled_experiments_resolve_at_every_point(path):
    exp = load_experiment(path)
    assert exp.paper.get("finding"), f"{path.name} must say what the paper found"
    for grid in exp.sweeps.values() or [{}]:
        for point in expand(grid):
            resolve(exp.config, point)  # raises ConfigError on any invalid point


def test_unknown_sweep_key_is_rejected(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text('[config]\ndataset="digits"\n[sweep.a]\n"sed" = [1, 2]\n[paper]\nfinding="x"\n')
    with pytest.raises(ConfigError) as err:
        load_experiment(f)
    assert "sed" in str(err.value)


@pytest.mark.parametrize("body", ["seed = [1, 2]", 'defense = ["fedavg"]'])
def test_keys_directly_under_sweep_are_refused(tmp_path, body):
    f = tmp_path / "e.toml"
    f.write_text(f'[config]\ndataset = "digits"\n[sweep]\n{body}\n')
    with pytest.raises(ConfigError, match=r"\[sweep.NAME\] header"):
        load_experiment(f)


@pytest.mark.parametrize("text,needle", [
    ('[confg]\nnum-rounds = 2\n', "[confg]"),
    ('num-rounds = 2\n[config]\nseed = 1\n', "num-rounds"),
])
def test_experiment_file_with_unknown_section_or_stray_key_is_refused(tmp_path, capsys, text, needle):
    from fl_poison.cli import main

    f = tmp_path / "e.toml"
    f.write_text(text)
    assert main(["run", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(f) in err


def test_non_utf8_experiment_file_is_refused(tmp_path, capsys):
    from fl_poison.cli import main

    f = tmp_path / "e.toml"
    f.write_bytes(b"[config]\nrun-name = \"caf\xe9\"\n")
    assert main(["run", "--config", str(f)]) == 2
    assert "UTF-8" in capsys.readouterr().err
