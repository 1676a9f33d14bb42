"""``initial-model``: every unusable file is one line naming the key, exit 2, before any data loads."""

from __future__ import annotations

import numpy as np
import pytest

from fl_poison.cli import main
from fl_poison.config import ConfigError, resolve

FAST = ["--set", "num-clients=3", "--set", "clients-per-round=3", "--set", "num-rounds=1", "--set", "figures=false",
        "--set", "received-eval-samples=0"]


def _fresh() -> dict[str, np.ndarray]:
    from fl_poison.federation import new_model

    return {k: v.numpy().copy() for k, v in new_model(resolve({})).state_dict().items()}


def _spoil(kind: str) -> dict[str, np.ndarray]:
    state = _fresh()
    w = state["fc1.weight"]
    if kind == "nan":
        w[0, 0] = np.nan
    elif kind == "inf":
        w[3, 1] = -np.inf
    elif kind == "beyond-float32":
        state["fc1.weight"] = w.astype(np.float64) * 1e300
    elif kind == "text":
        state["fc1.bias"] = np.array(["x"] * state["fc1.bias"].size)
    elif kind == "complex":
        state["fc1.bias"] = state["fc1.bias"] + 1j
    return state


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if the run gets as far as loading data."""
    def boom(*a, **k):
        raise AssertionError("data loaded before initial-model was refused")

    monkeypatch.setattr("fl_poison.federation.federation_for", boom)


@pytest.mark.parametrize("kind, words", [("nan", "NaN / Inf"), ("inf", "NaN / Inf"),
                                         ("beyond-float32", "float32"), ("text", "text"),
                                         ("complex", "complex")])
def test_a_model_file_the_run_cannot_use_is_refused_before_data(tmp_path, capsys, no_data, kind, words):
    path = tmp_path / "model.npz"
    np.savez(path, **_spoil(kind))
    assert main(["run", *FAST, "--set", f"initial-model={path}", "--out", str(tmp_path / "o")]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fl-poison: error: invalid value for 'initial-model'"), lines
    assert words in lines[0]


def test_a_short_text_file_is_named_as_not_an_npz(tmp_path, capsys, no_data):
    path = tmp_path / "model.npz"
    path.write_text("hello")
    assert main(["run", *FAST, "--set", f"initial-model={path}"]) == 2
    line = capsys.readouterr().err.strip()
    assert "'initial-model'" in line and "np.savez" in line and "b'hell'" in line and "pickled" not in line


def test_a_good_model_file_starts_the_run_from_its_weights(tmp_path):
    state = _fresh()
    state["fc2.bias"][:] = 0.25
    np.savez(tmp_path / "m.npz", **state)
    cfg = resolve({"initial-model": str(tmp_path / "m.npz")})
    from fl_poison.federation import initial_state

    np.testing.assert_array_equal(initial_state(cfg)["fc2.bias"], np.full(10, 0.25, np.float32))


def test_integer_counters_must_stay_integers():
    from fl_poison.relations import initial_model_problem

    fresh = {"bn.num_batches_tracked": np.array(3, dtype=np.int64), "w": np.zeros(2, np.float32)}
    assert initial_model_problem({"bn.num_batches_tracked": np.array(4), "w": np.arange(2)}, fresh) is None
    problem = initial_model_problem({"bn.num_batches_tracked": np.array(4.5), "w": np.zeros(2)}, fresh)
    assert "bn.num_batches_tracked" in problem and "integers" in problem


def test_a_shape_mismatch_still_names_the_array(tmp_path):
    state = _fresh()
    state["fc2.bias"] = np.zeros(11, np.float32)
    np.savez(tmp_path / "m.npz", **state)
    with pytest.raises(ConfigError, match=r"fc2.bias has shape \(11,\), expected \(10,\)"):
        resolve({"initial-model": str(tmp_path / "m.npz")})
