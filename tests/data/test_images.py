"""Tests for ``contrastkit.data.images``: every format written tiny into ``tmp_path``."""

from __future__ import annotations

import builtins
import gzip
import io
import os
import pickle
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastkit.data import images as im
from contrastkit.data.images import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    FASHION_MNIST_CLASSES,
    DataFormatError,
    ImageDataset,
    data_root,
    load_cifar,
    load_digits,
    load_fashion_mnist,
    load_image_dataset,
    load_image_folder,
    read_idx,
)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _synthetic(n_train: int = 60, n_test: int = 20, num_classes: int = 3) -> ImageDataset:
    """Pixel [0, 0, 0] of image i is i, so a subset's images reveal its indices."""

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
        x[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
        return x, torch.arange(n) % num_classes

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return ImageDataset("toy", xtr, ytr, xte, yte, tuple(f"c{k}" for k in range(num_classes)))


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x08 << 8) | arr.ndim if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _fashion_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 4, 3), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([0, 9, 3, 3, 1], dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 4, 3), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([9, 2], dtype=np.uint8),
    }


def _write_fashion(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = True) -> None:
    for stem, arr in arrays.items():
        _write(folder / (stem + (".gz" if gz else "")), _idx_bytes(arr), gz=gz)


def _cifar_batches(variant: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per official batch name: (images uint8 [3, 3, 32, 32], fine labels int64 [3])."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if variant == 100:
        names = ["train", "test"]
    return {
        n: (
            rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, variant, 3).astype(np.int64),
        )
        for n in names
    }


def _write_cifar_binary(root: Path, variant: int, batches: dict) -> Path:
    folder = root / ("cifar-10-batches-bin" if variant == 10 else "cifar-100-binary")
    for name, (x, y) in batches.items():
        records = []
        for img, label in zip(x, y, strict=True):
            head = bytes([label]) if variant == 10 else bytes([label % 20, label])  # coarse, fine
            records.append(head + img.tobytes())
        _write(folder / f"{name}.bin", b"".join(records))
    return folder


