"""Dataset registry, loaders, normalisation and train-time augmentation.

``DATASETS`` describes every dataset without touching data so config
validation can check names, class counts and input shapes cheaply.
``load_dataset`` returns normalised float tensors and is cached per process
because every simulated client in one process calls it.

File lookup for ``load_dataset(name, data_dir)`` (first complete folder wins):
``data_dir/<name>/``, ``data_dir/`` itself, plus the torchvision layouts
(``data_dir/MNIST/raw``, ``data_dir/FashionMNIST/raw``) and, for CIFAR-10,
``cifar-10-batches-py/`` inside any of these. IDX files may be gzipped or not.

When files are absent and ``download`` is true the data is fetched the Flower
way (``flwr_datasets.FederatedDataset`` over the Hugging Face hub) and saved
in the canonical layout under ``data_dir/<name>/`` so later runs are offline.
A quick reachability probe runs first so an offline machine fails in seconds
instead of sitting through the hub client's retry back-off.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import numpy as np
import torch

from .formats import (
    CIFAR10_SUBDIR,
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    DataError,
    read_cifar10_batch,
    read_idx,
    write_cifar10_batches,
    write_idx,
)

__all__ = [
    "DatasetSpec",
    "Dataset",
    "DATASETS",
    "DataError",
    "get_spec",
    "load_dataset",
    "describe_files",
    "clear_cache",
    "resolve_data_dir",
    "DATA_ENV",
    "cifar10_augment",
    "normalise_images",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "DIGITS_TEST_FRACTION",
    "DIGITS_SPLIT_SEED",
]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a dataset (no data loaded).

    ``mean``/``std`` are per-channel normalisation constants applied to pixels
    scaled to [0, 1]; attacks that stamp triggers need them to know what a
    white/black pixel looks like after normalisation.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    default_model: str
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    hf_dataset: str | None = None

    def pixel_value(self, value: float) -> torch.Tensor:
        """Normalised per-channel value [C] of a raw pixel in [0, 1]."""
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        return (value - mean) / std


_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_DIGIT_NAMES = tuple(str(i) for i in range(10))

# Digits: pixels (0..16) are scaled by 1/16, then standardised with the mean
# and std of all 1797 sklearn images at that scale (0.30526, 0.37605).
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3760
# Deterministic stratified split: 1437 train / 360 test.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        name="digits",
        num_classes=10,
        input_shape=(1, 8, 8),
        class_names=_DIGIT_NAMES,
        files=(),
        default_model="mlp",
        mean=(DIGITS_MEAN,),
        std=(DIGITS_STD,),
    ),
    "mnist": DatasetSpec(
        name="mnist",
        num_classes=10,
        input_shape=(1, 28, 28),
        class_names=_DIGIT_NAMES,
        files=_IDX_FILES,
        default_model="lfighter-cnn",
        mean=(0.1307,),
        std=(0.3081,),
        hf_dataset="ylecun/mnist",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        num_classes=10,
        input_shape=(1, 28, 28),
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        files=_IDX_FILES,
        default_model="tolpegin-fmnist-cnn",
        mean=(0.2860,),
        std=(0.3530,),
        hf_dataset="zalando-datasets/fashion_mnist",
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        num_classes=10,
        input_shape=(3, 32, 32),
        class_names=(
            "airplane", "automobile", "bird", "cat", "deer",
            "dog", "frog", "horse", "ship", "truck",
        ),
        files=(*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH),
        default_model="tolpegin-cifar-cnn",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        hf_dataset="uoft-cs/cifar10",
    ),
}  # fmt: skip


def get_spec(name: str) -> DatasetSpec:
    """Look up a dataset spec; KeyError lists the allowed names."""
    try:
        return DATASETS[name]
    except KeyError:
        allowed = ", ".join(sorted(DATASETS))
        raise KeyError(f"unknown dataset {name!r}; allowed: {allowed}") from None


@dataclass
class Dataset:
    """A loaded dataset. Tensors are shared by the in-process cache: treat
    them as read-only (index/clone before modifying)."""

    name: str
    spec: DatasetSpec
    x_train: torch.Tensor  # float32 [N, C, H, W], normalised
    y_train: torch.Tensor  # int64 [N]
    x_test: torch.Tensor
    y_test: torch.Tensor
    augment: Augment | None = None

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes


# ------------------------------------------------------------------ normalisation


def normalise_images(images: np.ndarray, spec: DatasetSpec, scale: float) -> torch.Tensor:
    """uint8 [N,H,W] or [N,H,W,C] -> normalised float32 tensor [N,C,H,W].

    ``scale`` is the raw pixel maximum (255, or 16 for digits)."""
    x = np.asarray(images, dtype=np.float32) / np.float32(scale)
    if x.ndim == 3:
        x = x[:, None, :, :]
    else:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(1, -1, 1, 1)
    x -= mean
    x /= std
    return torch.from_numpy(x)


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(y, dtype=np.int64).copy())


def _build(spec: DatasetSpec, arrays, scale: float, augment: Augment | None) -> Dataset:
    x_tr, y_tr, x_te, y_te = arrays
    if not (len(x_tr) == len(y_tr) and len(x_te) == len(y_te)):
        raise DataError(f"{spec.name}: image and label counts differ")
    for y in (y_tr, y_te):
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise DataError(f"{spec.name}: labels outside 0..{spec.num_classes - 1}")
    return Dataset(
        name=spec.name,
        spec=spec,
        x_train=normalise_images(x_tr, spec, scale),
        y_train=_labels(y_tr),
        x_test=normalise_images(x_te, spec, scale),
        y_test=_labels(y_te),
        augment=augment,
    )


# ------------------------------------------------------------------- augmentation


def cifar10_augment(
    x: torch.Tensor,
    gen: torch.Generator,
    *,
    padding: int = 4,
    fill: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random crop (same size, ``padding`` px border) + random horizontal flip.

    Per sample, vectorised over the batch, driven only by ``gen`` so runs are
    reproducible. The border is black in pixel space (``fill`` defaults to
    CIFAR-10's normalised black), i.e. what torchvision's
    ``RandomCrop(32, padding=4)`` before ``Normalize`` produces.
    """
    b, c, h, w = x.shape
    if fill is None:
        fill = DATASETS["cifar10"].pixel_value(0.0) if c == 3 else torch.zeros(c)
    fill = fill.to(dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    padded = fill.expand(b, c, h + 2 * padding, w + 2 * padding).clone()
    padded[:, :, padding : padding + h, padding : padding + w] = x
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    rows = dy[:, None] + torch.arange(h)
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    rows, cols = rows.to(x.device), cols.to(x.device)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


# -------------------------------------------------------------------- file lookup

#: Environment variable that replaces the data-dir key's default ("data").
DATA_ENV = "FL_POISON_DATA"
DEFAULT_DATA_DIR = "data"


def resolve_data_dir(value: str) -> Path:
    """The folder a run's ``data-dir`` means.

    The key's schema default stays ``"data"`` (so config digests do not
    depend on the machine); when the resolved value *is* that default and
    ``$FL_POISON_DATA`` is set, the environment variable is used instead. A
    ``data-dir`` given explicitly (other than ``data``) always wins.
    """
    env = os.environ.get(DATA_ENV, "").strip()
    if value == DEFAULT_DATA_DIR and env:
        return Path(env).expanduser()
    return Path(value).expanduser()



def _candidate_dirs(name: str, data_dir: Path) -> list[Path]:
    """Folders searched for ``name``'s files, most specific first."""
    base = [data_dir / name, data_dir]
    extra = {"mnist": ["MNIST/raw"], "fashion-mnist": ["FashionMNIST/raw"]}
    dirs = base + [data_dir / p for p in extra.get(name, [])]
    if name == "cifar10":
        dirs = [d / CIFAR10_SUBDIR for d in base] + base
    return dirs


def _find_file(folder: Path, filename: str) -> Path | None:
    """Locate ``filename`` in ``folder``, accepting the un-gzipped variant."""
    names = [filename]
    if filename.endswith(".gz"):
        names.append(filename[: -len(".gz")])
    for n in names:
        if (folder / n).is_file():
            return folder / n
    return None


def _locate(spec: DatasetSpec, data_dir: Path) -> dict[str, Path] | None:
    """Paths of all expected files from the first folder holding all of them."""
    for folder in _candidate_dirs(spec.name, data_dir):
        found = {f: _find_file(folder, f) for f in spec.files}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def describe_files(name: str, data_dir: str | Path) -> dict:
    """Where each expected file of ``name`` was found (None if missing)."""
    spec = get_spec(name)
    data_dir = Path(data_dir)
    dirs = _candidate_dirs(name, data_dir)
    if not spec.files:
        return {
            "name": name,
            "data_dir": str(data_dir),
            "searched": [],
            "files": {},
            "complete": True,
            "source": "bundled with scikit-learn",
        }
    complete = _locate(spec, data_dir)
    files = {k: str(v) for k, v in complete.items()} if complete else {}
    if not complete:
        for f in spec.files:
            hit = next((p for d in dirs if (p := _find_file(d, f))), None)
            files[f] = str(hit) if hit else None
    return {
        "name": name,
        "data_dir": str(data_dir),
        "searched": [str(d) for d in dirs],
        "files": files,
        "complete": complete is not None,
        "source": "files" if complete else None,
    }


def _missing_message(spec: DatasetSpec, data_dir: Path, reason: str) -> str:
    missing = [f for f, p in describe_files(spec.name, data_dir)["files"].items() if not p]
    searched = ", ".join(str(d) for d in _candidate_dirs(spec.name, data_dir))
    gz_note = " (un-gzipped names accepted too)" if spec.files[0].endswith(".gz") else ""
    return (
        f"{spec.name}: dataset files not found. Missing: {', '.join(missing)}{gz_note}. "
        f"Expected files: {', '.join(spec.files)}. Searched: {searched}. "
        f"Place the canonical files in {data_dir / spec.name} or point the "
        f"`data-dir` config key at the folder that holds them. {reason}"
    )


# ------------------------------------------------------------------------ loaders


def _read_idx_set(paths: dict[str, Path]):
    x_tr, y_tr, x_te, y_te = (read_idx(paths[f]) for f in _IDX_FILES)
    for img, lab, part in ((x_tr, y_tr, "train"), (x_te, y_te, "t10k")):
        if img.ndim != 3 or img.shape[1:] != (28, 28) or img.dtype != np.uint8:
            raise DataError(f"{paths[f'{part}-images-idx3-ubyte.gz']}: expected uint8 [N,28,28]")
        if lab.ndim != 1 or len(lab) != len(img):
            raise DataError(
                f"{paths[f'{part}-labels-idx1-ubyte.gz']}: {len(lab)} labels for "
                f"{len(img)} images"
            )
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


def _read_files(spec: DatasetSpec, paths: dict[str, Path]):
    if spec.name == "cifar10":
        train = [read_cifar10_batch(paths[f]) for f in CIFAR10_TRAIN_BATCHES]
        x_te, y_te = read_cifar10_batch(paths[CIFAR10_TEST_BATCH])
        x_tr = np.concatenate([x for x, _ in train])
        y_tr = np.concatenate([y for _, y in train])
        return x_tr, y_tr, x_te, y_te
    return _read_idx_set(paths)


def _load_digits() -> Dataset:
    """sklearn's bundled 8x8 digits, stratified 80/20 split (random_state 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        bunch.images,
        bunch.target,
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=bunch.target,
    )
    return _build(DATASETS["digits"], (x_tr, y_tr, x_te, y_te), 16.0, None)


def _augment_for(spec: DatasetSpec) -> Augment | None:
    return cifar10_augment if spec.name == "cifar10" else None


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str, download: bool) -> Dataset:
    spec = DATASETS[name]
    if name == "digits":
        return _load_digits()
    data_dir = Path(root)
    paths = _locate(spec, data_dir)
    if paths is None:
        if not download:
            raise DataError(_missing_message(spec, data_dir, "Download is disabled."))
        arrays = _download(spec, data_dir)
    else:
        arrays = _read_files(spec, paths)
    return _build(spec, arrays, 255.0, _augment_for(spec))


def load_dataset(name: str, data_dir: str | Path, download: bool = True) -> Dataset:
    """Load ``name`` from ``data_dir`` (see module docstring for the layout).

    Cached per (name, resolved data_dir, download): repeated calls return the
    same object. Raises KeyError for unknown names and DataError for
    missing/corrupt files or a failed download.
    """
    get_spec(name)
    root = "" if name == "digits" else str(Path(data_dir).expanduser().resolve())
    with _LOCK:
        return _load_cached(name, root, bool(download))


def clear_cache() -> None:
    """Drop cached datasets (tests, or after files changed on disk)."""
    _load_cached.cache_clear()


# ----------------------------------------------------------------------- download


def _env_true(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_offline_mode() -> bool:
    """The user asked the HF stack for cache-only operation."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """TCP-connect to the hub within ``timeout`` s (DNS included, via a thread:
    ``getaddrinfo`` ignores socket timeouts)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme != "http" else 80)
    ok = threading.Event()

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.set()
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return ok.is_set()


