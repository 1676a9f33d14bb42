"""Tests for canonical file readers, dataset loading, normalisation and augmentation.

Fixture files are written by hand with ``struct``/``pickle`` (not with the
package's own writers) so a reader bug cannot cancel out a writer bug.
Nothing here downloads: the hub probe and fetch are monkeypatched.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fl_poison.data.datasets as ds_mod
from fl_poison.data import (
    DATASETS,
    DataError,
    cifar10_augment,
    clear_cache,
    describe_files,
    get_spec,
    load_dataset,
    read_cifar10_batches,
    read_idx,
)
from fl_poison.data.formats import write_cifar10_batches, write_idx

torch.set_num_threads(1)

from conftest import SHARED_DATA as MNIST_DIR  # noqa: E402  (../shared/data, any checkout)
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


# ------------------------------------------------------------------ helpers


def idx_bytes(arr: np.ndarray, code: int, be_dtype: str) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim)
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(be_dtype).tobytes()


def write_idx_by_hand(path: Path, arr: np.ndarray, gz: bool) -> Path:
    raw = idx_bytes(arr.astype(np.uint8), 0x08, ">u1")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def make_idx_dataset(folder: Path, n_train: int, n_test: int, gz: bool, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    )
    for name, arr in zip(IDX_NAMES, arrays):
        write_idx_by_hand(folder / (name + (".gz" if gz else "")), arr, gz)
    return arrays


def make_cifar_dir(folder: Path, per_batch: int = 2, n_test: int = 3, seed: int = 0):
    """Five canonical train batches + a test batch of random CHW rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(1, 7):
        n = per_batch if i <= 5 else n_test
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        lab = rng.integers(0, 10, n).tolist()
        name = f"data_batch_{i}" if i <= 5 else "test_batch"
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": b"x", b"data": data, b"labels": lab}, fh, protocol=2)
        rows.append(data)
        labels.append(lab)
    return np.concatenate(rows[:5]), np.concatenate(labels[:5]), rows[5], np.array(labels[5])


# ---------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_uint8_roundtrip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx_by_hand(tmp_path / ("a.idx" + (".gz" if gz else "")), arr, gz)
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(
    "code,be,native",
    [(0x0B, ">i2", np.int16), (0x0C, ">i4", np.int32), (0x0D, ">f4", np.float32),
     (0x0E, ">f8", np.float64), (0x09, ">i1", np.int8)],
)  # fmt: skip
def test_read_idx_other_dtypes_big_endian(tmp_path, code, be, native):
    arr = np.array([[-3, 1000 % 127, 7], [0, -1, 42]], dtype=native)
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(arr, code, be))
    out = read_idx(path)
    assert out.dtype == np.dtype(native)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_1d_labels(tmp_path):
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    path = tmp_path / "l.gz"
    path.write_bytes(gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 5) + labels.tobytes()))
    np.testing.assert_array_equal(read_idx(path), labels)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_truncated_data(tmp_path, gz):
    raw = idx_bytes(np.zeros((4, 5, 5), np.uint8), 0x08, ">u1")[:-7]
    path = tmp_path / "trunc.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)


def test_read_idx_truncated_gzip_stream(tmp_path):
    raw = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8), 0x08, ">u1"))
    path = tmp_path / "cut.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "h.idx"
    path.write_bytes(struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">I", 10))
    with pytest.raises(DataError, match="h.idx"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8), 0x08, ">u1") + b"\x00\x01")
    with pytest.raises(DataError, match="trailing"):
        read_idx(path)


@pytest.mark.parametrize(
    "header,what",
    [(b"\x01\x00\x08\x01", "magic"), (b"\x00\x00\x07\x01", "type code")],
)
def test_read_idx_bad_magic_or_dtype(tmp_path, header, what):
    path = tmp_path / "bad.idx"
    path.write_bytes(header + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(path) in str(err.value) and what in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz"):
        read_idx(tmp_path / "nope.gz")


def test_write_idx_roundtrip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "w.gz", arr)
    assert (tmp_path / "w.gz").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "w.gz"), arr)


# -------------------------------------------------------------------- CIFAR


def test_read_cifar10_batches_hwc_layout(tmp_path):
    x_tr_rows, y_tr, x_te_rows, y_te = make_cifar_dir(tmp_path / "cifar-10-batches-py")
    x_tr, ytr, x_te, yte = read_cifar10_batches(tmp_path)  # parent dir accepted
    assert x_tr.shape == (10, 32, 32, 3) and x_te.shape == (3, 32, 32, 3)
    assert x_tr.dtype == np.uint8
    # Row layout is CHW: element (c, r, q) lives at c*1024 + r*32 + q.
    assert x_tr[7, 5, 9, 2] == x_tr_rows[7, 2 * 1024 + 5 * 32 + 9]
    assert x_te[1, 31, 0, 1] == x_te_rows[1, 1 * 1024 + 31 * 32 + 0]
    np.testing.assert_array_equal(ytr, y_tr)
    np.testing.assert_array_equal(yte, y_te)


