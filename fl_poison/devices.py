"""The ``device`` run key as a torch device."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; others as given.

    The config check (``fl_poison.config``) has already rejected a CUDA device
    this machine lacks, so this never silently falls back from an explicit choice.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def memory_bytes(name: str) -> int:
    """Memory a run on device ``name`` can count on: physical RAM, or less when a CUDA device has less."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    dev = resolve_device(name)
    if dev.type == "cuda":
        ram = min(ram, torch.cuda.get_device_properties(dev.index or 0).total_memory)
    return int(ram)
