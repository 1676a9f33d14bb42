"""The defenses as Flower Strategies: agreement with Flower's own, per-round reporting, robustness."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, RecordDict
from flwr.serverapp.strategy import Bulyan as FlBulyan
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg
from flwr.serverapp.strategy import Krum as FlKrum
from flwr.serverapp.strategy import MultiKrum as FlMultiKrum

from flower_replies import arrays_of, make_reply
from strategies import defenses as D
from flower_replies import StubGrid
from strategies.registry import STRATEGIES, build_strategy
from fl_poison.config import resolve
from flower_replies import StubGrid as _Grid, array_record
from strategies import base as B
from strategies.rules import robust as R


@pytest.fixture(autouse=True)
def _server_identity(server_identity):
    """Every test here builds Flower messages (conftest's ``server_identity``)."""


def _global(rng, shapes=((4, 3), (3,), (5, 4), (5,))):
    return [rng.normal(size=s).astype(np.float32) for s in shapes]


def _clients(rng, g, k, scale=0.1):
    return [[a + scale * rng.normal(size=a.shape).astype(np.float32) for a in g] for _ in range(k)]


def _prime(strategy, g, nodes):
    """configure_train records the global model the replies are updates of."""
    record = ArrayRecord([np.asarray(a) for a in g])
    msgs = list(strategy.configure_train(1, record, ConfigRecord(), StubGrid(nodes)))
    return record, msgs


PAIRS = [
    ("fedavg", lambda: D.FedAvgDefense(), lambda: FedAvg(), 7),
    ("median", lambda: D.Median(), lambda: FedMedian(), 8),
    ("trimmed-mean", lambda: D.TrimmedMean(beta=0.2), lambda: FedTrimmedAvg(beta=0.2), 10),
    ("krum", lambda: D.Krum(num_byzantine=2), lambda: FlKrum(num_malicious_nodes=2), 9),
    ("multi-krum", lambda: D.MultiKrum(num_byzantine=2, keep=4),
     lambda: FlMultiKrum(num_malicious_nodes=2, num_nodes_to_select=4), 9),
    # Flower's one-pass selection is our switch; the default is the paper's iterated Krum
    ("bulyan", lambda: D.Bulyan(num_byzantine=2, selection="flower"), lambda: FlBulyan(num_malicious_nodes=2), 11),
]


@pytest.mark.parametrize("name,ours,theirs,k", PAIRS, ids=[p[0] for p in PAIRS])
def test_agrees_with_flowers_own_strategy(name, ours, theirs, k):
    rng = np.random.default_rng(k)
    g = _global(rng)
    clients = _clients(rng, g, k)
    clients[0] = [a + 5.0 for a in clients[0]]  # an outlier, so the rules actually differ from the mean
    sizes = rng.integers(20, 200, size=k)
    ours_s = ours()
    _prime(ours_s, g, range(100, 100 + k))
    mine, metrics = ours_s.aggregate_train(1, [make_reply(c, n, 100 + i) for i, (c, n) in enumerate(zip(clients, sizes))])
    ref, _ = theirs().aggregate_train(1, [make_reply(c, n, 100 + i) for i, (c, n) in enumerate(zip(clients, sizes))])
    for a, b in zip(arrays_of(mine), arrays_of(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert metrics["num-valid"] == k and len(metrics["kept"]) == k
    if name in ("krum", "multi-krum", "bulyan"):
        assert metrics["kept"][0] == 0  # the outlier is never selected
        assert sum(metrics["kept"]) == {"krum": 1, "multi-krum": 4, "bulyan": k - 4}[name]


def _root_is_the_mean(s, clients):
    """FLTrust's server update in these generic tests: the clients' mean model (as if its root data were theirs)."""
    if s.name == "fltrust":
        s.server_update = lambda names, arrays, rnd: [np.mean([c[i] for c in clients], axis=0)
                                                      for i in range(len(names))]


def test_every_defense_reports_clients_kept_and_weights():
    rng = np.random.default_rng(0)
    g = _global(rng)
    for name, cls in STRATEGIES.items():
        s = build_strategy(resolve({"defense": name, "num-clients": 11, "clients-per-round": 11}))
        _prime(s, g, range(11))
        clients = _clients(rng, g, 11)
        _root_is_the_mean(s, clients)
        arrays, m = s.aggregate_train(1, [make_reply(c, 50, i) for i, c in enumerate(clients)])
        assert arrays is not None, name
        assert m["clients"] == list(range(11)), name
        assert len(m["kept"]) == 11 and len(m["weights"]) == 11, name
        rep = s.last_report
        assert rep.server_round == 1 and len(rep.train_accuracy) == 11
        kept = np.asarray(m["kept"], dtype=bool)
        assert kept.any(), name
        w = np.asarray(m["weights"])
        if np.isfinite(w).all():  # example / defense shares: a distribution over the kept clients
            assert np.all(w >= 0) and w.sum() == pytest.approx(1.0), name
            assert name == "ndc" or np.all(w[~kept] == 0), name  # NDC's clipped clients still count
        # the new model lies in the box spanned by the old model and the kept (NDC: all) clients' models
        models = [g] + [c for c, k in zip(clients, kept) if k or name == "ndc"]
        for i, a in enumerate(arrays_of(arrays)):
            stack = np.stack([mm[i] for mm in models])
            assert np.all(a >= stack.min(axis=0) - 1e-5) and np.all(a <= stack.max(axis=0) + 1e-5), name


def test_client_ids_map_node_ids_in_reports():
    rng = np.random.default_rng(1)
    g = _global(rng)
    big = [2**63 + 5, 2**64 - 7, 12345]
    s = D.FedAvgDefense(client_ids={big[0]: 0, big[1]: 1})
    _prime(s, g, big)
    _, m = s.aggregate_train(1, [make_reply(c, 10, n) for c, n in zip(_clients(rng, g, 3), big)])
    assert m["clients"] == [0, 1, 12345]


def test_invalid_replies_are_dropped_and_reported():
    rng = np.random.default_rng(2)
    g = _global(rng)
    s = D.Median()
    record, msgs = _prime(s, g, range(6))
    good = [make_reply(c, 30, i) for i, c in enumerate(_clients(rng, g, 3))]
    nan = make_reply([np.full_like(a, np.nan) for a in g], 30, 3)
    inf = make_reply([a + np.inf for a in g], 30, 4)
    shape = make_reply([np.zeros((2, 2), np.float32)] + g[1:], 30, 5)
    zero = make_reply(g, 0, 6)
    err = Message(Error(code=2, reason="boom"), reply_to=Message(RecordDict(), 99, "train"))
    arrays, m = s.aggregate_train(1, good + [nan, inf, shape, zero, err])
    assert arrays is not None and m["num-valid"] == 3 and m["num-invalid"] == 5
    assert sorted(m["invalid-clients"]) == [3, 4, 5, 6, 99]
    assert all(np.isfinite(a).all() for a in arrays_of(arrays))
    ref, _ = FedMedian().aggregate_train(1, [make_reply(c, 30, i) for i, c in enumerate(
        [[a.numpy() for a in [r.content["arrays"][k] for k in r.content["arrays"].keys()]] for r in good])])
    for a, b in zip(arrays_of(arrays), arrays_of(ref)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert "boom" in s.last_report.invalid[99]


def test_nothing_valid_keeps_the_model_and_says_so():
    rng = np.random.default_rng(3)
    g = _global(rng)
    s = D.LFighter()
    _prime(s, g, range(2))
    arrays, m = s.aggregate_train(1, [make_reply([np.full_like(a, np.nan) for a in g], 5, 0)])
    assert arrays is None and m["num-valid"] == 0 and m["updated"] == 0 and m["num-invalid"] == 1


def _own_math():
    from strategies.rules.flame import flame
    from strategies.rules.fltrust import fltrust
    from strategies.rules.norm_clipping import ndc
    from strategies.rules.signguard import signguard

    round_rng = lambda: np.random.default_rng([0, 1])  # noqa: E731 - the strategies' default seed, round 1
    return {"ndc": lambda u, w: ndc(u, w, bound="median", mode="clip"),
            "signguard": lambda u, w: signguard(u, w, rng=round_rng()),
            "flame": lambda u, w: flame(u, w, rng=round_rng()),
            "fltrust": lambda u, w: fltrust(u, w, server_update=u.mean(axis=0))}


#: rules whose result on one / two / equal clients is not simply their mean: (updates, weights) -> Aggregation
OWN_MATH = _own_math()


def _by_own_math(name, g, clients):
    """The global model plus the pure rule's aggregate of the clients' equally weighted updates, per array."""
    upd = np.stack([np.concatenate([(a - b).ravel() for a, b in zip(c, g)]) for c in clients]).astype(float)
    flat = np.concatenate([a.ravel() for a in g]) + OWN_MATH[name](upd, np.full(len(clients), 10.0)).update
    return np.split(flat, np.cumsum([a.size for a in g])[:-1])


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("k", [1, 2])
def test_one_or_two_clients_do_not_crash(name, k):
    rng = np.random.default_rng(k)
    g = _global(rng)
    s = STRATEGIES[name](min_available_nodes=1, min_train_nodes=1)
    _prime(s, g, range(k))
    clients = _clients(rng, g, k)
    _root_is_the_mean(s, clients)
    arrays, m = s.aggregate_train(1, [make_reply(c, 10, i) for i, c in enumerate(clients)])
    assert m["num-valid"] == k and arrays is not None, s.last_report.info
    got = arrays_of(arrays)
    if name in OWN_MATH:  # median-norm clipping (NDC, SignGuard, FLAME), FLAME's noise, FLTrust: the rule's own math
        expected = _by_own_math(name, g, clients)
    elif k == 1 or name == "krum":  # one client: its model; Krum with 2 (a tie): the lower index
        expected = clients[0]
    else:  # every other rule of two equally sized clients is their mean
        expected = [(a + b) / 2 for a, b in zip(*clients)]
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, np.reshape(b, a.shape), atol=1e-5)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_identical_updates_give_that_update(name):
    rng = np.random.default_rng(4)
    g = _global(rng)
    same = _clients(rng, g, 1)[0]
    s = STRATEGIES[name]()
    _prime(s, g, range(7))
    _root_is_the_mean(s, [same] * 7)
    arrays, _ = s.aggregate_train(1, [make_reply(same, 10, i) for i in range(7)])
    if name == "foolsgold":  # identical clients are sybils to FoolsGold: all weights 0, model unchanged
        assert arrays is not None and all(np.allclose(a, b, atol=1e-6) for a, b in zip(arrays_of(arrays), g))
        assert not any(s.last_report.kept)
        return
    if name == "flame":  # FLAME adds its noise to the equal updates' mean
        same = _by_own_math(name, g, [same] * 7)
    for a, b in zip(arrays_of(arrays), same):
        np.testing.assert_allclose(a, np.reshape(b, a.shape), atol=1e-5)


def test_foolsgold_history_accumulates_across_rounds():
    """Sybils that send the same direction every round are down-weighted; the history is per client."""
    rng = np.random.default_rng(5)
    g = _global(rng)
    s = D.FoolsGold()
    direction = [rng.normal(size=a.shape).astype(np.float32) for a in g]
    for rnd in (1, 2, 3):
        _prime(s, g, range(6))
        honest = _clients(rng, g, 3, scale=1.0)
        sybils = [[a + 0.5 * d + 0.001 * rng.normal(size=a.shape).astype(np.float32) for a, d in zip(g, direction)]
                  for _ in range(3)]
        _, m = s.aggregate_train(rnd, [make_reply(c, 10, i) for i, c in enumerate(honest + sybils)])
    w = np.asarray(m["weights"])
    assert w[3:].max() < 0.05 and w[:3].min() > 0.2
    assert m["kept"][3:] == [0, 0, 0]
    assert set(s.history) == set(range(6))


def test_krum_with_too_few_valid_clients_keeps_the_model():
    rng = np.random.default_rng(6)
    g = _global(rng)
    s = D.Krum(num_byzantine=3)
    _prime(s, g, range(4))
    arrays, m = s.aggregate_train(1, [make_reply(c, 10, i) for i, c in enumerate(_clients(rng, g, 4))])
    assert arrays is None and m["updated"] == 0 and "num-byzantine" in s.last_report.info["error"]


def test_sampler_is_used_for_selection():
    s = D.FedAvgDefense(sampler=lambda rnd, nodes, k: [nodes[-1], nodes[0]], clients_per_round=2)
    msgs = list(s.configure_train(3, ArrayRecord([np.zeros(3)]), ConfigRecord(), StubGrid([7, 8, 9])))
    assert [m.metadata.dst_node_id for m in msgs] == [9, 7]
    assert msgs[0].content["config"]["server-round"] == 3


def test_clientapp_replies_pass_flowers_consistency_check():
    """Our ClientApp's train replies work with Flower's stock strategies too (one ArrayRecord, one MetricRecord)."""
    from flwr.app import Context
    from flwr.serverapp.strategy.strategy_utils import validate_message_reply_consistency

    from fl_poison.app.client_app import app
    from fl_poison.federation import new_model

    cfg = resolve({"num-clients": 3, "clients-per-round": 3, "attack": "label-flip", "source-class": 7,
                   "target-class": 1, "num-malicious": 1})
    content = RecordDict({"arrays": ArrayRecord(new_model(cfg).state_dict()),
                          "config": ConfigRecord({"server-round": 1})})
    replies = []
    for pid in range(3):
        ctx = Context(run_id=1, node_id=10 + pid, node_config={"partition-id": pid, "num-partitions": 3},
                      state=RecordDict(), run_config=cfg.to_dict())
        replies.append(app(Message(content, 10 + pid, "train"), ctx))
    validate_message_reply_consistency([r.content for r in replies], "num-examples", check_arrayrecord=True)
    arrays, _ = FedAvg().aggregate_train(1, replies)
    assert list(arrays.keys()) == list(new_model(cfg).state_dict().keys())


def test_defense_switch_keys_reach_the_strategy_parameters():
    def built(**over):
        return build_strategy(resolve({"num-clients": 11, "clients-per-round": 11, **over}))

    fg = built(defense="foolsgold")
    assert fg.scope == "all-seen" and built(defense="foolsgold", **{"foolsgold-scope": "round"}).scope == "round"
    lf = built(defense="lfighter", seed=3)
    assert (lf.include_bias, lf.n_init, lf.score, lf.seed) == (False, 10, "paper", 3)
    lf = built(defense="lfighter", **{"lfighter-bias": True, "lfighter-n-init": 2, "lfighter-score": "code"})
    assert (lf.include_bias, lf.n_init, lf.score) == (True, 2, "code")
    assert built(defense="bulyan").selection == "iterated"
    assert built(defense="bulyan", **{"bulyan-selection": "flower"}).selection == "flower"
    assert built(defense="krum").distance == "squared"
    assert built(defense="multi-krum", **{"krum-distance": "lfighter-code"}).distance == "lfighter-code"
    assert built(defense="pca").history_rounds == 1
    assert built(defense="pca", **{"pca-history-rounds": -1}).history_rounds == -1
    assert built(defense="trimmed-mean").beta == 0.1 and built(defense="ndc").mode == "clip"


@pytest.mark.parametrize(("key", "bad"), [("foolsgold-scope", "all"), ("lfighter-score", "x"),
                                          ("bulyan-selection", "once"), ("krum-distance", "l1"),
                                          ("lfighter-n-init", 0), ("pca-history-rounds", 0)])
def test_defense_switch_bad_values_name_the_key(key, bad):
    from fl_poison.config import ConfigError

    with pytest.raises(ConfigError, match=key):
        resolve({key: bad})


def _primed(strategy, global_arrays, nodes=range(4)):
    strategy.configure_train(1, array_record(global_arrays), ConfigRecord(), _Grid(nodes))
    return strategy


_G = [np.zeros((2, 3), np.float32), np.zeros(2, np.float32)]  # a 2x3 output layer and its bias


@pytest.mark.parametrize(
    ("node", "signed"), [(5, 5), (2**63 - 1, 2**63 - 1), (2**63, -(2**63)), (2**64 - 1, -1)]
)
def test_node_ids_become_signed_int64(node, signed):
    assert B._to_signed(node) == signed


def test_invalid_reply_reasons_name_the_problem(server_identity):
    s = _primed(D.FedAvgDefense(), _G)
    ok = [np.ones((2, 3), np.float32), np.ones(2, np.float32)]
    replies = [
        make_reply(ok, 1, 1),  # one example is a valid count
        make_reply([np.full((2, 3), np.nan, np.float32), ok[1]], 10, 2),
        make_reply([np.zeros((3, 2), np.float32), ok[1]], 10, 3),
        make_reply(ok, 0, 4),
        Message(Error(code=2, reason="boom"), reply_to=Message(RecordDict(), 5, "train")),
        make_reply(ok, 10, 6, {"num-examples": float("inf")}),
        make_reply(ok + [np.ones(1, np.float32)], 10, 7),  # a third array: names "0", "1", "2"
    ]
    s.aggregate_train(1, replies)
    assert s.last_report.clients == [1]
    assert s.last_report.invalid == {
        2: "non-finite values (NaN / Inf) in the arrays",
        3: "array shapes differ from the global model's (0)",
        4: "'num-examples' is 0, must be a positive number",
        5: "error reply (code 2): boom",
        6: "'num-examples' is inf, must be a positive number",
        7: "array names differ from the global model's",
    }
    # a reply with every array mis-shaped names the first three
    wide = _primed(D.FedAvgDefense(), [np.zeros(2, np.float32)] * 3 + [np.zeros((2, 3), np.float32)])
    wide.aggregate_train(1, [make_reply([np.zeros(3, np.float32)] * 3 + [np.zeros((3, 3), np.float32)], 10, 8)])
    assert wide.last_report.invalid == {8: "array shapes differ from the global model's (0, 1, 2)"}


def test_round_metrics_and_report_of_a_mixed_round(server_identity):
    """Counts, flags, NaN-free means of the client metrics, per-client norms and extra metrics."""
    s = _primed(D.Krum(num_byzantine=0), _G)  # f = 0: Krum keeps the one best client
    near = [np.full((2, 3), 0.1, np.float32), np.zeros(2, np.float32)]
    far = [np.full((2, 3), 3.0, np.float32), np.full(2, 4.0, np.float32)]
    replies = [
        make_reply(near, 10, 1, {"train-loss": 1.0, "train-accuracy": 0.5, "received-model-accuracy": 0.25,
                                 "chosen-target": 3}),
        make_reply(near, 10, 2, {"train-loss": 3.0, "train-accuracy": float("nan"), "received-model-accuracy": 0.75,
                                 "chosen-target": 4}),
        make_reply(far, 10, 3, {"train-loss": 5.0, "train-accuracy": 0.7, "received-model-accuracy": 0.5,
                                "chosen-target": 5}),
        make_reply([np.zeros((3, 3), np.float32), near[1]], 10, 4, {"train-loss": 0.0, "train-accuracy": 0.0,
                                                                     "received-model-accuracy": 0.0,
                                                                     "chosen-target": 6}),
    ]
    arrays, m = s.aggregate_train(2, replies)
    rep = s.last_report
    assert rep.server_round == 2 and rep.updated and rep.clients == [1, 2, 3]
    assert rep.kept == [True, False, False] and rep.flagged == [2, 3] and list(rep.invalid) == [4]
    np.testing.assert_allclose(rep.update_norms, [np.sqrt(6 * 0.01), np.sqrt(6 * 0.01), np.sqrt(6 * 9 + 2 * 16)],
                               rtol=1e-6)
    assert rep.client_metrics == [{"chosen-target": 3.0}, {"chosen-target": 4.0}, {"chosen-target": 5.0}]
    assert rep.train_loss == [1.0, 3.0, 5.0]
    assert (m["num-clients"], m["num-valid"], m["num-invalid"], m["num-flagged"], m["updated"]) == (4, 3, 1, 2, 1)
    assert m["train-loss"] == pytest.approx(3.0) and m["train-accuracy"] == pytest.approx(0.6)
    assert m["received-model-accuracy"] == pytest.approx(0.5)
    assert m["clients"] == [1, 2, 3] and m["kept"] == [1, 0, 0] and m["invalid-clients"] == [4]
    assert m["weights"] == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(arrays_of(arrays)[0], near[0])


def test_a_rule_that_cannot_aggregate_keeps_everyone_and_reports_why(server_identity):
    s = _primed(D.Krum(num_byzantine=2), _G)
    ok = [np.ones((2, 3), np.float32), np.ones(2, np.float32)]
    arrays, m = s.aggregate_train(1, [make_reply(ok, 10, i) for i in range(3)])
    assert arrays is None and m["updated"] == 0 and m["kept"] == [1, 1, 1]
    assert s.last_report.info["error"].startswith("num-byzantine=2 is too large for K=3 clients")


def test_capture_updates_keeps_the_output_rows(server_identity):
    s = _primed(D.FedAvgDefense(capture_updates=True), _G)
    local = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7.0, 8.0], np.float32)]
    s.aggregate_train(1, [make_reply(local, 10, 1)])
    np.testing.assert_array_equal(s.last_report.output_rows, [[[0, 1, 2, 7], [3, 4, 5, 8]]])
    plain = _primed(D.FedAvgDefense(), _G)
    plain.aggregate_train(1, [make_reply(local, 10, 1)])
    assert plain.last_report.output_rows is None


