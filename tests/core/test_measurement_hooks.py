"""A new plug-in's measurement hooks reach every run file, with no core module changed.

The probe attack below declares its outputs and a server-side Measurement; a run writes its columns,
summary entries, figures and defense.jsonl entries; run-file checks and paper cells know its names. The
Krum family's Byzantine budget comes from each rule's ``largest_f``, NNM's from the configured rule's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from clients.behaviour import Behaviour
from fl_poison import plugins
from fl_poison.config import resolve
from fl_poison.measurement import Measurement, Outputs, measurements_for, owner_of

PROBE = "probe-example"


class ProbeMeasurement(Measurement):
    """Counts what the core hands it, so the test can see each hook was called when it should be."""

    def __init__(self) -> None:
        self.tested: list[int] = []
        self.trained: list[tuple[int, int]] = []

    def test_metrics(self, server_round, model):
        self.tested.append(server_round)
        return {"probe_value": server_round / 10}

    def round_metrics(self, server_round, model, replies):
        self.trained.append((server_round, len(replies)))
        return {"probe_replies": len(replies)}

    def report_entries(self, report, malicious):
        return {"probe_malicious": len(malicious)}, {"probe_clients": list(report.clients)}

    def summary_entries(self):
        return {"probe": {"count": len(self.tested), "trained": len(self.trained)}}

    def figures(self, run_dir):
        path = run_dir / "probe.txt"
        path.write_text("drawn")
        return [path]


@pytest.fixture
def probe():
    made: list[ProbeMeasurement] = []

    class Probe(Behaviour):
        name = PROBE
        malicious = True
        outputs = Outputs(series=("probe_value",), final=("probe_value",), sections=(("probe", ("count",)),))

        @classmethod
        def measurement(cls, config, fed):
            made.append(ProbeMeasurement())
            return made[-1]

        @classmethod
        def ata_target(cls, config, rows):
            return 4

    yield made
    plugins.unregister("attack", PROBE)


def test_a_plugins_measurement_reaches_every_run_file(probe, tmp_path):
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.inprocess import inprocess_grid
    from fl_poison.results import read_rounds
    from fl_poison.run_files import load_finished

    cfg = resolve({"attack": PROBE, "num-clients": 4, "clients-per-round": 4, "num-malicious": 1, "num-rounds": 2,
                   "figures": True, "train-samples": 400, "source-class": 1, "target-class": 2, "run-name": "p"})
    summary = run_experiment(inprocess_grid(cfg.to_dict(), 4), cfg, out_dir=tmp_path)
    (m,) = probe
    assert m.tested == [0, 1, 2] and m.trained == [(1, 4), (2, 4)]
    rows = read_rounds(tmp_path / "p")
    assert [r["probe_value"] for r in rows] == [0.0, 0.1, 0.2]
    assert [r["probe_replies"] for r in rows] == [None, 4.0, 4.0]
    assert [r["probe_malicious"] for r in rows[1:]] == [1.0, 1.0]
    log = [json.loads(line) for line in (tmp_path / "p" / "defense.jsonl").read_text().splitlines()]
    assert [sorted(e["probe_clients"]) for e in log] == [[0, 1, 2, 3]] * 2
    assert summary["probe_value"] == pytest.approx(0.2) and summary["probe"] == {"count": 3, "trained": 2}
    assert summary["last10"]["probe_value"] == pytest.approx(0.15)
    assert summary["ata_target"] == 4 and "ata" in rows[-1]
    assert (tmp_path / "p" / "probe.txt").read_text() == "drawn"
    assert load_finished(tmp_path / "p").summary["probe"]["count"] == 3


def test_summaries_list_every_plugins_series_and_a_plain_run_measures_nothing_more(probe):
    """Summaries of different attacks share one shape (each registered plug-in's columns, null where absent)."""
    from fl_poison.results import last10_keys

    assert "probe_value" in last10_keys() and "backdoor_accuracy" in last10_keys()
    assert measurements_for(resolve({}), None).parts == []


def test_a_section_that_is_no_object_is_a_bad_run_file(probe, tmp_path):
    from fl_poison.run_files import BadRunFiles, check_summary

    with pytest.raises(BadRunFiles, match="field 'probe' must be an object or null"):
        check_summary(tmp_path, {"last10": {}, "config": {"seed": 0}, "probe": [1]})


def test_paper_cells_may_name_a_plugins_outputs_and_say_which_runs_write_them(probe):
    from fl_poison.paper_comparison import metric_names, metric_requirement

    assert {"probe_value", "last10.probe_value", "probe.count"} <= set(metric_names())
    assert owner_of("max_over_rounds.probe_value") == ("attack", PROBE)
    what, runs = metric_requirement("probe.count")
    assert what == f"attack = {PROBE}" and runs({"attack": PROBE}) and not runs({"attack": "none"})


def test_builtin_outputs_keep_their_names():
    from fl_poison.measurement import class_metrics, final_columns, section_metrics, series_columns

    assert {"backdoor_accuracy", "gan_recognised"} <= set(series_columns())
    assert "backdoor_accuracy" in final_columns() and "ada-target" in class_metrics()
    assert {"gan.recognised_mean", "gan.recognised_final"} <= set(section_metrics())


@pytest.mark.parametrize(("defense", "k", "f"), [("krum", 11, 4), ("multi-krum", 9, 3), ("bulyan", 11, 2),
                                                 ("bulyan", 15, 3), ("dnc", 11, 4), ("median", 11, 4)])
def test_each_rule_declares_the_f_of_num_byzantine_minus_one(defense, k, f):
    assert plugins.get("defense", defense).largest_f(k) == f


def test_nnm_uses_the_configured_rules_budget():
    """Bulyan's f for 11 updates is 2, Krum's 4: NNM averages each row with its K - f nearest neighbours."""
    from fl_poison.updates import infer_layout
    from strategies.registry import build_strategy

    updates = np.random.default_rng(0).normal(size=(11, 5)).astype(np.float32)
    layout = infer_layout(["fc.weight"], [np.zeros((1, 5), np.float32)])
    for defense, f in (("bulyan", 2), ("krum", 4)):
        cfg = resolve({"defense": defense, "num-clients": 11, "clients-per-round": 11, "pre-aggregation": "nnm"})
        strategy = build_strategy(cfg)
        agg = strategy._mix_and_aggregate(updates, np.ones(11), layout, list(range(11)), 1)
        assert agg.info["pre_aggregation"]["num_byzantine"] == f
