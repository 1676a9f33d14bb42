"""Seeded splits of a labelled training set across federated clients.

Written directly on numpy rather than with ``flwr_datasets.partitioner``:
those partitioners operate on Hugging Face ``datasets.Dataset`` objects (we
hold plain label arrays from canonical files) and have no "one class per
client" scheme with balanced class coverage, which the LFighter
MNIST-Extreme setting needs. Every function here is a pure function of its
inputs and ``seed``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["SCHEMES", "partition", "partition_stats"]

SCHEMES = ("iid", "dirichlet", "extreme")
DIRICHLET_MAX_TRIES = 100
DIRICHLET_DEFAULT_MIN_SIZE = 10


def partition(
    labels: np.ndarray,
    num_clients: int,
    scheme: str,
    *,
    seed: int,
    alpha: float = 1.0,
    num_classes: int | None = None,
    min_size: int | None = None,
) -> list[np.ndarray]:
    """Split sample indices among ``num_clients``; returns sorted index arrays.

    ``scheme``: ``iid`` | ``dirichlet`` (uses ``alpha`` and ``min_size``) |
    ``extreme`` (one class per client). ``num_classes`` defaults to
    ``labels.max() + 1``. The parts are disjoint and cover every sample
    (``extreme`` also covers every sample of the classes that have clients).
    """
    labels = _check_labels(labels)
    n = len(labels)
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if num_clients > n:
        raise ValueError(f"num_clients ({num_clients}) exceeds the {n} samples")
    k = _num_classes(labels, num_classes)
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = _iid(n, num_clients, rng)
    elif scheme == "dirichlet":
        parts = _dirichlet(labels, num_clients, k, alpha, min_size, rng)
    elif scheme == "extreme":
        parts = _extreme(labels, num_clients, k, rng)
    else:
        raise ValueError(f"unknown partition scheme {scheme!r}; allowed: {', '.join(SCHEMES)}")
    return [np.sort(p).astype(np.int64) for p in parts]


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError("labels must be a non-empty 1-D array")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.min() < 0:
        raise ValueError("labels must be non-negative")
    return labels


def _num_classes(labels: np.ndarray, num_classes: int | None) -> int:
    top = int(labels.max()) + 1
    if num_classes is None:
        return top
    if num_classes < top:
        raise ValueError(f"label {top - 1} out of range for num_classes={num_classes}")
    return int(num_classes)


def _iid(n: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Uniform shuffle, then sizes differing by at most one."""
    return np.array_split(rng.permutation(n), num_clients)