def test_default_sampling_size_uses_fraction_and_minimum(server_identity):
    """With a sampler: ``clients_per_round``, else ``max(int(n * fraction_train), min_train_nodes)``, at most n."""
    seen = []

    def sampler(rnd, nodes, k):
        seen.append((rnd, list(nodes), k))
        return nodes[:k]

    kw = dict(sampler=sampler, fraction_train=0.5, min_train_nodes=2, min_available_nodes=1)
    msgs = list(D.FedAvgDefense(**kw).configure_train(4, ArrayRecord(_G), ConfigRecord(), _Grid([9, 3, 7, 5, 1, 2])))
    assert seen[-1] == (4, [1, 2, 3, 5, 7, 9], 3) and len(msgs) == 3
    assert [m.metadata.dst_node_id for m in msgs] == [1, 2, 3] and msgs[0].content["config"]["server-round"] == 4
    D.FedAvgDefense(**kw).configure_train(1, ArrayRecord(_G), ConfigRecord(), _Grid([4, 8]))
    assert seen[-1][2] == 2  # int(2 * 0.5) = 1 < min_train_nodes = 2
    D.FedAvgDefense(clients_per_round=5, **kw).configure_train(1, ArrayRecord(_G), ConfigRecord(), _Grid([4, 8]))
    assert seen[-1][2] == 2  # never more than the connected nodes


