"""Forged-update plug-ins: the adversary's seat forges only malicious replies, knowledge, buffers, bad input, one run."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

from clients.colluding import ForgeColluder
from fl_poison import plugins
from fl_poison.adversary import MARKER, AdversarySeat, seat_for
from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve
from flower_replies import make_reply

GLOBAL = {"w": np.array([1.0, 1.0], np.float32), "bn.running_mean": np.zeros(2, np.float32),
          "bn.num_batches_tracked": np.array(0, np.int64)}
HONEST = {1: [1, 0], 2: [0, 3], 3: [2, 3]}  # updates (local - global) of the benign clients
ATTACKERS = {8: [5, 2], 9: [-4, 0]}  # the attackers' honest updates


class RoundGrid:
    def __init__(self, replies):
        self.replies = replies

    def send_and_receive(self, messages, *, timeout=None):
        return list(self.replies)


def _messages(n: int) -> list[Message]:
    content = RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in GLOBAL.items()}),
                          "config": ConfigRecord({"server-round": 2})})
    return [Message(content, 100 + i, MessageType.TRAIN) for i in range(n)]


def _state(node: int, update: list[float]) -> dict:
    return {"w": GLOBAL["w"] + np.asarray(update, np.float32), "bn.running_mean": np.full(2, node, np.float32),
            "bn.num_batches_tracked": np.array(node, np.int64)}


def _reply(node: int, update: list[float], marker: bool):
    return make_reply(_state(node, update), 10, node, {MARKER: 1.0} if marker else {})


def _round(server_identity, **keys):
    cfg = resolve({"attack": "ipm", "seed": 1, **keys})
    replies = [_reply(n, u, False) for n, u in HONEST.items()] + [_reply(n, u, True) for n, u in ATTACKERS.items()]
    seat = seat_for(RoundGrid(replies), cfg, set(ATTACKERS))
    assert isinstance(seat, AdversarySeat) and isinstance(seat.colluder, ForgeColluder)
    return {r.metadata.src_node_id: r for r in seat.send_and_receive(_messages(len(replies)))}


def _w(reply) -> np.ndarray:
    return reply.content["arrays"]["w"].numpy()


def test_ipm_omniscient_forges_from_every_honest_update(server_identity):
    """Known: the 3 benign and the 2 attackers' honest updates; mean ((1+0+2+5-4)/5, (0+3+3+2+0)/5) = (0.8, 1.6);
    -0.5 * mean = (-0.4, -0.8), sent as global (1, 1) + that."""
    out = _round(server_identity, **{"ipm-epsilon": 0.5})
    for node in ATTACKERS:
        np.testing.assert_allclose(_w(out[node]), [0.6, 0.2], rtol=1e-6)
        m = out[node].content["metrics"]
        assert m["forged"] == 1.0 and m["known-updates"] == 5 and m["forged-norm"] == pytest.approx(np.hypot(.4, .8))
        # buffers stay the attacker's own
        np.testing.assert_array_equal(out[node].content["arrays"]["bn.running_mean"].numpy(), [node, node])
        assert int(out[node].content["arrays"]["bn.num_batches_tracked"].numpy()) == node
    for node, update in HONEST.items():  # untouched
        np.testing.assert_allclose(_w(out[node]), GLOBAL["w"] + np.asarray(update, np.float32))
        assert "forged" not in out[node].content["metrics"]


def test_own_knowledge_uses_only_the_attackers_updates(server_identity):
    """Own: mean of (5, 2) and (-4, 0) = (0.5, 1); -0.5 * that = (-0.25, -0.5) -> sent (0.75, 0.5)."""
    out = _round(server_identity, **{"ipm-epsilon": 0.5, "adversary-knowledge": "own"})
    np.testing.assert_allclose(_w(out[9]), [0.75, 0.5], rtol=1e-6)
    assert out[9].content["metrics"]["known-updates"] == 2


def test_alie_own_knowledge_by_hand(server_identity):
    """Own updates (5, 2), (-4, 0): mean (0.5, 1), sample std (6.363961, 1.414214); z = 1 ->
    (-5.863961, -0.414214), sent as global + that."""
    out = _round(server_identity, attack="alie", **{"alie-z": 1.0, "adversary-knowledge": "own"})
    np.testing.assert_allclose(_w(out[8]), [1 - 5.863961, 1 - 0.414214], rtol=1e-5)
    assert out[8].content["metrics"]["alie-z"] == 1.0


def test_the_defense_never_sees_the_marker(server_identity):
    for attack in ("alie", "min-max", "ipm", "mimic"):
        for r in _round(server_identity, attack=attack).values():
            assert MARKER not in r.content["metrics"]


def test_too_few_known_updates_leave_the_round_honest(server_identity, caplog):
    """ALIE needs a spread: with own knowledge and one attacker it warns and sends the honest update."""
    cfg = resolve({"attack": "alie", "adversary-knowledge": "own"})
    replies = [_reply(1, [1, 0], False), _reply(9, [-4, 0], True)]
    seat = seat_for(RoundGrid(replies), cfg, {9})
    with caplog.at_level(logging.WARNING, logger="fl_poison.colluding"):
        out = seat.send_and_receive(_messages(2))
    np.testing.assert_allclose(_w(out[1]), [-3, 1])
    assert out[1].content["metrics"]["forged"] == 0.0 and MARKER not in out[1].content["metrics"]
    assert "1 known update" in caplog.text and "alie" in caplog.text


def test_only_colluding_attacks_take_the_seat():
    base = RoundGrid([])
    for attack in ("alie", "ipm", "min-max", "min-sum", "mimic"):
        assert isinstance(seat_for(base, resolve({"attack": attack}), {1}), AdversarySeat)
    assert isinstance(seat_for(base, resolve({"attack": "fang", "defense": "median"}), {1}), AdversarySeat)
    for attack in ("sign-flip", "gaussian"):  # forged on the client from its own update
        assert seat_for(base, resolve({"attack": attack}), {1}) is base
    assert {"alie", "ipm", "min-max", "min-sum", "fang", "mimic", "sign-flip", "gaussian"} <= set(
        plugins.plugins("attack"))


def test_sign_flip_and_gaussian_forge_on_the_client():
    """No seat: the client's own update (5, 2) is flipped to (-5, -2), sent as global (1, 1) + that; buffers kept."""
    from clients.attacks.forged import Gaussian, SignFlip

    own = _state(8, [5, 2])
    [(state, metrics)] = SignFlip.forge_round(resolve({"attack": "sign-flip"}), GLOBAL, [own], [],
                                              np.random.default_rng(0), 1)
    np.testing.assert_allclose(state["w"], [-4, -1])
    assert state["bn.num_batches_tracked"] == 8 and metrics["forged-norm"] == pytest.approx(np.hypot(5, 2))
    [(state, _)] = Gaussian.forge_round(resolve({"attack": "gaussian", "noise-std": 0}), GLOBAL, [own], [],
                                        np.random.default_rng(0), 1)
    np.testing.assert_array_equal(state["w"], GLOBAL["w"])  # N(0, 0) update: the global weights


