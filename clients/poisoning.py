"""Data-poisoning transforms: relabel a malicious client's local data.

Only labels change; features are never touched, so a poisoned client trains
with exactly the code path an honest one uses (the attack is "just data").

* Targeted flip (Tolpegin et al. §2.2, LFighter): every source-class label
  becomes the target class; the rest of the local data stays clean.
* Untargeted flip (blog seed 000): every label is remapped through a fixed
  permutation of the classes — ``reverse`` (``y -> C-1-y``, what other
  frameworks usually do) or a seeded ``random`` derangement.
* Injection rate (ADA, Sun et al. §III-C1): the attacker trains on its flipped
  source examples mixed with a drawn subset of clean examples so that flipped
  examples make up a chosen share of its training set.

Run keys validated here: ``attack``, ``source-class``, ``target-class``,
``flip-map``, ``injection-rate``, ``attack-start-round``, ``attack-end-round``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

AttackKind = Literal["label-flip", "untargeted-flip"]
FlipMapKind = Literal["reverse", "random"]

ATTACKS: tuple[str, ...] = ("label-flip", "untargeted-flip")
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


def injection_indices(
    labels: np.ndarray, source: int, rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Local indices of the attacker's training set at injection rate ``rate``.

    ADA (Sun et al. §III-C1): all source-class examples are flipped and "a
    subset of other samples are randomly selected so that the poisoned samples
    account for [rate] of the total training samples of the adversary". With
    ``n_src`` source examples and ``n_other`` clean ones:

    1. ``n_clean = round(n_src * (1 - rate) / rate)`` clean examples are drawn
       (uniformly, without replacement) when that many exist; all source
       examples are kept. ``rate = 1`` gives the source examples only.
    2. Otherwise there are too few clean examples to dilute every flipped one:
       all ``n_other`` clean examples are kept and the *source* examples are
       subsampled to ``round(n_other * rate / (1 - rate))`` so the share still
       holds (e.g. 10 source + 90 clean at rate 0.05: 5 source + 90 clean).
       The paper is silent here; we keep the share rather than the count,
       because the share is the experiment's parameter. At least one source
       example is kept (a set with none is honest training), so for tiny
       ``n_other`` the share overshoots; with ``n_other = 0`` no subset can be
       diluted and all source examples are returned.

    Rounding is half-up (``floor(x + 0.5)``). With no source example the
    result is empty: the caller must decide (train honestly or skip the
    round) — an empty training set is never what it should train on.

    Returns sorted int64 indices into ``labels``; flip them with
    :func:`flip_targeted` on ``labels[indices]``.
    """
    if math.isnan(rate) or not 0.0 < rate <= 1.0:
        raise ValueError(
            f"injection-rate must be in (0, 1] (or < 0 to train on all local "
            f"data), got {rate}"
        )
    labels = np.asarray(labels)
    src_idx = np.flatnonzero(labels == source)
    other_idx = np.flatnonzero(labels != source)
    n_src, n_other = src_idx.size, other_idx.size
    if n_src == 0:
        return np.empty(0, dtype=np.int64)
    if rate == 1.0:
        return src_idx.astype(np.int64)
    n_clean = _round_half_up(n_src * (1.0 - rate) / rate)
    if n_clean <= n_other:
        clean = rng.choice(other_idx, size=n_clean, replace=False)
        keep_src = src_idx
    elif n_other == 0:
        clean = other_idx
        keep_src = src_idx
    else:
        clean = other_idx
        n_keep = min(n_src, max(1, _round_half_up(n_other * rate / (1.0 - rate))))
        keep_src = rng.choice(src_idx, size=n_keep, replace=False)
    return np.sort(np.concatenate([keep_src, clean]).astype(np.int64))


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


def poison_labels(
    labels: np.ndarray,
    *,
    attack: AttackKind | str,
    source: int | None,
    target: int | None,
    mapping: np.ndarray | None,
    injection_rate: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The one entry point a malicious client calls: what to train on, with which labels.

    Returns ``(indices, new_labels)``: train on ``features[indices]`` with
    ``new_labels`` (``len(new_labels) == len(indices)``).

    * ``label-flip``: with ``injection_rate < 0`` (off) all local data is kept
      and source labels become ``target`` (Tolpegin / LFighter convention);
      with ``injection_rate`` in (0, 1] the set comes from
      :func:`injection_indices` (ADA) and may be empty when the client holds
      no source example — the caller then trains honestly or skips.
    * ``untargeted-flip``: all local data, every label through ``mapping``
      (from :func:`flip_map`). ``injection_rate`` must be off (< 0): dilution
      is defined relative to a source class, which this attack has none of.
    """
    labels = np.asarray(labels)
    if attack == "label-flip":
        if source is None or target is None:
            raise ValueError(
                "attack=label-flip needs source-class and target-class to be set"
            )
        if injection_rate < 0:
            indices = np.arange(labels.size, dtype=np.int64)
        else:
            indices = injection_indices(labels, source, injection_rate, rng)
        return indices, flip_targeted(labels[indices], source, target)
    if attack == "untargeted-flip":
        if mapping is None:
            raise ValueError("attack=untargeted-flip needs a flip-map (reverse | random)")
        if injection_rate >= 0:
            raise ValueError(
                f"injection-rate={injection_rate} applies only to attack=label-flip; "
                "set it < 0 (off) for attack=untargeted-flip"
            )
        indices = np.arange(labels.size, dtype=np.int64)
        return indices, flip_untargeted(labels, mapping)
    raise ValueError(f"attack must be one of {list(ATTACKS)}, got {attack!r}")