def test_aggregate_train_before_configure_train_says_so():
    with pytest.raises(RuntimeError, match="^aggregate_train called before configure_train$"):
        D.FedAvgDefense().aggregate_train(1, [make_reply(_G, 10, 1)])


def test_the_log_names_each_dropped_client_and_a_round_left_unchanged(server_identity, caplog):
    s = _primed(D.FedAvgDefense(), _G)
    with caplog.at_level("WARNING", logger="fl_poison.strategy"):
        arrays, _ = s.aggregate_train(3, [make_reply([np.full((2, 3), np.nan, np.float32), _G[1]], 10, 2)])
    assert arrays is None
    assert "round 3: dropping client 2: non-finite values (NaN / Inf) in the arrays" in caplog.messages
    assert "round 3: no valid client update; the global model is unchanged" in caplog.messages


def test_the_log_names_the_defense_that_cannot_aggregate(server_identity, caplog):
    s = _primed(D.Krum(num_byzantine=2), _G)
    with caplog.at_level("WARNING", logger="fl_poison.strategy"):
        s.aggregate_train(1, [make_reply(_G, 10, i) for i in range(3)])
    assert any(m.startswith("round 1: krum cannot aggregate 3 update(s): num-byzantine=2") for m in caplog.messages)


def test_a_named_output_layer_is_the_one_the_defense_reads(server_identity):
    """``output_layer="fc1"``: the captured rows are fc1's, although inference would pick fc2 (the last 2-D array)."""
    names = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
    shapes = ((2, 3), (2,), (4, 2), (4,))
    zero = {n: np.zeros(sh, np.float32) for n, sh in zip(names, shapes)}
    local = {n: np.arange(np.prod(sh), dtype=np.float32).reshape(sh) + 10 * i for i, (n, sh) in
             enumerate(zip(names, shapes))}
    s = _primed(D.FedAvgDefense(capture_updates=True, output_layer="fc1"), zero)
    s.aggregate_train(1, [make_reply(local, 10, 1)])
    np.testing.assert_array_equal(s.last_report.output_rows, [[[0, 1, 2, 10], [3, 4, 5, 11]]])


