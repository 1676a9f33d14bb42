"""Data-poisoning transforms: relabel a malicious client's local data.

Only labels change; features are never touched, so a poisoned client trains
with exactly the code path an honest one uses (the attack is "just data").

* Targeted flip (Tolpegin et al. §2.2, LFighter): every source-class label
  becomes the target class; the rest of the local data stays clean.
* Untargeted flip (blog seed 000): every label is remapped through a fixed
  permutation of the classes — ``reverse`` (``y -> C-1-y``, what other
  frameworks usually do) or a seeded ``random`` derangement.
* Injection rate (ADA, Sun et al. §III-C1): the attacker trains on a set of
  its local set's size in which flipped source examples make up a chosen
  share and drawn clean examples the rest.

No run key is validated here: ``attack``, ``source-class``, ``target-class``,
``attack-start-round`` and ``attack-end-round`` are core keys
(:mod:`fl_poison.config`); ``injection-rate`` is declared and checked by
:mod:`clients.attacks.label_flip`, ``flip-map`` by
:mod:`clients.attacks.untargeted_flip`. The functions below raise ValueError
for bad arguments of their own, so a direct call fails loudly too.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from fl_poison.config import Interval

FlipMapKind = Literal["reverse", "random"]

FLIP_MAPS: tuple[str, ...] = ("reverse", "random")

# Separates the derangement's random stream from every other use of the seed.
_FLIP_MAP_SALT = 0x666C6970  # "flip"


def _round_half_up(x: float) -> int:
    """``floor(x + 0.5)`` with a 1e-9 tolerance for float noise just below a half."""
    return int(math.floor(x + 0.5 + 1e-9))


def flip_targeted(labels: np.ndarray, source: int, target: int) -> np.ndarray:
    """A copy of ``labels`` with every ``source`` label replaced by ``target``."""
    if source == target:
        raise ValueError(
            f"source-class and target-class must differ, both are {source}"
        )
    out = np.array(labels, copy=True)
    out[out == source] = target
    return out


def flip_map(kind: FlipMapKind | str, num_classes: int, seed: int) -> np.ndarray:
    """The class mapping of an untargeted flip: ``mapping[y]`` is ``y``'s new label.

    ``reverse``: ``y -> C-1-y``, the convention of other frameworks. With an
    odd number of classes the middle class maps to itself (its examples stay
    clean) — that is the definition, not a bug.

    ``random``: a uniformly drawn *derangement* (permutation without fixed
    points) from ``np.random.default_rng([seed, salt])``, so every example is
    mislabelled, unlike a plain random permutation which leaves about one
    class clean on average. Drawn by rejection: shuffle until no class maps to
    itself (about e ≈ 2.7 tries on average), which is uniform over
    derangements. ``seed`` is ignored by ``reverse``.
    """
    if num_classes < 2:
        raise ValueError(
            f"an untargeted flip needs at least 2 classes, got num-classes={num_classes}"
        )
    if kind == "reverse":
        return np.arange(num_classes - 1, -1, -1, dtype=np.int64)
    if kind == "random":
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        rng = np.random.default_rng([int(seed), _FLIP_MAP_SALT])
        identity = np.arange(num_classes, dtype=np.int64)
        while True:
            perm = rng.permutation(num_classes).astype(np.int64)
            if not np.any(perm == identity):
                return perm
    raise ValueError(f"flip-map must be one of {list(FLIP_MAPS)}, got {kind!r}")


def flip_untargeted(labels: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """A new array with every label ``y`` replaced by ``mapping[y]`` (dtype kept)."""
    labels = np.asarray(labels)
    mapping = np.asarray(mapping)
    if labels.size and (labels.min() < 0 or labels.max() >= mapping.shape[0]):
        raise ValueError(
            f"labels must lie in 0..{mapping.shape[0] - 1} to use a flip-map of "
            f"{mapping.shape[0]} classes, got range {labels.min()}..{labels.max()}"
        )
    return mapping[labels].astype(labels.dtype, copy=False)


def draw(pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` entries of ``pool``: without replacement when it holds ``k``, else all of it plus seeded repeats.

    The repeats keep a set's size (and so its FedAvg weight) when a pool is
    smaller than the share asked of it; an empty pool gives an empty draw.
    """
    pool = np.asarray(pool, dtype=np.int64)
    if k <= 0 or pool.size == 0:
        return np.empty(0, dtype=np.int64)
    if k <= pool.size:
        return rng.choice(pool, size=k, replace=False)
    whole, rest = divmod(k, pool.size)
    return np.concatenate([np.tile(pool, whole), rng.choice(pool, size=rest, replace=False)])