@pytest.mark.parametrize("keys, bad", [
    ({"attack": "fang", "defense": "fedavg"}, "fang-variant"),
    ({"attack": "fang", "defense": "bulyan"}, "fang-variant"),
    ({"attack": "gaussian", "noise-std": -1}, "noise-std"),
    ({"attack": "min-max", "minmax-perturbation": "gradient"}, "minmax-perturbation"),
    ({"attack": "ipm", "ipm-epsilon": 0}, "ipm-epsilon"),
    ({"attack": "alie", "alie-z": -2}, "alie-z"),
    ({"attack": "alie", "adversary-knowledge": "partial"}, "adversary-knowledge"),
])
def test_bad_input_names_the_key(keys, bad):
    with pytest.raises(ConfigError) as err:
        resolve(keys)
    assert err.value.key == bad
    assert resolve({"attack": "fang", "defense": "fedavg", "fang-variant": "krum"})["fang-variant"] == "krum"


def test_cli_refuses_fang_without_a_variant_with_exit_2(capsys):
    assert main(["run", "--set", "attack=fang", "--set", "defense=fedavg"]) == 2
    err = capsys.readouterr().err
    assert "fang-variant" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _run(tmp_path, name: str, **over):
    from fl_poison.app.client_app import app
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.inprocess import inprocess_grid
    from fl_poison.results import read_rounds

    cfg = resolve({"dataset": "digits", "num-clients": 6, "clients-per-round": 6, "num-rounds": 2, "seed": 3,
                   "figures": False, "num-malicious": 2, "engine-workers": 1, "run-name": name, **over})
    summary = run_experiment(inprocess_grid(cfg.to_dict(), cfg["num-clients"], app), cfg, out_dir=tmp_path)
    return summary, read_rounds(tmp_path / name)


