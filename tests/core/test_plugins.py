"""The plug-in interface: schema assembly, the README recipe, the per-node store, label flipping on it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from flwr.app import RecordDict

from clients.behaviour import Behaviour, behaviour_class
from clients.store import NodeStore
from fl_poison import config as C
from fl_poison import plugins

README = Path(__file__).resolve().parents[2] / "README.md"


def _recipe(tag: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- recipe:{tag} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"README has no recipe:{tag} block"
    return m.group(1)


@pytest.fixture
def recipe_plugins():
    ns: dict = {}
    exec(compile(_recipe("attack"), "README:attack", "exec"), ns)
    exec(compile(_recipe("defense"), "README:defense", "exec"), ns)
    yield ns
    plugins.unregister("attack", "boost-example")
    plugins.unregister("defense", "norm-cap-example")


def test_builtin_plugins_and_their_keys():
    s = C.schema()
    assert set(plugins.plugins("attack")) >= {"none", "label-flip", "untargeted-flip"}
    assert set(plugins.plugins("defense")) >= {"fedavg", "median", "krum", "multi-krum", "bulyan", "lfighter"}
    assert s.owners["trim-beta"] == ("defense trimmed-mean",)
    assert set(s.owners["num-byzantine"]) == {"defense krum", "defense multi-krum", "defense bulyan", "defense dnc"}
    assert s.owners["injection-rate"] == ("attack ada", "attack label-flip", "attack train-and-scale")  # one shared Key
    assert s.owners["dataset"] == ("core",)
    # choices come from the registry
    assert "lfighter" in s.by_name["defense"].choices and "label-flip" in s.by_name["attack"].choices


def test_conflicting_key_declarations_are_refused():
    class A(Behaviour):
        name = "conflict-a-example"
        keys = (C.Key("shared-example", int, 1, "x"),)

    class B(Behaviour):
        name = "conflict-b-example"
        keys = (C.Key("shared-example", int, 2, "x"),)

    try:
        with pytest.raises(TypeError, match="shared-example"):
            C.schema()
    finally:
        plugins.unregister("attack", "conflict-a-example")
        plugins.unregister("attack", "conflict-b-example")
    assert "shared-example" not in C.schema().by_name


def test_core_key_cannot_be_redeclared():
    class Bad(Behaviour):
        name = "redeclare-example"
        keys = (C.Key("seed", int, 3, "x"),)

    try:
        with pytest.raises(TypeError, match="core key 'seed'"):
            C.schema()
    finally:
        plugins.unregister("attack", "redeclare-example")


def test_recipe_plugins_join_the_schema_and_validate(recipe_plugins):
    cfg = C.resolve({"attack": "boost-example", "boost-factor": "5", "defense": "norm-cap-example",
                     "norm-cap": 2})
    assert cfg["boost-factor"] == 5.0 and cfg["norm-cap"] == 2.0
    with pytest.raises(C.ConfigError, match="'boost-factor'.*a number > 0"):
        C.resolve({"attack": "boost-example", "boost-factor": -1})
    lines = list(C.describe_keys())
    assert "# attack boost-example" in lines and "# defense norm-cap-example" in lines
    assert "boost-factor" in C.render_flwr_config()
    from strategies.registry import build_strategy

    s = build_strategy(C.resolve({"defense": "norm-cap-example", "norm-cap": 2.5}))
    assert type(s).__name__ == "NormCap" and s.cap == 2.5


def test_recipe_plugins_unregistered_leave_no_trace(recipe_plugins):
    plugins.unregister("attack", "boost-example")
    with pytest.raises(C.ConfigError, match="unknown key"):
        C.resolve({"boost-factor": 2})


def test_recipe_run_end_to_end(recipe_plugins, tmp_path):
    """The README's two plug-ins in a real federated run: the boosted attackers are the ones capped."""
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.inprocess import inprocess_grid

    cfg = C.resolve({"attack": "boost-example", "boost-factor": 50, "defense": "norm-cap-example",
                     "norm-cap": 1.5, "num-clients": 6, "clients-per-round": 6, "num-malicious": 2,
                     "num-rounds": 2, "figures": False, "train-samples": 600, "run-name": "recipe"})
    summary = run_experiment(inprocess_grid(cfg.to_dict(), 6), cfg, out_dir=tmp_path)
    det = summary["detection"]
    assert det["tp"] == 4 and det["fp"] == 0  # both attackers flagged in both rounds, nobody else


