"""The adversary's seat on the Grid: median-honest train-and-scale from a hand-made round, markers stripped."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

from clients.attacks.train_and_scale import MedianHonestScaling
from fl_poison.adversary import MARKER, AdversarySeat, seat_for
from fl_poison.app.replies import CountingGrid, innermost
from fl_poison.config import resolve
from flower_replies import make_reply

GLOBAL = {"w": np.zeros(4, np.float32)}


class RoundGrid:
    """Answers a training exchange with the prepared replies (a hand-made round)."""

    def __init__(self, replies):
        self.replies = replies

    def send_and_receive(self, messages, *, timeout=None):
        return list(self.replies)


def _train_messages(server_identity, n: int = 1) -> list[Message]:
    content = RecordDict({"arrays": ArrayRecord({"w": Array(GLOBAL["w"])}), "config": ConfigRecord({"server-round": 3})})
    return [Message(content, 100 + i, MessageType.TRAIN) for i in range(n)]


def _reply(node: int, update: list[float], marker: bool = False):
    extra = {"unscaled-norm": float(np.linalg.norm(update))}
    if marker:
        extra[MARKER] = 1.0
    return make_reply({"w": np.asarray(update, np.float32)}, 50, node, extra)


def _round(server_identity):
    honest = [_reply(1, [1, 0, 0, 0]), _reply(2, [0, 2, 0, 0]), _reply(3, [0, 0, 3, 0])]  # norms 1, 2, 3
    bad = _reply(9, [6, 8, 0, 0], marker=True)  # norm 10
    grid = AdversarySeat(RoundGrid([honest[0], bad, *honest[1:]]), MedianHonestScaling(), lambda n: n == 9)
    return grid.send_and_receive(_train_messages(server_identity, 4))


def test_median_honest_shrinks_the_malicious_update_to_the_median_of_the_honest_norms(server_identity):
    """Honest norms 1, 2, 3 -> bound 2; 10 x 1, 0.9, ... first within 2 is 0.2: update (1.2, 1.6), norm 2."""
    replies = _round(server_identity)
    bad = replies[1]
    np.testing.assert_allclose(bad.content["arrays"]["w"].numpy(), [1.2, 1.6, 0, 0], rtol=1e-6)
    m = bad.content["metrics"]
    assert m["scale-bound"] == pytest.approx(2.0) and m["shrink-factor"] == pytest.approx(0.2)
    assert m["unscaled-norm"] == pytest.approx(10.0) and m["num-examples"] == 50
    for honest, want in zip((replies[0], replies[2], replies[3]), ([1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 3, 0])):
        np.testing.assert_array_equal(honest.content["arrays"]["w"].numpy(), want)  # untouched


def test_the_strategy_never_sees_the_marker(server_identity):
    """Every reply leaves the seat without the marker, so the defense cannot tell who asked for it."""
    for r in _round(server_identity):
        assert MARKER not in r.content["metrics"]


def test_a_marker_from_a_node_outside_the_threat_model_is_stripped_and_ignored(server_identity):
    liar = _reply(5, [30, 40, 0, 0], marker=True)
    grid = AdversarySeat(RoundGrid([_reply(1, [1, 0, 0, 0]), liar]), MedianHonestScaling(), lambda n: False)
    out = grid.send_and_receive(_train_messages(server_identity, 2))
    np.testing.assert_array_equal(out[1].content["arrays"]["w"].numpy(), [30, 40, 0, 0])
    assert MARKER not in out[1].content["metrics"]


def test_a_malicious_reply_without_the_marker_passes_unchanged(server_identity):
    """Outside the attack window an attacker trains honestly and asks for nothing."""
    quiet = _reply(9, [6, 8, 0, 0])
    grid = AdversarySeat(RoundGrid([_reply(1, [1, 0, 0, 0]), quiet]), MedianHonestScaling(), lambda n: n == 9)
    out = grid.send_and_receive(_train_messages(server_identity, 2))
    np.testing.assert_array_equal(out[1].content["arrays"]["w"].numpy(), [6, 8, 0, 0])


def test_the_seat_is_taken_only_for_median_honest_and_the_engine_name_is_the_innermost_grid():
    base = RoundGrid([])
    plain = resolve({"attack": "train-and-scale", "source-class": 1, "target-class": 7})
    assert seat_for(base, plain, {1}) is base
    for attack, extra in (("train-and-scale", {"target-class": 7}), ("ada", {})):
        cfg = resolve({"attack": attack, "source-class": 1, "scale-bound": "median-honest", **extra})
        seat = seat_for(base, cfg, {1})
        assert isinstance(seat, AdversarySeat) and seat.is_malicious(1) and not seat.is_malicious(2)
        assert innermost(CountingGrid(seat)) is base


def _authors_run(tmp_path, workers: int):
    import json

    from fl_poison.app.client_app import app
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.parallel import close_grid, make_grid

    cfg = resolve({"dataset": "digits", "num-clients": 8, "clients-per-round": 8, "num-rounds": 2, "seed": 1,
                   "attack": "ada", "source-class": 3, "num-malicious": 2, "honest-holds-source": False,
                   "injection-rate": 0.5, "scale-bound": "median-honest", "ada-target": "first",
                   "aggregation-weights": "uniform", "defense": "ndc", "ndc-mode": "drop", "ndc-bound": "median",
                   "figures": False, "run-name": f"w{workers}", "engine-workers": workers})
    grid = make_grid(cfg.to_dict(), 8, workers, app)
    try:
        s = run_experiment(grid, cfg, out_dir=tmp_path)
    finally:
        close_grid(grid)
    return s, [json.loads(line) for line in (tmp_path / f"w{workers}" / "defense.jsonl").read_text().splitlines()]


def test_median_honest_end_to_end_in_the_serial_and_the_parallel_engine(tmp_path):
    """Each malicious norm the defense receives is within the median of that round's honest norms; same numbers
    with one worker or two."""
    serial, rounds = _authors_run(tmp_path, 1)
    for rec in rounds:
        norms = dict(zip(rec["clients"], rec["info"]["norms"]))
        median = np.median([n for c, n in norms.items() if c not in serial["malicious_clients"]])
        assert all(norms[c] <= median * (1 + 1e-5) for c in rec["malicious_selected"]) and rec["malicious_selected"]
    parallel, _ = _authors_run(tmp_path, 2)
    assert parallel["accuracy"] == serial["accuracy"] and parallel["engine"] == "ParallelGrid"