def test_the_report_carries_the_defense_info(server_identity):
    s = _primed(D.Krum(num_byzantine=0), _G)
    near = [np.full((2, 3), 0.1, np.float32), np.zeros(2, np.float32)]
    s.aggregate_train(1, [make_reply(near, 10, 1), make_reply(near, 10, 2), make_reply(_G, 10, 3)])
    u = np.stack([np.r_[np.full(6, 0.1, np.float32), np.zeros(2, np.float32)]] * 2 + [np.zeros(8, np.float32)])
    assert s.last_report.info == R.krum(u, np.full(3, 10.0), num_byzantine=0).info


def test_a_non_finite_aggregate_leaves_the_model_unchanged_and_says_so(server_identity, caplog):
    """A rule (here a broken plug-in) that returns NaN must not reach the global model."""
    from strategies.rules.aggregation import Aggregation

    class NaNRule(D.FedAvgDefense):
        def aggregate_updates(self, updates, weights, layout, clients, server_round):
            agg = super().aggregate_updates(updates, weights, layout, clients, server_round)
            return Aggregation(np.full_like(agg.update, np.nan), agg.kept, agg.weights, {"rule": "nan"})

    s = _primed(NaNRule(), _G)
    with caplog.at_level("WARNING", logger="fl_poison.strategy"):
        arrays, m = s.aggregate_train(2, [make_reply(_G, 10, 1)])
    assert arrays is None and m["updated"] == 0 and m["kept"] == [1]
    assert s.last_report.info == {"rule": "nan", "non_finite_aggregate": True}
    assert "round 2: the aggregate is not finite; the global model is unchanged" in caplog.messages


