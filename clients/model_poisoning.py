"""Pure update arithmetic shared by the model-poisoning attacks (train-and-scale, ADA, scale, backdoor).

An *update* is ``local - global`` over the floating-point arrays of a state
dict (integer buffers such as BatchNorm's ``num_batches_tracked`` are carried
over unchanged). Everything here is a function of arrays only, so the math is
tested without Flower or a model.
"""

from __future__ import annotations

import numpy as np

State = dict[str, np.ndarray]


def _floats(state: State) -> list[str]:
    return [k for k, v in state.items() if np.asarray(v).dtype.kind == "f"]


def update_norm(state: State, global_state: State) -> float:
    """L2 norm of ``state - global_state`` over all floating-point arrays (the norm NDC checks)."""
    sq = sum(float(np.sum((np.asarray(state[k], np.float64) - np.asarray(global_state[k], np.float64)) ** 2))
             for k in _floats(state))
    return float(np.sqrt(sq))


def scale_update(state: State, global_state: State, factor: float, noise_std: float = 0.0,
                 rng: np.random.Generator | None = None) -> State:
    """``global + factor * (state - global)`` (+ optional N(0, noise_std^2) per float entry).

    Factor > 1 inflates the update (model replacement / boosting), < 0 turns it
    round (gradient divergence), 0 sends the global model back.
    """
    if noise_std > 0 and rng is None:
        raise ValueError("noise needs a generator")
    out: State = {}
    for k, v in state.items():
        if np.asarray(v).dtype.kind != "f":
            out[k] = v
            continue
        g = np.asarray(global_state[k])
        new = g + factor * (np.asarray(v) - g)
        if noise_std > 0:
            new = new + rng.normal(0.0, noise_std, size=np.shape(v))
        out[k] = np.asarray(new, dtype=np.asarray(v).dtype).reshape(np.shape(v))
    return out


def shrink_factor(norm: float, bound: float, step: float = 0.1) -> float:
    """The first of 1, 1-step, 1-2*step, ... whose multiple of ``norm`` is within ``bound`` (0 at worst).

    Train-and-scale as the ADA authors' code runs it (a descending factor
    loop). The paper's eq. (5) writes the factor in closed form; with a
    ``step`` of 0.1 the loop lands at most 0.1 below min(1, bound / norm).
    """
    if bound <= 0:
        raise ValueError("bound must be > 0")
    if step <= 0 or step > 1:
        raise ValueError("step must be in (0, 1]")
    k = 0
    while True:
        factor = max(round(1.0 - k * step, 10), 0.0)
        if factor * norm <= bound or factor == 0.0:
            return factor
        k += 1


def shrink_to_bound(state: State, global_state: State, bound: float, step: float = 0.1) -> tuple[State, float, float]:
    """Train-and-scale: the state whose update is shrunk by :func:`shrink_factor`; also (factor, new norm)."""
    factor = shrink_factor(update_norm(state, global_state), bound, step)
    new = state if factor == 1.0 else scale_update(state, global_state, factor)
    return new, factor, update_norm(new, global_state)