@pytest.mark.slow
def test_ipm_end_to_end_reaches_fedavg_and_lowers_accuracy(tmp_path):
    """Digits, 6 clients, 2 attackers, FedAvg. Round 1 (before attack-start-round) the attackers are honest and
    unmarked; round 2 the strategy receives the forged -10 * mean updates, and accuracy falls far below no attack."""
    clean, _ = _run(tmp_path, "none")
    s, rows = _run(tmp_path, "ipm", attack="ipm", **{"ipm-epsilon": 10, "attack-start-round": 2})
    assert rows[1]["malicious_forged"] is None  # honest round: no forge ran
    r = rows[2]
    assert r["malicious_forged"] == 1.0 and r["malicious_known_updates"] == 6
    assert r["malicious_update_norm_mean"] == pytest.approx(r["malicious_forged_norm"], rel=1e-4)
    assert r["malicious_update_norm_mean"] > 5 * r["honest_update_norm_mean"]
    assert s["accuracy"] < clean["accuracy"] - 0.3


# ---------------------------------------------------------------- on the client (ForgedUpdate.local_work)

def test_a_client_side_forge_replies_its_own_update_forged_and_a_colluder_marks_its_honest_reply():
    from clients.attacks.forged import Alie, SignFlip
    from test_train_and_scale import _digit_round, _trained

    base = {"dataset": "digits", "seed": 2, "batch-size": 16, "lr": 0.02, "num-malicious": 1}
    cfg = resolve({**base, "attack": "sign-flip"})
    r = _digit_round(cfg, server_round=3)
    honest = _trained(r, r.y)
    res = SignFlip(0, cfg).local_work(r)
    update = {k: honest[k] - r.global_state[k] for k in honest}
    for k in honest:  # minus its honest update, from the received model
        np.testing.assert_allclose(res.state[k], r.global_state[k] - update[k], atol=1e-6)
    norm = float(np.sqrt(sum((v.astype(np.float64) ** 2).sum() for v in update.values())))
    assert res.metrics["forged"] == 1.0 and res.metrics["known-updates"] == 1.0 and MARKER not in res.metrics
    assert res.metrics["forged-norm"] == pytest.approx(norm, rel=1e-5)

    # outside the attack window: the honest reply, nothing forged
    late = resolve({**base, "attack": "sign-flip", "attack-start-round": 5})
    r = _digit_round(late, server_round=3)
    honest = _trained(r, r.y)
    res = SignFlip(0, late).local_work(r)
    for k, v in honest.items():
        np.testing.assert_array_equal(res.state[k], v)
    assert "forged" not in res.metrics and MARKER not in res.metrics

    # a colluding attack forges at the seat: the client sends its honest reply, marked for the seat
    alie = resolve({**base, "attack": "alie"})
    r = _digit_round(alie, server_round=3)
    honest = _trained(r, r.y)
    res = Alie(0, alie).local_work(r)
    for k, v in honest.items():
        np.testing.assert_array_equal(res.state[k], v)
    assert res.metrics[MARKER] == 1.0 and "forged" not in res.metrics


def test_fangs_run_keys_become_its_forge_arguments():
    from clients.attacks.forged import Fang

    base = {"dataset": "digits", "attack": "fang", "num-malicious": 1, "num-clients": 10, "clients-per-round": 10}
    flat = np.array([0.5, -1.0])
    cfg = resolve({**base, "defense": "median", "fang-direction": "mean", "fang-space": "update", "fang-b": 3.0,
                   "trim-beta": 0.2})
    assert Fang.forge_params(cfg, 7, flat, "own") == {
        "variant": "trimmed-mean", "num_clients": 7, "how": "mean", "partial": True, "b": 3.0, "space": "update",
        "offset": flat, "trim_beta": 0.2, "median": True}
    params = Fang.forge_params(resolve({**base, "defense": "trimmed-mean"}), 9, flat, "omniscient")
    assert params == {"variant": "trimmed-mean", "num_clients": 9, "how": "aggregate", "partial": False, "b": 2.0,
                      "space": "model", "offset": flat, "trim_beta": 0.1, "median": False}
    krum = Fang.forge_params(resolve({**base, "defense": "multi-krum"}), 9, flat, "omniscient")
    assert krum["variant"] == "krum" and krum["median"] is False