def test_a_new_strategy_has_no_report_yet():
    assert D.FedAvgDefense().last_report is None


def _bn_global():
    """conv-ish weight, running_mean, running_var, num_batches_tracked (0-d int64), fc weight, fc bias."""
    return [np.zeros((3, 2), np.float32), np.zeros(3, np.float32), np.ones(3, np.float32),
            np.array(4, dtype=np.int64), np.zeros((4, 3), np.float32), np.zeros(4, np.float32)]


BUFFERS = ("1", "2", "3")  # ArrayRecord(list) names arrays "0", "1", ...


def _client(g, shift, counter):
    out = [a + shift if a.dtype.kind == "f" else np.array(counter, dtype=np.int64) for a in g]
    out[1] = g[1] + 10 * shift  # running mean moves with the client
    return out


class _Spy(D.Krum):
    seen: list = []

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        _Spy.seen.append((updates.shape, layout.names))
        return super().aggregate_updates(updates, weights, layout, clients, server_round)


def test_defense_sees_only_trainable_parameters_and_buffers_follow_the_kept_client():
    g = _bn_global()
    s = _Spy(num_byzantine=1, buffer_names=BUFFERS)
    list(s.configure_train(1, ArrayRecord([np.asarray(a) for a in g]), ConfigRecord(), _Grid(range(4))))
    shifts = [0.10, 0.11, 0.12, 5.0]  # client 3 is far away: Krum never picks it
    replies = [make_reply(_client(g, sh, 10 + i), 10 * (i + 1), i) for i, sh in enumerate(shifts)]
    arrays, m = s.aggregate_train(1, replies)
    shape, names = _Spy.seen[-1]
    assert shape == (4, 6 + 12 + 4) and names == ("0", "4", "5")  # no buffer column reached Krum
    chosen = [c for c, k in zip(s.last_report.clients, s.last_report.kept) if k]
    assert len(chosen) == 1 and chosen[0] != 3
    new = [arrays[k].numpy() for k in arrays.keys()]
    np.testing.assert_allclose(new[1], g[1] + 10 * shifts[chosen[0]], rtol=1e-6)
    assert new[3].shape == () and new[3].dtype == np.int64 and int(new[3]) == 10 + chosen[0]


def test_fedavg_buffers_are_the_example_weighted_mean_with_counters_rounded():
    g = _bn_global()
    s = D.FedAvgDefense(buffer_names=BUFFERS)
    list(s.configure_train(1, ArrayRecord([np.asarray(a) for a in g]), ConfigRecord(), _Grid(range(2))))
    arrays, _ = s.aggregate_train(1, [make_reply(_client(g, 0.0, 10), 30, 0),
                                      make_reply(_client(g, 1.0, 13), 10, 1)])
    new = [arrays[k].numpy() for k in arrays.keys()]
    np.testing.assert_allclose(new[1], 0.75 * 0 + 0.25 * 10, rtol=1e-6)
    assert new[3].shape == () and int(new[3]) == 11  # 0.75*10 + 0.25*13 = 10.75 -> 11


def test_buffers_recognised_by_name_when_the_model_does_not_say():
    from fl_poison.updates import buffer_mask

    names = ["c.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert buffer_mask(names).tolist() == [False, False, False, True, True, True]
    assert buffer_mask(names, ["bn.running_var"]).tolist() == [False] * 4 + [True, False]
