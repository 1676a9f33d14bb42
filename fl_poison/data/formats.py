"""Readers (and writers) for the canonical on-disk dataset formats.

Pure numpy + stdlib on purpose: config validation, the CLI and tests can use
these without importing torch.

* IDX (MNIST, Fashion-MNIST): http://yann.lecun.com/exdb/mnist/ — a 4-byte
  magic ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32
  dimensions, then the data in big-endian order. Files may be gzipped.
* CIFAR-10 "python version": ``data_batch_1..5`` and ``test_batch`` pickles,
  each a dict with ``b"data"`` (uint8 ``[N, 3072]``, rows are CHW-flattened
  32x32 RGB images) and ``b"labels"`` (list of ints).
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "IDX_DTYPES",
    "CIFAR10_TRAIN_BATCHES",
    "CIFAR10_TEST_BATCH",
    "CIFAR10_SUBDIR",
    "read_idx",
    "write_idx",
    "read_cifar10_batch",
    "read_cifar10_batches",
    "find_cifar10_dir",
    "write_cifar10_batches",
]


class DataError(Exception):
    """A dataset file is missing, truncated or not in the expected format."""


# IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_SUBDIR = "cifar-10-batches-py"
_CIFAR_ROW = 3 * 32 * 32


# --------------------------------------------------------------------------- IDX


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, or a DataError that names the file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from exc


def _read_maybe_gzipped(path: Path) -> bytes:
    """Return the file's (decompressed) bytes; gzip is sniffed, not guessed
    from the suffix, so un-gzipped files named ``*.gz`` (or the reverse) work."""
    raw = _read_bytes(path)
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into a native-endian numpy array.

    Raises DataError naming ``path`` if the magic number, type code or the
    payload size (truncated or trailing bytes) is wrong.
    """
    path = Path(path)
    buf = _read_maybe_gzipped(path)
    if len(buf) < 4:
        raise DataError(f"{path}: truncated IDX header ({len(buf)} bytes, need 4)")
    zero, code, ndim = struct.unpack(">HBB", buf[:4])
    if zero != 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{buf[:4].hex()} "
            "(first two bytes must be zero)"
        )
    if code not in IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX data type code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{path}: IDX file declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{path}: truncated IDX header (dimensions cut off)")
    shape = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(buf) - header
    if actual < expected:
        raise DataError(
            f"{path}: truncated IDX data: shape {shape} needs {expected} bytes, "
            f"file has {actual}"
        )
    if actual > expected:
        raise DataError(
            f"{path}: {actual - expected} unexpected trailing bytes after IDX data "
            f"of shape {shape}"
        )
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))  # copy: writable, native order


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as IDX (gzipped if ``path`` ends in ``.gz``).

    Used to store downloaded data in the canonical layout so later runs find
    it offline."""
    path = Path(path)
    arr = np.asarray(array)
    code = next(
        (c for c, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == arr.dtype), None
    )
    if code is None:
        raise ValueError(f"dtype {arr.dtype} has no IDX type code")
    if not 1 <= arr.ndim <= 255:
        raise ValueError("IDX needs 1..255 dimensions")
    header = struct.pack(">HBB", 0, code, arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.astype(IDX_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


# ---------------------------------------------------------------------- CIFAR-10


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals numpy arrays need.

    The canonical CIFAR-10 distribution is a pickle; refusing other globals
    means a tampered data directory cannot execute code when loaded."""

    _ALLOWED = {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> object:
    raw = _read_bytes(path)
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on corrupt input
        raise DataError(
            f"{path}: not a readable CIFAR-10 batch pickle ({type(exc).__name__}: {exc})"
        ) from exc


def read_cifar10_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch -> (uint8 images [N,32,32,3] HWC, int64 labels [N])."""
    path = Path(path)
    obj = _load_pickle(path)
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise DataError(f'{path}: expected a dict with b"data" and b"labels"')
    data = np.asarray(obj[b"data"])
    labels = np.asarray(obj[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_ROW:
        raise DataError(
            f"{path}: data must be uint8 [N, {_CIFAR_ROW}], got {data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: labels must be {data.shape[0]} integers, got {labels.dtype} "
            f"{labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels outside 0..9")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def find_cifar10_dir(directory: str | Path) -> Path:
    """Return ``directory/cifar-10-batches-py`` if it exists, else ``directory``."""
    directory = Path(directory)
    sub = directory / CIFAR10_SUBDIR
    return sub if sub.is_dir() else directory


def read_cifar10_batches(
    directory: str | Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the canonical CIFAR-10 python batches.

    Accepts either the extracted archive's parent (containing
    ``cifar-10-batches-py/``) or that folder itself. All five train batches
    and the test batch must be present.
    Returns (x_train uint8 [N,32,32,3], y_train int64, x_test, y_test).
    """
    folder = find_cifar10_dir(directory)
    train = [read_cifar10_batch(folder / n) for n in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = read_cifar10_batch(folder / CIFAR10_TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test


def write_cifar10_batches(
    directory: str | Path,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> Path:
    """Write HWC uint8 arrays as canonical batches into ``directory/cifar-10-batches-py``.

    Used to persist downloaded data so later runs work offline."""
    folder = Path(directory) / CIFAR10_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    chunks = zip(np.array_split(x_train, 5), np.array_split(y_train, 5))
    for name, (x, y) in zip(CIFAR10_TRAIN_BATCHES, chunks):
        _write_cifar_batch(folder / name, x, y)
    _write_cifar_batch(folder / CIFAR10_TEST_BATCH, x_test, y_test)
    return folder


def _write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    data = np.ascontiguousarray(
        np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2)
    ).reshape(len(images), _CIFAR_ROW)
    obj = {
        b"batch_label": path.name.encode(),
        b"data": data,
        b"labels": [int(v) for v in labels],
    }
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=2)