def test_colluding_recipe_forges_from_the_seat():
    """The README's colluding block: the seat's colluder sends -mean of the known updates (updates 1 and 3 of
    w, omniscient: mean 2 -> -2, sent as global 0 + that)."""
    from fl_poison.adversary import AdversarySeat, seat_for

    ns: dict = {}
    exec(compile(_recipe("colluding"), "README:colluding", "exec"), ns)
    try:
        cfg = C.resolve({"attack": "flip-mean-example"})
        seat = seat_for(object(), cfg, {9})
        assert isinstance(seat, AdversarySeat)
        g = {"w": np.zeros(1, np.float32)}
        [(state, metrics)] = seat.colluder.replace(1, g, [({"w": np.ones(1, np.float32)}, {})],
                                                   [{"w": np.full(1, 3, np.float32)}])
        assert state["w"].tolist() == [-2.0] and metrics["forged"] == 1.0
    finally:
        plugins.unregister("attack", "flip-mean-example")


def test_node_store_round_trip_keeps_shapes_and_prefixes():
    state = RecordDict()
    a, b = NodeStore(state, "a"), NodeStore(state, "b")
    a.put_arrays("gen", {"w": np.arange(6.0).reshape(2, 3), "n": np.array(7)})
    a.put_values("meta", {"count": 3})
    assert b.get_arrays("gen") is None and b.get_values("meta") is None
    got = a.get_arrays("gen")
    assert got["w"].shape == (2, 3) and got["n"].shape == () and int(got["n"]) == 7
    assert a.get_values("meta") == {"count": 3}


def test_store_persists_across_rounds_in_the_inprocess_engine(tmp_path):
    """An attack's per-node store lives in the node's Context.state: it sees every round it trained."""
    from fl_poison.app.experiment import run_experiment
    from fl_poison.engine.inprocess import inprocess_grid

    class Counter(Behaviour):
        name = "counter-example"
        malicious = True

        def local_work(self, r):
            seen = (r.store.get_values("rounds") or {"list": []})["list"]
            r.store.put_values("rounds", {"list": [*seen, r.server_round]})
            result = super().local_work(r)
            result.metrics["rounds-seen"] = len(seen) + 1  # passed through to rounds.csv
            return result

    try:
        cfg = C.resolve({"attack": "counter-example", "num-clients": 4, "clients-per-round": 4,
                         "num-malicious": 1, "num-rounds": 3, "figures": False, "train-samples": 400,
                         "run-name": "store"})
        grid = inprocess_grid(cfg.to_dict(), 4)
        summary = run_experiment(grid, cfg, out_dir=tmp_path)
        (attacker,) = summary["malicious_clients"]
        ctx = grid._contexts[1001 + attacker]
        assert NodeStore(ctx.state, "counter-example").get_values("rounds") == {"list": [1, 2, 3]}
        honest = grid._contexts[1001 + (attacker + 1) % 4]
        assert "counter-example.rounds" not in honest.state
        from fl_poison.results import read_rounds

        rows = read_rounds(tmp_path / "store")
        assert [r["malicious_rounds_seen"] for r in rows[1:]] == [1.0, 2.0, 3.0]
        assert all(r["honest_rounds_seen"] is None for r in rows[1:])
    finally:
        plugins.unregister("attack", "counter-example")


def test_label_flip_is_data_only_and_honest_outside_window():
    cfg = C.resolve({"attack": "label-flip", "source-class": 7, "target-class": 1, "attack-start-round": 3})
    cls = behaviour_class(cfg, True)
    b = cls(0, cfg)
    assert cls.name == "label-flip" and b.data_only and b.active(3) and not b.active(2)
    assert behaviour_class(cfg, False) is Behaviour


def test_discovery_holds_no_registry_lock_while_importing(monkeypatch):
    """Regression: Flower's simulation imports the ClientApp on one thread while the ServerApp thread
    discovers plug-ins; a registry lock held across those imports deadlocked `flwr run .` (a module
    being imported by the other thread calls `register`, which needs that lock)."""
    import importlib
    import threading

    seen: list[bool] = []
    real_import = importlib.import_module

    def checking_import(name, *args):
        free = []
        t = threading.Thread(target=lambda: free.append(plugins._lock.acquire(timeout=0.5) and
                                                        (plugins._lock.release() or True)))
        t.start()
        t.join()
        seen.append(free == [True])
        return real_import(name, *args)

    monkeypatch.setattr(plugins, "_discovered", False)
    monkeypatch.setattr(plugins.importlib, "import_module", checking_import)
    plugins.discover()
    assert seen and all(seen), "the registry lock was held while importing a plug-in module"
    assert plugins._discovered


def test_node_store_without_a_prefix_keeps_the_bare_name():
    state = RecordDict()
    NodeStore(state).put_values("meta", {"count": 3})
    assert list(state.keys()) == ["meta"] and NodeStore(state).get_values("meta") == {"count": 3}
