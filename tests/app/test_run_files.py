"""What makes a run directory a finished, readable result: each way its files can be broken is named."""

import json

import pytest

from fl_poison.run_files import BadRunFiles, load_finished

CONFIG = {"dataset": "digits", "defense": "median", "seed": 2}
ROUNDS = "round,accuracy,source_accuracy\n0,0.1,\n1,0.5,0.4\n2,0.7,0.6\n"


def write_run(d, summary=None, rounds=ROUNDS):
    d.mkdir(parents=True, exist_ok=True)
    summary = {"config": CONFIG, "rounds": 2, "last10": {"accuracy": 0.6, "source_accuracy": None},
               "detection": None, "wall_seconds": 1.5} if summary is None else summary
    (d / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    if rounds is not None:
        (d / "rounds.csv").write_bytes(rounds.encode() if isinstance(rounds, str) else rounds)
    return d


def test_a_complete_run_loads_with_its_config_and_summary(tmp_path):
    run = load_finished(write_run(tmp_path / "r"))
    assert run.config == CONFIG and run.summary["last10"]["accuracy"] == 0.6


def test_config_may_come_from_config_json(tmp_path):
    d = write_run(tmp_path / "r", {"last10": {}, "rounds": 2})
    (d / "config.json").write_text(json.dumps(CONFIG))
    assert load_finished(d).config == CONFIG


GOOD = {"config": CONFIG, "rounds": 2, "last10": {"accuracy": 0.6}}


@pytest.mark.parametrize("summary, rounds, file, why", [
    ('{"config": {"dataset": "dig', ROUNDS, "summary.json", "not valid JSON"),
    (b"\xff\xfe".decode("latin-1"), ROUNDS, "summary.json", "not valid JSON"),
    ([1, 2], ROUNDS, "summary.json", "a JSON object expected, got a list"),
    ({"config": CONFIG, "rounds": 2}, ROUNDS, "summary.json", "'last10' must be an object"),
    ({**GOOD, "last10": {"accuracy": "high"}}, ROUNDS, "summary.json", "'last10.accuracy' must be a number"),
    ({**GOOD, "wall_seconds": [3]}, ROUNDS, "summary.json", "'wall_seconds' must be a number"),
    ({**GOOD, "detection": [0.5]}, ROUNDS, "summary.json", "'detection' must be an object"),
    ({**GOOD, "config": {**CONFIG, "seed": "2"}}, ROUNDS, "summary.json", "'seed' must be an integer"),
    ({"last10": {}}, ROUNDS, "config.json", "missing"),
    (GOOD, None, "rounds.csv", "missing"),
    (GOOD, "accuracy\n0.1\n", "rounds.csv", "'round' column"),
    (GOOD, "round,accuracy\n0,0.1\n1,0.5\n2,zz\n", "rounds.csv", "line 4, column 'accuracy': 'zz' is not a number"),
    (GOOD, "round,accuracy\n0,0.1\n1,0.5\n2\n", "rounds.csv", "line 4 has 1 cells, the header 2"),
    (GOOD, "round,accuracy\n0,0.1\n1,0.5\x00\n", "rounds.csv", "line 3, column 'accuracy'"),
    (GOOD, b"round,accuracy\n0,\xff\n", "rounds.csv", "not UTF-8"),
    (GOOD, "round,accuracy\n0,0.1\n,0.5\n", "rounds.csv", "line 3 has no round number"),
])
def test_each_broken_file_is_named_with_why(tmp_path, summary, rounds, file, why):
    d = write_run(tmp_path / "r", summary, rounds)
    with pytest.raises(BadRunFiles) as err:
        load_finished(d)
    assert err.value.file == file and why in err.value.why
    assert str(d / file) in str(err.value)
