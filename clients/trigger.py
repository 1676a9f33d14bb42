"""A square pixel-pattern trigger (Gu et al.'s BadNets pattern, Bagdasaryan et al.'s pixel backdoor).

Pure tensor functions: where the trigger goes, stamping it, and choosing the
poisoned share of a local set. The trigger is a ``size`` x ``size`` square of
one raw pixel ``value`` (in [0, 1], normalised per channel by the caller) with
its top-left corner at (``row``, ``col``); -1 puts it against the bottom /
right edge.
"""

from __future__ import annotations

import numpy as np
import torch


def trigger_position(shape: tuple[int, int, int], size: int, row: int, col: int) -> tuple[int, int]:
    """Top-left corner of the trigger in an image of ``shape`` (C, H, W); ValueError when it does not fit."""
    _, h, w = shape
    if size < 1 or size > min(h, w):
        raise ValueError(f"trigger-size {size} does not fit a {h}x{w} image (1..{min(h, w)})")
    r = h - size if row == -1 else row
    c = w - size if col == -1 else col
    if not (0 <= r <= h - size):
        raise ValueError(f"trigger-row {row} with size {size} does not fit height {h} (0..{h - size}, or -1)")
    if not (0 <= c <= w - size):
        raise ValueError(f"trigger-col {col} with size {size} does not fit width {w} (0..{w - size}, or -1)")
    return r, c


def stamp(x: torch.Tensor, size: int, row: int, col: int, value: torch.Tensor) -> torch.Tensor:
    """A copy of the images ``x`` [N, C, H, W] with the trigger square set to ``value`` ([C] or scalar)."""
    r, c = trigger_position(tuple(x.shape[1:]), size, row, col)
    out = x.clone()
    v = torch.as_tensor(value, dtype=x.dtype).reshape(-1, 1, 1)
    out[:, :, r:r + size, c:c + size] = v.expand(x.shape[1], size, size)
    return out


def poison_indices(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of round(fraction * n) samples (at least one when n > 0)."""
    k = min(n, max(1, int(round(fraction * n)))) if n > 0 else 0
    return np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)


def backdoor_set(x: torch.Tensor, y: torch.Tensor, idx: np.ndarray, target: int, size: int, row: int, col: int,
                 value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The local set with samples ``idx`` triggered and labelled ``target`` (the rest unchanged)."""
    x2, y2 = x.clone(), y.clone()
    if len(idx):
        t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        x2[t] = stamp(x[t], size, row, col, value)
        y2[t] = target
    return x2, y2