#: The flipped share :func:`injection_indices` takes, declared once: the run key ``injection-rate`` adds its -1
#: (off) to it, so the key's check and message and this function's cannot disagree.
INJECTION_RATE_RANGE = Interval(float, 0, 1, closed="right")


def injection_indices(
    labels: np.ndarray, source: int, rate: float, rng: np.random.Generator, size: int | None = None
) -> np.ndarray:
    """Indices into ``labels`` of an attacker's training set at injection rate ``rate``, ``size`` samples long.

    ADA (Sun et al. §III-C1): the poisoned samples "account for [rate] of the
    total training samples of the adversary" and the rest are randomly
    selected other samples. The set keeps the attacker's local set size
    ``size`` (default ``len(labels)``), so its FedAvg weight is that of an
    honest client of the same size, as in the authors' code (225 flipped
    source + 225 clean samples, the 450 of an honest client):

    * ``n_src = round(rate * size)`` source-class samples (to be flipped),
    * ``size - n_src`` samples of the other classes (kept clean),

    each drawn uniformly without replacement, or, where the candidates are
    fewer than asked, all of them plus seeded repeats (:func:`draw`): an
    attacker holding 5 source samples at rate 0.5 of 100 trains on each of
    them 10 times. Rounding is half-up. With no source candidate the result
    is empty (the caller trains honestly); with no clean candidate only the
    source part is returned.

    Returns int64 indices (sorted, possibly repeated); flip them with
    :func:`flip_targeted` on ``labels[indices]``.
    """
    if not INJECTION_RATE_RANGE(rate):
        raise ValueError(INJECTION_RATE_RANGE.refusal("injection-rate", rate)
                         + " (a rate < 0 means all local data: the caller does not call this then)")
    labels = np.asarray(labels)
    n = labels.size if size is None else int(size)
    src_idx = np.flatnonzero(labels == source)
    if src_idx.size == 0:
        return np.empty(0, dtype=np.int64)
    if n < 1:
        raise ValueError(f"the attacker's local set size must be >= 1, got {n}")
    n_src = min(n, max(1, _round_half_up(rate * n)))
    picked = [draw(src_idx, n_src, rng), draw(np.flatnonzero(labels != source), n - n_src, rng)]
    return np.sort(np.concatenate(picked).astype(np.int64))


def attack_active(server_round: int, start: int, end: int) -> bool:
    """Whether a malicious client attacks in ``server_round``.

    The window is ``[start, end]``, both inclusive (run keys
    ``attack-start-round``, ``attack-end-round``); ``end < 0`` means no end.
    Tolpegin §3.3: "only before round 75" is ``start=1, end=74``; "from round
    75" is ``start=75, end=-1``. Outside the window a malicious client trains
    honestly, which is what makes early poisoning wash out.
    """
    if start < 0:
        raise ValueError(f"attack-start-round must be >= 0, got {start}")
    if end >= 0 and end < start:
        raise ValueError(
            f"attack-end-round={end} is before attack-start-round={start}; "
            "allowed: attack-end-round >= attack-start-round, or < 0 for no end"
        )
    return server_round >= start and (end < 0 or server_round <= end)


def targeted_flip_set(
    labels: np.ndarray,
    *,
    source: int | None,
    target: int | None,
    injection_rate: float,
    rng: np.random.Generator,
    size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What a targeted flipper trains on: ``(indices, new_labels)`` into its local data.

    With ``injection_rate < 0`` (off) all local data is kept and source labels
    become ``target`` (Tolpegin / LFighter convention); with ``injection_rate``
    in (0, 1] the set comes from :func:`injection_indices` (ADA; ``size`` = the
    local set size) and is empty when the candidates hold no source example --
    the caller then trains honestly.
    """
    labels = np.asarray(labels)
    if source is None or target is None:
        raise ValueError("attack=label-flip needs source-class and target-class to be set")
    if injection_rate < 0:
        indices = np.arange(labels.size, dtype=np.int64)
    else:
        indices = injection_indices(labels, source, injection_rate, rng, size)
    return indices, flip_targeted(labels[indices], source, target)


def untargeted_flip_set(labels: np.ndarray, *, mapping: np.ndarray | None,
                        injection_rate: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    """What an untargeted flipper trains on: all local data, every label through ``mapping`` (:func:`flip_map`).

    ``injection_rate`` must be off (< 0): dilution is defined relative to a
    source class, which this attack has none of.
    """
    labels = np.asarray(labels)
    if mapping is None:
        raise ValueError("attack=untargeted-flip needs a flip-map (reverse | random)")
    if injection_rate >= 0:
        raise ValueError(
            f"injection-rate={injection_rate} applies only to attack=label-flip; "
            "set it < 0 (off) for attack=untargeted-flip"
        )
    return np.arange(labels.size, dtype=np.int64), flip_untargeted(labels, mapping)