def _split_to_arrays(split) -> tuple[np.ndarray, np.ndarray]:
    """HF split with an Image column and ``label`` -> (uint8 images, int64 labels)."""
    import datasets as hf

    image_col = next(
        (k for k, v in split.features.items() if isinstance(v, hf.Image)), None
    )
    if image_col is None or "label" not in split.features:
        raise DataError(f"unexpected columns {list(split.features)} in downloaded data")
    images = np.stack([np.asarray(im, dtype=np.uint8) for im in split[image_col]])
    return images, np.asarray(split["label"], dtype=np.int64)


def _fetch_hf(spec: DatasetSpec) -> tuple[np.ndarray, ...]:
    from flwr_datasets import FederatedDataset

    fds = FederatedDataset(
        dataset=spec.hf_dataset, partitioners={"train": 1}, shuffle=False
    )
    x_tr, y_tr = _split_to_arrays(fds.load_split("train"))
    x_te, y_te = _split_to_arrays(fds.load_split("test"))
    return x_tr, y_tr, x_te, y_te


def _save_canonical(spec: DatasetSpec, data_dir: Path, arrays) -> None:
    """Best effort: store downloaded arrays in the canonical layout."""
    target = data_dir / spec.name
    try:
        if spec.name == "cifar10":
            write_cifar10_batches(target, *arrays)
        else:
            for fname, arr in zip(_IDX_FILES, arrays):
                write_idx(target / fname, arr.astype(np.uint8))
    except OSError:
        pass  # read-only data dir: the data is still usable for this run


def _download(spec: DatasetSpec, data_dir: Path) -> tuple[np.ndarray, ...]:
    """Fetch via flwr-datasets, failing fast (DataError) when offline."""
    if not _hub_offline_mode() and not _hub_reachable():
        raise DataError(
            _missing_message(
                spec,
                data_dir,
                f"Download of {spec.hf_dataset} failed: the Hugging Face hub is "
                "not reachable from this machine.",
            )
        )
    try:
        arrays = _fetch_hf(spec)
    except DataError:
        raise
    except Exception as exc:  # network, hub and parsing errors alike
        raise DataError(
            _missing_message(
                spec,
                data_dir,
                f"Download of {spec.hf_dataset} failed: {type(exc).__name__}: {exc}",
            )
        ) from exc
    _save_canonical(spec, data_dir, arrays)
    return arrays