def _dirichlet(
    labels: np.ndarray,
    num_clients: int,
    num_classes: int,
    alpha: float,
    min_size: int | None,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Per-class Dirichlet(alpha) label skew (Hsu et al. 2019 style).

    For every class, client shares ~ Dir(alpha * 1) and that class's shuffled
    indices are cut at the cumulative shares. Small alpha -> few classes per
    client; large alpha -> near IID. A draw where some client gets fewer than
    ``min_size`` samples (default ``min(10, N // num_clients)``) is redrawn,
    at most ``DIRICHLET_MAX_TRIES`` times, because empty/tiny clients break
    local training; if no draw qualifies a ValueError says what to change.
    """
    if not alpha > 0:
        raise ValueError(f"dirichlet alpha must be > 0, got {alpha}")
    n = len(labels)
    if min_size is None:
        min_size = min(DIRICHLET_DEFAULT_MIN_SIZE, n // num_clients)
    if min_size * num_clients > n:
        raise ValueError(f"min_size={min_size} x {num_clients} clients exceeds {n} samples")
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    for _ in range(DIRICHLET_MAX_TRIES):
        parts = _dirichlet_draw(by_class, num_clients, alpha, rng)
        if min(len(p) for p in parts) >= min_size:
            return parts
    raise ValueError(
        f"dirichlet split (alpha={alpha}) gave some of the {num_clients} clients fewer "
        f"than {min_size} samples in {DIRICHLET_MAX_TRIES} draws; raise alpha, "
        "lower min_size or use fewer clients"
    )


def _dirichlet_draw(
    by_class: list[np.ndarray], num_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """One draw: split each class's shuffled indices by Dir(alpha) shares."""
    chunks: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for idx in by_class:
        if idx.size == 0:
            continue
        shares = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * idx.size).astype(np.int64)
        for client, piece in enumerate(np.split(rng.permutation(idx), cuts)):
            chunks[client].append(piece)
    return [np.concatenate(c) if c else np.empty(0, np.int64) for c in chunks]


def _extreme(
    labels: np.ndarray, num_clients: int, num_classes: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Each client holds exactly one class (LFighter's "MNIST-Extreme").

    Client i gets class ``perm[i % num_classes]`` for a seeded permutation,
    so every class has ``num_clients // num_classes`` or one more clients
    (100 clients / 10 classes -> 10 per class); a class's shuffled samples
    are split evenly among its clients.
    """
    if num_clients < num_classes:
        raise ValueError(
            f"extreme partition needs num_clients >= num_classes "
            f"({num_clients} < {num_classes})"
        )
    perm = rng.permutation(num_classes)
    owner_class = perm[np.arange(num_clients) % num_classes]
    parts: list[np.ndarray] = [np.empty(0, np.int64)] * num_clients
    for c in range(num_classes):
        clients = np.flatnonzero(owner_class == c)
        idx = rng.permutation(np.flatnonzero(labels == c))
        if idx.size < clients.size:
            raise ValueError(
                f"extreme partition: class {c} has {idx.size} samples for "
                f"{clients.size} clients"
            )
        for client, piece in zip(clients, np.array_split(idx, clients.size)):
            parts[client] = piece
    return parts


def partition_stats(
    labels: np.ndarray, parts: list[np.ndarray], num_classes: int
) -> dict:
    """JSON-friendly summary of a partition for the CLI and logs."""
    labels = np.asarray(labels)
    counts = np.zeros((len(parts), num_classes), dtype=np.int64)
    for row, p in zip(counts, parts):
        row[:] = np.bincount(labels[p], minlength=num_classes)[:num_classes]
    sizes = counts.sum(axis=1)
    held = [np.flatnonzero(row).tolist() for row in counts]
    return {
        "num_clients": len(parts),
        "num_samples": int(sizes.sum()),
        "sizes": sizes.tolist(),
        "min_size": int(sizes.min()) if len(parts) else 0,
        "max_size": int(sizes.max()) if len(parts) else 0,
        "mean_size": float(sizes.mean()) if len(parts) else 0.0,
        "class_counts": counts.tolist(),
        "classes_held": held,
        "clients_per_class": (counts > 0).sum(axis=0).tolist(),
    }


def move_class_out(labels: np.ndarray, parts: Sequence[np.ndarray], excluded: Sequence[int],
                   cls: int) -> list[np.ndarray]:
    """The partitions with every sample of class ``cls`` taken from the clients in ``excluded``.

    The opposite of ``malicious-from-source-holders``: the GAN attack's adversary
    must not hold class G (Hitaj et al.; the blog's setting). The samples are not
    dropped but handed, in index order and round-robin, to the other clients,
    so the federation trains on the same data as without the exclusion.
    Pure and deterministic; raises ValueError when no other client is left.
    """
    labels = np.asarray(labels)
    out = [np.asarray(p) for p in parts]
    bad = sorted(set(int(c) for c in excluded))
    others = [i for i in range(len(out)) if i not in set(bad)]
    moved = np.sort(np.concatenate([out[c][labels[out[c]] == cls] for c in bad] or [np.zeros(0, np.int64)]))
    if moved.size and not others:
        raise ValueError(f"every client is excluded from class {cls}: nobody is left to hold it")
    for c in bad:
        out[c] = out[c][labels[out[c]] != cls]
    for j, i in enumerate(others):
        out[i] = np.sort(np.concatenate([out[i], moved[j::len(others)]]).astype(out[i].dtype, copy=False))
    return out
