"""Min-Sum (Shejwalkar & Houmansadr, NDSS 2021): see :mod:`clients.forge.min_max`, which shares its gamma search."""

from clients.forge.min_max import forge_min_sum as forge

__all__ = ["forge"]