def test_read_cifar10_missing_batch_names_file(tmp_path):
    make_cifar_dir(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        read_cifar10_batches(tmp_path)


def test_read_cifar10_corrupt_batch(tmp_path):
    make_cifar_dir(tmp_path)
    raw = (tmp_path / "test_batch").read_bytes()
    (tmp_path / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="test_batch"):
        read_cifar10_batches(tmp_path)


def test_read_cifar10_wrong_row_size(tmp_path):
    make_cifar_dir(tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DataError, match="data_batch_2"):
        read_cifar10_batches(tmp_path)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_read_cifar10_refuses_arbitrary_pickle_globals(tmp_path, capsys):
    make_cifar_dir(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh)
    with pytest.raises(DataError, match="data_batch_1"):
        read_cifar10_batches(tmp_path)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize("sub", ["cifar10/cifar-10-batches-py", "cifar10"])
def test_load_cifar10_normalised(tmp_path, sub):
    rows, y_tr, _, y_te = make_cifar_dir(tmp_path / sub)
    rows[3, 1 * 1024 + 5 * 32 + 7] = 200  # (sample 3, green, row 5, col 7)
    for i, name in enumerate(f"data_batch_{k}" for k in range(1, 6)):
        batch = {b"data": rows[2 * i : 2 * i + 2], b"labels": y_tr[2 * i : 2 * i + 2].tolist()}
        with open(tmp_path / sub / name, "wb") as fh:
            pickle.dump(batch, fh)
    d = load_dataset("cifar10", tmp_path, download=False)
    assert d.x_train.shape == (10, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    expected = (200 / 255 - 0.4822) / 0.2435
    assert d.x_train[3, 1, 5, 7].item() == pytest.approx(expected, abs=1e-5)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    raw = torch.from_numpy(rows.reshape(10, 3, 32, 32)).float() / 255
    torch.testing.assert_close(d.x_train, (raw - mean) / std)
    assert d.y_train.tolist() == y_tr.tolist() and d.y_test.tolist() == y_te.tolist()
    assert d.augment is not None


def test_load_cifar10_missing_without_download(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path, download=False)
    msg = str(err.value)
    assert "data_batch_1" in msg and "test_batch" in msg and "data-dir" in msg
    assert str(tmp_path) in msg


# ------------------------------------------------------------ Fashion-MNIST


@pytest.mark.parametrize("gz,sub", [(True, "fashion-mnist"), (False, "fashion-mnist"), (True, "")])
def test_load_fashion_mnist_from_idx(tmp_path, gz, sub):
    x_tr, y_tr, x_te, y_te = make_idx_dataset(tmp_path / sub, 12, 5, gz)
    d = load_dataset("fashion-mnist", tmp_path, download=False)
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    assert d.y_train.tolist() == y_tr.tolist() and d.y_test.tolist() == y_te.tolist()
    expected = (x_te[2, 10, 20] / 255 - 0.2860) / 0.3530
    assert d.x_test[2, 0, 10, 20].item() == pytest.approx(expected, abs=1e-5)
    assert d.augment is None and d.spec.class_names[9] == "Ankle boot"


def test_load_fashion_mnist_missing_names_file_and_data_dir(tmp_path):
    make_idx_dataset(tmp_path / "fashion-mnist", 4, 2, gz=True)
    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", tmp_path, download=False)
    msg = str(err.value)
    assert "Missing: t10k-labels-idx1-ubyte.gz" in msg
    assert "data-dir" in msg and str(tmp_path / "fashion-mnist") in msg


def test_load_idx_label_count_mismatch(tmp_path):
    make_idx_dataset(tmp_path / "mnist", 6, 2, gz=True)
    write_idx_by_hand(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(5), True)
    with pytest.raises(DataError, match="train-labels"):
        load_dataset("mnist", tmp_path, download=False)


def test_cache_returns_same_object(tmp_path):
    make_idx_dataset(tmp_path / "fashion-mnist", 4, 2, gz=True)
    a = load_dataset("fashion-mnist", tmp_path, download=False)
    b = load_dataset("fashion-mnist", str(tmp_path / "fashion-mnist" / ".."), download=False)
    assert a is b


def test_download_fails_fast_when_hub_unreachable(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(ds_mod, "_hub_reachable", lambda timeout=3.0: False)

    def no_fetch(spec):
        raise AssertionError("must not try to fetch when the hub is unreachable")

    monkeypatch.setattr(ds_mod, "_fetch_hf", no_fetch)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", tmp_path, download=True)
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "not reachable" in msg and "data-dir" in msg and "train-images-idx3-ubyte.gz" in msg


def test_download_error_becomes_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ds_mod, "_hub_reachable", lambda timeout=3.0: True)

    def broken(spec):
        raise ConnectionError("boom")

    monkeypatch.setattr(ds_mod, "_fetch_hf", broken)
    with pytest.raises(DataError, match="boom"):
        load_dataset("mnist", tmp_path, download=True)


def test_downloaded_arrays_are_saved_canonically(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    arrays = (
        rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 6),
        rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 2),
    )
    monkeypatch.setattr(ds_mod, "_hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(ds_mod, "_fetch_hf", lambda spec: arrays)
    d = load_dataset("fashion-mnist", tmp_path, download=True)
    assert d.y_train.tolist() == arrays[1].tolist()
    info = describe_files("fashion-mnist", tmp_path)
    assert info["complete"]
    np.testing.assert_array_equal(
        read_idx(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"), arrays[0]
    )


def test_hf_split_conversion():
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    imgs = [np.full((28, 28), v, np.uint8) for v in (0, 128, 255)]
    split = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(a) for a in imgs], "label": [3, 1, 4]},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)}
        ),
    )
    x, y = ds_mod._split_to_arrays(split)
    assert x.shape == (3, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, np.stack(imgs))
    assert y.tolist() == [3, 1, 4]