def _batch_dict(variant: int, x: np.ndarray, y: np.ndarray) -> dict:
    d = {b"batch_label": b"fake", b"data": x.reshape(len(x), -1)}
    if variant == 10:
        d[b"labels"] = [int(v) for v in y]
    else:
        d[b"fine_labels"] = [int(v) for v in y]
        d[b"coarse_labels"] = [int(v) % 20 for v in y]
    return d


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes str and bytes as Python 2 ``str`` (BINSTRING), as the official CIFAR files do."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def _py2_pickle(obj: object) -> bytes:
    """A protocol-2 pickle naming ``numpy.core.multiarray`` like files written by numpy 1.x."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def _write_cifar_python(root: Path, variant: int, batches: dict, *, py2: bool = False) -> Path:
    folder = root / ("cifar-10-batches-py" if variant == 10 else "cifar-100-python")
    dump = _py2_pickle if py2 else (lambda obj: pickle.dumps(obj, protocol=4))
    for name, (x, y) in batches.items():
        _write(folder / name, dump(_batch_dict(variant, x, y)))
    return folder


def _expected_cifar(batches: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    items = list(batches.values())
    x_train = np.concatenate([x for x, _ in items[:-1]])
    y_train = np.concatenate([y for _, y in items[:-1]])
    return x_train, y_train, items[-1][0], items[-1][1]


def _assert_cifar(ds: ImageDataset, batches: dict, variant: int) -> None:
    x_train, y_train, x_test, y_test = _expected_cifar(batches)
    assert ds.name == f"cifar{variant}"
    assert ds.train_images.shape == (3 * (len(batches) - 1), 3, 32, 32)
    assert ds.channels == 3 and ds.size == (32, 32)
    np.testing.assert_array_equal(ds.train_images.numpy(), x_train)
    np.testing.assert_array_equal(ds.train_labels.numpy(), y_train)
    np.testing.assert_array_equal(ds.test_images.numpy(), x_test)
    np.testing.assert_array_equal(ds.test_labels.numpy(), y_test)
    assert ds.train_labels.dtype == torch.int64


def _save_png(path: Path, array: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


# --------------------------------------------------------------------------------------------
# ImageDataset and DataFormatError
# --------------------------------------------------------------------------------------------


def test_dataset_properties_and_repr() -> None:
    ds = _synthetic()
    assert ds.num_classes == 3 and ds.channels == 1 and ds.size == (2, 2)
    assert repr(ds) == "ImageDataset('toy', train=60, test=20, image=1x2x2, classes=3)"


def test_dataset_validates_inputs() -> None:
    ds = _synthetic()
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("x", ds.train_images.float(), ds.train_labels, *_test_part(ds))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ImageDataset("x", ds.train_images, ds.train_labels, *_test_part(ds)[:2], ("a", "b"))
    with pytest.raises(ValueError, match="59 labels"):
        ImageDataset("x", ds.train_images, ds.train_labels[:-1], *_test_part(ds))
    with pytest.raises(ValueError, match="test images"):
        bad = torch.zeros(2, 1, 3, 3, dtype=torch.uint8)
        ImageDataset("x", ds.train_images, ds.train_labels, bad, torch.zeros(2).long(), ds.classes)


def _test_part(ds: ImageDataset) -> tuple:
    return ds.test_images, ds.test_labels, ds.classes


def test_subset_is_stratified_deterministic_and_nested() -> None:
    ds = _synthetic(n_train=90, n_test=30)
    sub = ds.subset(train_limit=30, test_limit=9, seed=3)
    assert len(sub.train_labels) == 30 and len(sub.test_labels) == 9
    assert sub.train_labels.bincount().tolist() == [10, 10, 10]
    assert sub.test_labels.bincount().tolist() == [3, 3, 3]
    # the pixel encodes the original index: order kept, labels still match their images
    idx = sub.train_images[:, 0, 0, 0].long()
    assert torch.all(idx[1:] > idx[:-1])
    assert torch.equal(sub.train_labels, ds.train_labels[idx])
    again = ds.subset(train_limit=30, test_limit=9, seed=3)
    assert torch.equal(again.train_images, sub.train_images)
    assert not torch.equal(ds.subset(train_limit=30, seed=4).train_images, sub.train_images)
    smaller = set(ds.subset(train_limit=12, seed=3).train_images[:, 0, 0, 0].tolist())
    assert smaller <= set(idx.tolist())
    whole = ds.subset()
    assert torch.equal(whole.train_images, ds.train_images)
    assert len(ds.subset(test_limit=1000).test_labels) == 30
    assert len(ds.subset(train_limit=0).train_labels) == 0
    with pytest.raises(ValueError, match="train_limit"):
        ds.subset(train_limit=-1)


def test_subset_keeps_class_proportions_when_imbalanced() -> None:
    ds = _synthetic(n_train=40)
    labels = torch.tensor([0] * 30 + [1] * 10)
    ds = ImageDataset("imb", ds.train_images, labels, *_test_part(ds))
    assert ds.subset(train_limit=8).train_labels.bincount().tolist() == [6, 2]


def test_data_format_error_message_and_pickling(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    assert str(DataFormatError(f, "bad")) == f"{f}: bad"
    assert str(DataFormatError(f, "bad", offset=7)) == f"{f}: offset 7: bad"
    err = DataFormatError(f, "bad", line=3)
    assert str(err) == f"{f}: line 3: bad"
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.line == 3 and back.path == f


# --------------------------------------------------------------------------------------------
# data_root
# --------------------------------------------------------------------------------------------


def test_data_root_env_missing_dir_is_an_error(tmp_path: Path, monkeypatch) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("CONTRASTKIT_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match="CONTRASTKIT_DATA") as info:
        data_root()
    assert str(missing) in str(info.value)


def test_data_root_env_and_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("CONTRASTKIT_DATA")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert data_root() is None
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert data_root() == (tmp_path / "shared" / "data").resolve()


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def test_digits_shapes_split_and_values() -> None:
    ds = load_digits()
    assert ds.name == "digits" and ds.classes == tuple("0123456789")
    assert ds.train_images.shape == (1347, 1, 8, 8) and ds.test_images.shape == (450, 1, 8, 8)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    allowed = torch.tensor([v * 255 // 16 for v in range(17)], dtype=torch.uint8)
    assert torch.isin(ds.train_images, allowed).all() and ds.train_images.max() == 255
    # stratified: each class's test share is within one image of 25 %
    all_counts = torch.cat([ds.train_labels, ds.test_labels]).bincount()
    test_counts = ds.test_labels.bincount(minlength=10)
    assert torch.all((test_counts - 0.25 * all_counts).abs() <= 1)


def test_digits_split_is_deterministic_and_seeded() -> None:
    a, b = load_digits(seed=1), load_digits(seed=1)
    assert torch.equal(a.test_images, b.test_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(load_digits(seed=2).test_images, a.test_images)
    assert len(load_digits(test_fraction=0.5).test_labels) == 899
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.0)


def test_digits_pixels_match_sklearn() -> None:
    from sklearn.datasets import load_digits as sk

    raw = sk().images.astype(np.int64) * 255 // 16
    ds = load_digits()
    first = ds.train_images[0, 0].numpy()
    assert any(np.array_equal(first, r) for r in raw)


# --------------------------------------------------------------------------------------------
# IDX / Fashion-MNIST
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = _write(tmp_path / "x-idx3-ubyte", _idx_bytes(arr), gz=gz)
    out = read_idx(path, ndim=3)
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_tiny_files(tmp_path: Path, gz: bool) -> None:
    arrays = _fashion_arrays()
    _write_fashion(tmp_path / "fashion_mnist", arrays, gz=gz)
    for root in (tmp_path, tmp_path / "fashion_mnist"):  # the folder or its parent
        ds = load_fashion_mnist(root)
        assert ds.name == "fashion_mnist" and ds.classes == FASHION_MNIST_CLASSES
        assert ds.train_images.shape == (5, 1, 4, 3) and ds.test_images.shape == (2, 1, 4, 3)
        np.testing.assert_array_equal(
            ds.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte"]
        )
        assert ds.train_labels.tolist() == [0, 9, 3, 3, 1]
        assert ds.test_labels.tolist() == [9, 2]


def _broken_fashion(tmp_path: Path, stem: str, data: bytes) -> Path:
    _write_fashion(tmp_path, _fashion_arrays())
    return _write(tmp_path / f"{stem}.gz", data, gz=True)


def test_idx_bad_magic(tmp_path: Path) -> None:
    labels = np.array([1, 2, 3, 4, 5], dtype=np.uint8)
    bad = _broken_fashion(tmp_path, "train-labels-idx1-ubyte", _idx_bytes(labels, magic=0x0802))
    with pytest.raises(DataFormatError) as info:
        load_fashion_mnist(tmp_path)
    assert str(info.value) == (
        f"{bad}: offset 0: bad IDX magic 0x00000802, expected 0x00000801 "
        "(unsigned bytes, 1 dimension)"
    )
    assert info.value.path == bad


def test_idx_truncated_data(tmp_path: Path) -> None:
    images = _fashion_arrays()["train-images-idx3-ubyte"]
    data = _idx_bytes(images)[:-5]
    bad = _broken_fashion(tmp_path, "train-images-idx3-ubyte", data)
    with pytest.raises(DataFormatError) as info:
        load_fashion_mnist(tmp_path)
    assert str(info.value) == (
        f"{bad}: offset 71: truncated data: dimensions 5x4x3 need 60 data bytes, found 55"
    )


def test_idx_trailing_bytes_and_short_header(tmp_path: Path) -> None:
    labels = np.array([1, 2], dtype=np.uint8)
    path = _write(tmp_path / "l", _idx_bytes(labels) + b"\x00")
    with pytest.raises(DataFormatError, match="trailing bytes"):
        read_idx(path, ndim=1)
    path = _write(tmp_path / "h", struct.pack(">I", 0x0803) + b"\x00\x00\x00\x02")
    with pytest.raises(DataFormatError, match="offset 4: truncated IDX header"):
        read_idx(path, ndim=3)
    path = _write(tmp_path / "e", b"")
    with pytest.raises(DataFormatError, match="too short"):
        read_idx(path, ndim=1)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.gz", gzip.compress(b"\x00" * 100)[:-12])
    with pytest.raises(DataFormatError, match="corrupt gzip") as info:
        read_idx(path, ndim=1)
    assert str(path) in str(info.value)


def test_idx_count_mismatch(tmp_path: Path) -> None:
    labels = np.array([1, 2, 3], dtype=np.uint8)
    bad = _broken_fashion(tmp_path, "train-labels-idx1-ubyte", _idx_bytes(labels))
    with pytest.raises(DataFormatError) as info:
        load_fashion_mnist(tmp_path)
    assert str(info.value) == (
        f"{bad}: offset 4: holds 3 labels but train-images-idx3-ubyte.gz holds 5 images"
    )


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    labels = np.array([9, 10], dtype=np.uint8)
    bad = _broken_fashion(tmp_path, "t10k-labels-idx1-ubyte", _idx_bytes(labels))
    with pytest.raises(DataFormatError) as info:
        load_fashion_mnist(tmp_path)
    assert str(info.value) == f"{bad}: offset 9: label 10 out of range 0..9"


def test_fashion_mnist_missing_lists_searched_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_DATA", str(tmp_path))
    monkeypatch.setattr(im, "SYSTEM_FASHION_MNIST", tmp_path / "system")
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist()
    msg = str(info.value)
    assert "train-images-idx3-ubyte[.gz]" in msg
    assert str(tmp_path / "fashion_mnist") in msg and str(tmp_path / "system") in msg
    assert "\n" not in msg
    # three of four files is still "not found"
    _write_fashion(tmp_path / "fashion_mnist", _fashion_arrays())
    (tmp_path / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError):
        load_fashion_mnist()


def _shared_fashion_root() -> Path | None:
    try:
        root = data_root()
    except FileNotFoundError:
        return None
    if root is None or not (root / "fashion_mnist").is_dir():
        return None
    return root


def test_real_fashion_mnist_from_shared_data() -> None:
    root = _shared_fashion_root()
    if root is None:
        pytest.skip(
            "shared Fashion-MNIST not found: set CONTRASTKIT_DATA or run pytest from the repo "
            "root with ../shared/data/fashion_mnist beside it"
        )
    ds = load_fashion_mnist()
    assert ds.train_images.shape == (60000, 1, 28, 28)
    assert ds.test_images.shape == (10000, 1, 28, 28)
    assert ds.train_labels.bincount().tolist() == [6000] * 10
    assert ds.test_labels.bincount().tolist() == [1000] * 10
    assert ds.train_labels[0] == 9 and ds.classes[9] == "Ankle boot"
    assert 0 < ds.train_images.float().mean() < 255


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------


def test_cifar10_binary_from_parent_with_meta(tmp_path: Path) -> None:
    batches = _cifar_batches(10)
    folder = _write_cifar_binary(tmp_path, 10, batches)
    names = [f"name{k}" for k in range(10)]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    ds = load_cifar(tmp_path, variant=10)
    _assert_cifar(ds, batches, 10)
    assert ds.classes == tuple(names)
    # the extracted folder itself works too
    assert torch.equal(load_cifar(folder).train_images, ds.train_images)


def test_cifar10_binary_without_meta_uses_official_names(tmp_path: Path) -> None:
    _write_cifar_binary(tmp_path, 10, _cifar_batches(10))
    assert load_cifar(tmp_path).classes == CIFAR10_CLASSES


def test_cifar100_binary_uses_fine_labels(tmp_path: Path) -> None:
    batches = _cifar_batches(100)
    _write_cifar_binary(tmp_path, 100, batches)
    ds = load_cifar(tmp_path, variant=100)
    _assert_cifar(ds, batches, 100)
    assert ds.classes == CIFAR100_CLASSES and len(set(CIFAR100_CLASSES)) == 100


@pytest.mark.parametrize("py2", [False, True])
def test_cifar10_python_matches_binary(tmp_path: Path, py2: bool) -> None:
    batches = _cifar_batches(10, seed=5)
    folder = _write_cifar_python(tmp_path / "py", 10, batches, py2=py2)
    meta = {b"label_names": [f"n{k}".encode() for k in range(10)], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(_py2_pickle(meta) if py2 else pickle.dumps(meta))
    _write_cifar_binary(tmp_path / "bin", 10, batches)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy.core.* names must not hit numpy's deprecation
        ds = load_cifar(folder, variant=10)
    _assert_cifar(ds, batches, 10)
    assert ds.classes == tuple(f"n{k}" for k in range(10))
    binary = load_cifar(tmp_path / "bin")
    assert torch.equal(binary.train_images, ds.train_images)
    assert torch.equal(binary.test_labels, ds.test_labels)


def test_cifar100_python_fine_labels_and_meta(tmp_path: Path) -> None:
    batches = _cifar_batches(100, seed=2)
    folder = _write_cifar_python(tmp_path, 100, batches, py2=True)
    fine = [f"f{k}".encode() for k in range(100)]
    meta = {b"fine_label_names": fine, b"coarse_label_names": [b"c"] * 20}
    (folder / "meta").write_bytes(_py2_pickle(meta))
    ds = load_cifar(tmp_path, variant=100)
    _assert_cifar(ds, batches, 100)
    assert ds.classes[7] == "f7"


def test_cifar_binary_truncated_record_and_bad_label(tmp_path: Path) -> None:
    folder = _write_cifar_binary(tmp_path, 10, _cifar_batches(10))
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFormatError) as info:
        load_cifar(tmp_path)
    assert str(info.value).startswith(f"{path}: offset 6146: truncated record")
    _write_cifar_binary(tmp_path, 10, _cifar_batches(10))
    path = folder / "test_batch.bin"
    data = bytearray(path.read_bytes())
    data[3073] = 10
    path.write_bytes(bytes(data))
    with pytest.raises(DataFormatError) as info:
        load_cifar(tmp_path)
    assert str(info.value) == f"{path}: offset 3073: label 10 out of range 0..9"


def test_cifar_binary_meta_with_wrong_count(tmp_path: Path) -> None:
    folder = _write_cifar_binary(tmp_path, 10, _cifar_batches(10))
    (folder / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(DataFormatError, match=re.escape("batches.meta.txt: 2 class names")):
        load_cifar(tmp_path)


def test_cifar_python_bad_contents(tmp_path: Path) -> None:
    batches = _cifar_batches(10)
    folder = _write_cifar_python(tmp_path, 10, batches)
    path = folder / "data_batch_3"
    x, y = batches["data_batch_3"]
    path.write_bytes(pickle.dumps({b"data": x.reshape(3, -1)}, protocol=4))
    with pytest.raises(DataFormatError, match="data_batch_3: missing key 'labels'"):
        load_cifar(tmp_path)
    path.write_bytes(pickle.dumps({b"data": x.reshape(3, -1)[:, :100], b"labels": y.tolist()}))
    with pytest.raises(DataFormatError, match="100 values, expected 3072"):
        load_cifar(tmp_path)
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    with pytest.raises(DataFormatError, match="expected a pickled dict"):
        load_cifar(tmp_path)
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataFormatError, match="cannot unpickle"):
        load_cifar(tmp_path)


def test_cifar_missing_lists_searched_paths(tmp_path: Path) -> None:
    _write_cifar_binary(tmp_path, 10, _cifar_batches(10))
    (tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_cifar(tmp_path, variant=10)
    msg = str(info.value)
    for part in ("cifar-10-batches-bin", "cifar-10-batches-py", "data_batch_5", "test_batch"):
        assert part in msg
    assert str(tmp_path / "cifar-10-batches-py") in msg
    with pytest.raises(ValueError, match="variant"):
        load_cifar(tmp_path, variant=20)


class _SystemCall:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


class _EvalCall:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (lambda m: _SystemCall(m), "system"),
        (lambda m: _EvalCall(m), "builtins.eval"),
        (lambda m: {b"data": np.zeros((3, 3072), np.uint8), b"labels": _EvalCall(m)}, "eval"),
    ],
    ids=["os.system", "builtins.eval", "nested-in-valid-batch"],
)
def test_malicious_pickle_is_refused_and_not_executed(
    tmp_path: Path, payload, refused: str
) -> None:
    marker = tmp_path / "pwned"
    folder = _write_cifar_python(tmp_path, 10, _cifar_batches(10))
    evil = folder / "data_batch_1"
    evil.write_bytes(pickle.dumps(payload(marker), protocol=4))
    with pytest.raises(DataFormatError) as info:
        load_cifar(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"{evil}: refused pickle global ") and refused in msg
    assert not marker.exists()


def test_malicious_meta_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = _write_cifar_python(tmp_path, 10, _cifar_batches(10))
    (folder / "batches.meta").write_bytes(pickle.dumps(_SystemCall(marker), protocol=2))
    with pytest.raises(DataFormatError, match=re.escape("batches.meta: refused pickle global")):
        load_cifar(tmp_path)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------


def _rgb_folder(root: Path, per_class: int = 4, h: int = 5, w: int = 6) -> dict[str, list]:
    rng = np.random.default_rng(0)
    written: dict[str, list] = {"cat": [], "dog": []}
    for name, arrays in written.items():
        for i in range(per_class):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            arrays.append(_save_png(root / name / f"{i}.png", arr))
    return written


def test_image_folder_rgb(tmp_path: Path) -> None:
    written = _rgb_folder(tmp_path / "pets")
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("ignored")
    ds = load_image_folder(tmp_path / "pets", test_fraction=0.5)
    assert ds.name == "pets" and ds.classes == ("cat", "dog")
    assert ds.train_images.shape == (4, 3, 5, 6) and ds.test_images.shape == (4, 3, 5, 6)
    assert ds.train_labels.bincount().tolist() == [2, 2]
    images = torch.cat([ds.train_images, ds.test_images]).permute(0, 2, 3, 1).numpy()
    labels = torch.cat([ds.train_labels, ds.test_labels]).tolist()
    for img, label in zip(images, labels, strict=True):  # PNG is lossless
        assert any(np.array_equal(img, a) for a in written[ds.classes[label]])
    again = load_image_folder(tmp_path / "pets", test_fraction=0.5)
    assert torch.equal(again.test_images, ds.test_images)


def test_image_folder_grayscale_and_resize(tmp_path: Path) -> None:
    for name in ("a", "b"):
        for i, (h, w) in enumerate([(4, 4), (7, 3), (9, 9)]):
            gray = np.full((h, w), 50 * i, dtype=np.uint8)
            _save_png(tmp_path / name / f"{i}.png", gray)
    ds = load_image_folder(tmp_path, size=8, test_fraction=0.34)
    assert ds.channels == 1 and ds.size == (8, 8)
    assert len(ds.train_labels) + len(ds.test_labels) == 6
    assert load_image_folder(tmp_path, size=(3, 5), test_fraction=0.34).size == (3, 5)
    # one colour image turns the whole folder RGB
    _save_png(tmp_path / "a" / "3.jpg", np.zeros((4, 4, 3), dtype=np.uint8))
    assert load_image_folder(tmp_path, size=4, test_fraction=0.34).channels == 3


def test_image_folder_mixed_sizes_without_size(tmp_path: Path) -> None:
    _rgb_folder(tmp_path)
    odd = tmp_path / "dog" / "2.png"
    _save_png(odd, np.zeros((5, 7, 3), dtype=np.uint8))
    with pytest.raises(DataFormatError) as info:
        load_image_folder(tmp_path)
    assert str(info.value) == (f"{odd}: image is 7x5 (WxH) but 0.png is 6x5; pass size= to resize")


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_image_folder_corrupt_file(tmp_path: Path, kind: str) -> None:
    _rgb_folder(tmp_path, h=64, w=64)
    bad = tmp_path / "cat" / "1.png"
    data = b"definitely not an image" if kind == "garbage" else bad.read_bytes()[:200]
    bad.write_bytes(data)
    with pytest.raises(DataFormatError, match="cannot read image") as info:
        load_image_folder(tmp_path)
    assert str(info.value).startswith(f"{bad}: ")


def test_image_folder_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no class subfolders"):
        load_image_folder(tmp_path)
    (tmp_path / "cls").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no"):
        load_image_folder(tmp_path)


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------


def test_load_image_dataset_dispatch(tmp_path: Path) -> None:
    ds = load_image_dataset("digits", seed=3)
    assert torch.equal(ds.test_images, load_digits(seed=3).test_images)
    _write_fashion(tmp_path / "fm", _fashion_arrays())
    assert load_image_dataset("Fashion-MNIST", tmp_path / "fm").train_images.shape[0] == 5
    _write_cifar_binary(tmp_path / "c10", 10, _cifar_batches(10))
    assert load_image_dataset("CIFAR-10", tmp_path / "c10").name == "cifar10"
    _write_cifar_binary(tmp_path / "c100", 100, _cifar_batches(100))
    assert load_image_dataset("cifar100", tmp_path / "c100").num_classes == 100
    _rgb_folder(tmp_path / "imgs")
    folder = load_image_dataset("image_folder", tmp_path / "imgs", size=3, test_fraction=0.5)
    assert folder.size == (3, 3)


def test_load_image_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown image dataset 'mnist'") as info:
        load_image_dataset("mnist")
    for name in ("cifar10", "cifar100", "digits", "fashion_mnist", "image_folder"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="needs root"):
        load_image_dataset("cifar10")
    with pytest.raises(ValueError, match="takes no root"):
        load_image_dataset("digits", tmp_path)
