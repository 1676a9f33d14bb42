"""Settings that cannot act are said where the user looks: a warning line, or a refusal when nothing could work."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from flower_replies import array_record, make_reply
from strategies import defenses as D

FAST = ["--set", "num-clients=3", "--set", "clients-per-round=3", "--set", "num-rounds=1", "--set", "figures=false",
        "--set", "received-eval-samples=0", "--set", "engine-workers=1"]
FLIP = {"attack": "label-flip", "source-class": 7, "target-class": 1, "num-malicious": 1}


def config_warnings(cfg, given):
    from fl_poison.config import config_warnings as warnings_of

    return warnings_of(cfg, given)


def _warnings(**values) -> list[str]:
    values = {k.replace("_", "-"): v for k, v in values.items()}
    return config_warnings(resolve(values), values)


def test_a_key_of_a_defense_that_is_not_selected_is_named():
    assert _warnings(defense="median", trim_beta=0.2) == ["'trim-beta' has no effect with defense=median"]
    assert _warnings(defense="median", num_byzantine=1) == ["'num-byzantine' has no effect with defense=median"]


def test_a_key_of_an_attack_that_is_not_selected_is_named():
    assert config_warnings(resolve({**FLIP, "scale-factor": 3.0}), {*FLIP, "scale-factor"}) == \
        ["'scale-factor' has no effect with attack=label-flip"]


def test_keys_of_the_selected_plugins_and_keys_left_alone_say_nothing():
    assert _warnings(defense="trimmed-mean", trim_beta=0.2) == []
    assert _warnings(defense="bulyan", num_byzantine=0, num_clients=10, clients_per_round=10) == []
    assert config_warnings(resolve({"defense": "median"}), {"defense"}) == []  # trim-beta only at its default


def test_an_inert_key_never_stops_resolution_so_sweeps_run_on():
    assert resolve({"defense": "median", "trim-beta": 0.2})["trim-beta"] == 0.2


def test_the_cli_prints_the_warning_once_and_runs(tmp_path, capsys):
    assert main(["run", *FAST, "--set", "defense=median", "--set", "trim-beta=0.2", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("fl-poison: warning: 'trim-beta' has no effect with defense=median") == 1


@pytest.mark.parametrize("keep, f, warned", [(10, -1, True), (-1, 0, True), (-1, -1, False), (9, -1, False)])
def test_multi_krum_keeping_every_update_warns_that_it_is_fedavg(keep, f, warned):
    w = _warnings(defense="multi-krum", multi_krum_keep=keep, num_byzantine=f)
    assert bool(w) == warned
    if warned:
        assert "plain FedAvg" in w[0] and "keeps 10 of 10" in w[0]


@pytest.mark.parametrize("defense", ["pca", "lfighter"])
def test_filters_that_need_three_clients_refuse_fewer_per_round(defense):
    with pytest.raises(ConfigError) as err:
        resolve({"defense": defense, "num-clients": 5, "clients-per-round": 2})
    assert err.value.key == "clients-per-round" and "at least 3" in err.value.allowed
    resolve({"defense": defense, "num-clients": 5, "clients-per-round": 3})


def test_a_round_left_with_fewer_than_three_valid_replies_is_logged(server_identity, caplog):
    g = [np.zeros((2, 3), np.float32), np.zeros(2, np.float32)]
    s = D.LFighter()
    s._global = array_record(g)
    replies = [make_reply([a + i for a in g], 10, i) for i in (1, 2)]
    replies.append(make_reply([np.full_like(g[0], np.nan), g[1]], 10, 3))
    with caplog.at_level(logging.WARNING, "fl_poison.strategy"):
        s.aggregate_train(1, replies)
    assert "only 2 valid update(s); lfighter needs 3 to filter, so it keeps everyone" in caplog.text
    assert s.last_report.kept == [True, True]
