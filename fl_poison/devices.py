"""The ``device`` run key as a torch device (issue 12)."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; others as given.

    The config check (``fl_poison.config``) has already rejected a CUDA device
    this machine lacks, so this never silently falls back from an explicit choice.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