@pytest.fixture
def recorder():
    """A stand-in attack: ForgedUpdate's round logic with a forge that records what it was given (unregistered after)."""
    from clients.colluding import ForgedUpdate

    seen: list = []

    class Recorder(ForgedUpdate):
        name = "recorder"

        @staticmethod
        def forge(known, num_attackers, rng, report, **params):
            seen.append((known.copy(), num_attackers, rng.integers(1 << 30), params))
            report["recorded"] = 7.0
            return np.tile(np.arange(known.shape[1], dtype=float), (num_attackers, 1)) * 0.5

    Recorder.seen = seen
    yield Recorder
    plugins.unregister("attack", "recorder")


def test_forged_names_updates_and_states_keep_buffers_integers_shapes_and_dtypes():
    from clients.colluding import forged_names, updates_of, with_update

    g = {"conv.weight": np.zeros((2, 2), np.float32), "bn.running_var": np.ones(2, np.float32),
         "steps": np.array(3, np.int64), "fc.bias": np.array([1.0, 2.0], np.float64)}
    names = forged_names(g)
    assert names == ["conv.weight", "fc.bias"]  # state order; no buffer, no integer array
    s = {**g, "conv.weight": np.array([[1, 2], [3, 4]], np.float32), "fc.bias": np.array([0.5, 2.5])}
    rows = updates_of([s, g], g, names)
    assert rows.dtype == np.float64 and rows.shape == (2, 6)
    np.testing.assert_array_equal(rows, [[1, 2, 3, 4, -0.5, 0.5], [0, 0, 0, 0, 0, 0]])
    out = with_update(np.array([1, 1, 1, 1, 10, 20.0]), s, g, names)
    assert out["conv.weight"].dtype == np.float32 and out["conv.weight"].shape == (2, 2)
    np.testing.assert_array_equal(out["conv.weight"], np.ones((2, 2)))
    np.testing.assert_array_equal(out["fc.bias"], [11.0, 22.0])
    assert out["bn.running_var"] is s["bn.running_var"] and out["steps"] is s["steps"]


def test_the_forge_sees_benign_then_own_updates_and_its_replies_carry_the_round_metrics(recorder):
    cfg = resolve({"attack": "ipm", "seed": 3})
    g = {"w": np.zeros(2)}
    own = [{"w": np.array([5.0, 2.0])}, {"w": np.array([-4.0, 0.0])}]
    benign = [{"w": np.array([1.0, 0.0])}]
    out = recorder.forge_round(cfg, g, own, benign, np.random.default_rng(0), 4)
    known, n_att, _, params = recorder.seen[0]
    np.testing.assert_array_equal(known, [[1, 0], [5, 2], [-4, 0]])  # omniscient: benign first, then own
    assert n_att == 2 and params == {}
    (state, metrics), _ = out
    np.testing.assert_array_equal(state["w"], [0.0, 0.5])
    assert metrics == {"forged": 1.0, "forged-norm": 0.5, "known-updates": 3.0, "recorded": 7.0}
    recorder.forge_round(resolve({"attack": "ipm", "adversary-knowledge": "own"}), g, own, benign,
                                 np.random.default_rng(0), 4)
    np.testing.assert_array_equal(recorder.seen[1][0], [[5, 2], [-4, 0]])


def test_the_colluder_seeds_its_generator_from_the_run_seed_and_the_round_and_says_why_it_did_not_forge(recorder, caplog):
    cfg = resolve({"attack": "ipm", "seed": 3, "adversary-knowledge": "own"})
    g = {"w": np.zeros(2)}
    mal = [({"w": np.array([5.0, 2.0])}, {"loss": 1.0}), ({"w": np.array([-4.0, 0.0])}, {"loss": 2.0})]
    col = ForgeColluder(recorder, cfg)
    out = col.replace(6, g, mal, [])
    col.replace(6, g, mal, [])
    col.replace(7, g, mal, [])
    draws = [d for _, _, d, _ in recorder.seen]
    assert draws[0] == draws[1] != draws[2]
    assert draws[0] == np.random.default_rng([3, 6, 0xF0F6]).integers(1 << 30)
    assert out[1][1] == {"loss": 2.0, "forged": 1.0, "forged-norm": 0.5, "known-updates": 2.0, "recorded": 7.0}
    with caplog.at_level(logging.WARNING, logger="fl_poison.colluding"):
        honest = col.replace(6, g, mal[:1], [])
    assert honest == [(mal[0][0], {"loss": 1.0, "forged": 0.0})]
    assert ("attack=recorder, round 6: 1 known update(s) (knowledge: own), recorder needs 2: the attackers send "
            "their honest updates this round") in caplog.text