def test_cifar_writer_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 10)
    write_cifar10_batches(tmp_path, x, y, x[:3], y[:3])
    x_tr, y_tr, x_te, y_te = read_cifar10_batches(tmp_path)
    np.testing.assert_array_equal(x_tr, x)
    np.testing.assert_array_equal(y_te, y[:3])


# --------------------------------------------------------------- real MNIST


@pytest.mark.slow
@pytest.mark.skipif(
    not (MNIST_DIR / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="shared MNIST not present",
)
def test_load_real_mnist():
    d = load_dataset("mnist", MNIST_DIR, download=False)
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.y_train.shape == (60000,) and d.y_test.shape == (10000,)
    assert int(d.y_train.min()) == 0 and int(d.y_train.max()) == 9
    assert d.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first labels
    # The published constants standardise the training set.
    assert abs(d.x_train.mean().item()) < 0.01 and abs(d.x_train.std().item() - 1) < 0.01
    info = describe_files("mnist", MNIST_DIR)
    assert info["complete"] and all(info["files"].values())


# ------------------------------------------------------------ digits, specs


def test_digits_split_and_normalisation():
    from sklearn.datasets import load_digits

    d = load_dataset("digits", "/nonexistent")
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert torch.bincount(d.y_test, minlength=10).min() >= 35  # stratified
    full = load_digits().data / 16
    assert ds_mod.DIGITS_MEAN == pytest.approx(full.mean(), abs=1e-3)
    assert ds_mod.DIGITS_STD == pytest.approx(full.std(), abs=1e-3)
    clear_cache()
    again = load_dataset("digits", "/elsewhere")
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)


def test_registry_specs():
    assert set(DATASETS) == {"digits", "mnist", "fashion-mnist", "cifar10"}
    assert get_spec("digits").input_shape == (1, 8, 8)
    assert get_spec("mnist").default_model == "lfighter-cnn"
    assert get_spec("fashion-mnist").default_model == "tolpegin-fmnist-cnn"
    assert get_spec("cifar10").input_shape == (3, 32, 32)
    assert get_spec("cifar10").default_model == "tolpegin-cifar-cnn"
    assert all(len(s.class_names) == s.num_classes == 10 for s in DATASETS.values())
    with pytest.raises(KeyError, match="fashion-mnist"):
        get_spec("imagenet")


def test_describe_files_missing(tmp_path):
    info = describe_files("mnist", tmp_path)
    assert not info["complete"]
    assert set(info["files"]) == set(get_spec("mnist").files)
    assert all(v is None for v in info["files"].values())
    assert str(tmp_path / "mnist") in info["searched"]


# ------------------------------------------------------------- augmentation


def _reference_crop_flip(x: torch.Tensor, fill: torch.Tensor, dy: int, dx: int, flip: bool):
    """Independent reference: explicit pad-then-slice on one CHW image."""
    c, h, w = x.shape
    padded = torch.empty(c, h + 8, w + 8)
    for ch in range(c):
        padded[ch] = torch.nn.functional.pad(x[ch], (4, 4, 4, 4), value=float(fill[ch]))
    out = padded[:, dy : dy + h, dx : dx + w]
    return out.flip(-1) if flip else out


def test_augment_shape_and_determinism():
    x = torch.randn(16, 3, 32, 32)
    a = cifar10_augment(x, torch.Generator().manual_seed(3))
    b = cifar10_augment(x, torch.Generator().manual_seed(3))
    c = cifar10_augment(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_flip_only_when_no_padding():
    x = torch.randn(64, 3, 32, 32)
    out = cifar10_augment(x, torch.Generator().manual_seed(0), padding=0)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    same = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 10 < sum(flipped) < 54  # per-sample coin, both outcomes occur


def test_augment_is_pad_crop_flip_with_black_border():
    x = torch.randn(12, 3, 32, 32)
    out = cifar10_augment(x, torch.Generator().manual_seed(7))
    black = (0 - torch.tensor([0.4914, 0.4822, 0.4465])) / torch.tensor([0.2470, 0.2435, 0.2616])
    shifted = 0
    for o, xi in zip(out, x):
        matches = [
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if torch.equal(o, _reference_crop_flip(xi, black, dy, dx, f))
        ]
        assert len(matches) == 1, "each output must be exactly one pad/crop/flip of its input"
        shifted += matches[0][:2] != (4, 4)
    assert shifted >= 8  # content really moves for most samples
