"""Data layer: canonical file readers, dataset registry and loaders, client partitions.

``formats`` and ``partition`` are numpy-only; ``datasets`` adds torch tensors,
normalisation, augmentation and the in-process cache.
"""

from .datasets import (
    DATASETS,
    Dataset,
    DatasetSpec,
    cifar10_augment,
    clear_cache,
    describe_files,
    get_spec,
    load_dataset,
)
from .formats import DataError, read_cifar10_batches, read_idx
from .partition import SCHEMES, partition, partition_stats

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "SCHEMES",
    "cifar10_augment",
    "clear_cache",
    "describe_files",
    "get_spec",
    "load_dataset",
    "partition",
    "partition_stats",
    "read_cifar10_batches",
    "read_idx",
]
