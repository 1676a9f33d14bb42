"""Flatten model weights into one vector and back, and locate the output layer in it.

Defenses work on a stacked ``[K, P]`` matrix of client updates (one row per
client). They must never need to know the model class: everything they need
about the network's shape is in :class:`Layout`.

A model's state also holds *buffers* that are not trained by gradient descent
(BatchNorm's ``running_mean`` / ``running_var`` / ``num_batches_tracked``).
:func:`buffer_mask` marks them, :meth:`Layout.select` gives the layout of the
trainable arrays alone, and :func:`column_mask` the matching columns of the
flat vector, so defenses measure distances only on trainable parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

import numpy as np


@dataclass(frozen=True)
class Layout:
    """Where each array sits in the flat vector, and which rows are the output layer.

    ``shapes[i]`` / ``offsets[i]`` describe array ``i`` of the model's
    state (the order of ``ArrayRecord`` / ``state_dict``). ``output_weight``
    is the index of the output layer's weight array (shape ``[C, H]``) and
    ``output_bias`` the index of its bias (shape ``[C]``) or ``None``.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    output_weight: int
    output_bias: int | None

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(np.prod(s)) if len(s) else 1 for s in self.shapes)

    @property
    def offsets(self) -> tuple[int, ...]:
        out, acc = [], 0
        for n in self.sizes:
            out.append(acc)
            acc += n
        return tuple(out)

    @property
    def num_params(self) -> int:
        return int(sum(self.sizes))

    @property
    def num_classes(self) -> int:
        return int(self.shapes[self.output_weight][0])

    def slice_of(self, index: int) -> slice:
        start = self.offsets[index]
        return slice(start, start + self.sizes[index])

    def output_rows(self, flat: np.ndarray) -> np.ndarray:
        """Per-neuron output-layer parameters of each row of ``flat``.

        ``flat`` is ``[P]`` or ``[K, P]``; returns ``[C, H(+1)]`` or
        ``[K, C, H(+1)]``: neuron ``c``'s incoming weights followed by its bias.
        This is the "gradients connected to an output neuron" of LFighter and
        Tolpegin et al.
        """
        flat2 = np.atleast_2d(flat)
        c = self.num_classes
        w = flat2[:, self.slice_of(self.output_weight)].reshape(flat2.shape[0], c, -1)
        if self.output_bias is not None:
            b = flat2[:, self.slice_of(self.output_bias)].reshape(flat2.shape[0], c, 1)
            w = np.concatenate([w, b], axis=2)
        return w if flat.ndim == 2 else w[0]

    def select(self, indices: Sequence[int]) -> "Layout":
        """The layout of arrays ``indices`` alone (in that order); the output layer must be among them."""
        idx = list(indices)
        if self.output_weight not in idx:
            raise ValueError(f"the output layer {self.names[self.output_weight]!r} is not among the selected arrays")
        return Layout(
            names=tuple(self.names[i] for i in idx),
            shapes=tuple(self.shapes[i] for i in idx),
            dtypes=tuple(self.dtypes[i] for i in idx),
            output_weight=idx.index(self.output_weight),
            output_bias=idx.index(self.output_bias) if self.output_bias in idx else None,
        )

    def output_layer(self, flat: np.ndarray) -> np.ndarray:
        """The output layer's parameters (weights then bias) of each row, flattened."""
        rows = self.output_rows(flat)
        return rows.reshape(rows.shape[0], -1) if flat.ndim == 2 else rows.reshape(-1)


def make_layout(names: Sequence[str], arrays: Sequence[np.ndarray], output_layer: str) -> Layout:
    """Build a :class:`Layout` for arrays named like a ``state_dict``.

    ``output_layer`` is the module name of the classifier's last Linear layer
    (e.g. ``"fc2"``): its ``.weight`` and ``.bias`` entries are located by name.
    """
    names = tuple(names)
    try:
        w_idx = names.index(f"{output_layer}.weight")
    except ValueError as exc:
        raise ValueError(f"output layer {output_layer!r} has no '.weight' among {names}") from exc
    b_name = f"{output_layer}.bias"
    b_idx = names.index(b_name) if b_name in names else None
    return Layout(
        names=names,
        shapes=tuple(tuple(int(d) for d in np.shape(a)) for a in arrays),
        dtypes=tuple(str(np.asarray(a).dtype) for a in arrays),
        output_weight=w_idx,
        output_bias=b_idx,
    )


def flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate arrays into one float64 vector (float64 keeps robust statistics exact)."""
    if not arrays:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])


def unflatten(flat: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """Split a flat vector back into arrays of the layout's shapes and dtypes.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are rounded.
    """
    out = []
    for i, shape in enumerate(layout.shapes):
        part = flat[layout.slice_of(i)].reshape(shape)
        dtype = np.dtype(layout.dtypes[i])
        if np.issubdtype(dtype, np.integer):
            part = np.rint(part)
        out.append(np.asarray(part, dtype=dtype))  # np.rint of a 0-d array is a scalar: keep an array
    return out


def infer_layout(names: Sequence[str], arrays: Sequence[np.ndarray], output_layer: str | None = None) -> Layout:
    """A :class:`Layout` whose output layer is named, or else inferred.

    Inference takes the last 2-D array as the output layer's weight (the
    classifier's last Linear layer, as LFighter's authors define the output
    layer) and the array right after it as its bias when it is 1-D of the
    matching length. It needs no names, so it works on any ``ArrayRecord``.
    """
    if output_layer is not None:
        return make_layout(names, arrays, output_layer)
    dims = [np.ndim(a) for a in arrays]
    w_idx = max((i for i, d in enumerate(dims) if d == 2), default=None)
    if w_idx is None:
        raise ValueError("cannot find an output layer: the model has no 2-D weight array")
    c = int(np.shape(arrays[w_idx])[0])
    nxt = w_idx + 1
    b_idx = nxt if nxt < len(arrays) and np.shape(arrays[nxt]) == (c,) else None
    return Layout(
        names=tuple(names),
        shapes=tuple(tuple(int(d) for d in np.shape(a)) for a in arrays),
        dtypes=tuple(str(np.asarray(a).dtype) for a in arrays),
        output_weight=w_idx,
        output_bias=b_idx,
    )


#: ``state_dict`` name endings of PyTorch's normalisation buffers (BatchNorm / InstanceNorm).
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def buffer_mask(names: Sequence[str], buffer_names: Collection[str] | None = None) -> np.ndarray:
    """``[len(names)]`` bool: which arrays are buffers (not trainable parameters).

    ``buffer_names`` -- the model's own ``named_buffers()`` names -- is exact
    and preferred; without it, names ending in :data:`BUFFER_SUFFIXES` count
    as buffers (what a Strategy can tell from an ``ArrayRecord`` alone).
    """
    if buffer_names is not None:
        known = set(buffer_names)
        return np.array([n in known for n in names], dtype=bool)
    return np.array([n.rsplit(".", 1)[-1] in BUFFER_SUFFIXES for n in names], dtype=bool)


def column_mask(layout: Layout, arrays: np.ndarray) -> np.ndarray:
    """``[P]`` bool over the flat vector: the columns of arrays marked ``True`` in ``arrays`` (``[n_arrays]``)."""
    return np.repeat(np.asarray(arrays, dtype=bool), layout.sizes)


def weighted_buffer_mean(values: np.ndarray, weights: np.ndarray, kept: np.ndarray) -> np.ndarray | None:
    """Example-weighted mean of buffer columns ``values`` (``[K, B]``) over the kept clients.

    ``None`` when no client was kept (buffers then stay as they were).
    Integer buffers are rounded later by :func:`unflatten`.
    """
    w = np.where(np.asarray(kept, dtype=bool), np.asarray(weights, dtype=np.float64), 0.0)
    if w.sum() <= 0:
        return None
    return (w / w.sum()) @ np.asarray(values, dtype=np.float64)
