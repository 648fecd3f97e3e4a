"""Image datasets: reading the official formats, validating them, splitting.

Every loader returns an :class:`ImageDataset` holding the whole dataset in memory as tensors:
images are ``uint8 [N, C, H, W]`` (no scaling, no normalisation: views and encoders decide),
labels are ``int64 [N]`` indices into ``classes``. Nothing is ever downloaded.

- :func:`load_digits`: scikit-learn's embedded 8x8 digits (values 0..16), ``1x8x8``.
- :func:`load_fashion_mnist`: gzipped (or plain) IDX files, ``1x28x28``.
- :func:`load_cifar`: CIFAR-10 / CIFAR-100, binary or python (pickle) version, ``3x32x32``.
- :func:`load_image_folder`: ``root/<class>/*.png|jpg|jpeg``, any size (or resized).

:func:`load_image_dataset` dispatches by name. Malformed files raise :class:`DataFormatError`
(``"PATH: offset N: reason"``), missing files raise :class:`FileNotFoundError` listing every
path that was searched. The CIFAR python version is a pickle; it is read with a restricted
unpickler that only rebuilds numpy arrays, dicts, lists, strings and numbers.
"""

from __future__ import annotations

import functools
import gzip
import importlib
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "DATASET_NAMES",
    "FASHION_MNIST_CLASSES",
    "DataFormatError",
    "ImageDataset",
    "data_root",
    "load_cifar",
    "load_digits",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_image_folder",
    "read_idx",
]

PathLike = str | os.PathLike[str]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
"""Fine label names in the order of CIFAR-100's ``meta`` file (used only when it is absent)."""

#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


# --------------------------------------------------------------------------------------------
# The dataset container and the error type
# --------------------------------------------------------------------------------------------


class DataFormatError(ValueError):
    """A data file does not hold what its format promises.

    The message is one line, ``"PATH: reason"``, with the position when there is one:
    ``"PATH: line N: reason"`` for text files, ``"PATH: offset N: reason"`` for binary files
    (byte offset in the decompressed stream for ``.gz`` files).

    Attributes:
        path: the offending file. reason: what is wrong. line / offset: position or ``None``.
    """

    def __init__(
        self,
        path: PathLike,
        reason: str,
        *,
        line: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.reason = reason
        self.line = line
        self.offset = offset
        where = ""
        if line is not None:
            where = f"line {line}: "
        elif offset is not None:
            where = f"offset {offset}: "
        super().__init__(f"{self.path}: {where}{reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = functools.partial(DataFormatError, line=self.line, offset=self.offset)
        return (rebuild, (self.path, self.reason))


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image dataset with a fixed train/test split, held in memory.

    Attributes:
        name: short identifier (``"digits"``, ``"fashion_mnist"``, ``"cifar10"``, ...).
        train_images: ``uint8 [N, C, H, W]``.
        train_labels: ``int64 [N]``, values in ``[0, num_classes)``.
        test_images: ``uint8 [M, C, H, W]`` (same ``C, H, W`` as the training images).
        test_labels: ``int64 [M]``.
        classes: class names; label ``k`` is ``classes[k]``.

    Shapes, dtypes and label ranges are checked on construction (``ValueError``).
    """

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError(f"ImageDataset {self.name!r}: classes must not be empty")
        object.__setattr__(self, "classes", tuple(self.classes))
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            _check_split(self.name, split, images, labels, len(self.classes))
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(
                f"ImageDataset {self.name!r}: train images are "
                f"{tuple(self.train_images.shape[1:])} but test images are "
                f"{tuple(self.test_images.shape[1:])} (C, H, W)"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    @property
    def channels(self) -> int:
        """Image channels ``C`` (1 for grayscale, 3 for RGB)."""
        return int(self.train_images.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """Image size ``(H, W)``."""
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    def subset(
        self, train_limit: int | None = None, test_limit: int | None = None, seed: int = 0
    ) -> ImageDataset:
        """A smaller copy with at most ``train_limit`` / ``test_limit`` images per split.

        The subset is **stratified**: each class keeps (up to rounding) its share of the split,
        the images of a class are drawn at random with ``seed``, and the chosen images keep
        their original order. ``None`` (or a limit at least the split size) keeps a split whole.
        The same ``seed`` always gives the same subset, and a smaller limit gives a subset of a
        larger one.
        """
        train = _stratified_take(self.train_labels, train_limit, seed, "train_limit")
        test = _stratified_take(self.test_labels, test_limit, seed, "test_limit")
        return ImageDataset(
            name=self.name,
            train_images=self.train_images[train],
            train_labels=self.train_labels[train],
            test_images=self.test_images[test],
            test_labels=self.test_labels[test],
            classes=self.classes,
        )

    def __repr__(self) -> str:
        c, (h, w) = self.channels, self.size
        return (
            f"ImageDataset({self.name!r}, train={len(self.train_labels)}, "
            f"test={len(self.test_labels)}, image={c}x{h}x{w}, classes={self.num_classes})"
        )


def _check_split(name: str, split: str, images: Tensor, labels: Tensor, num_classes: int) -> None:
    """Validate one split's tensors (``ValueError`` naming the dataset and the split)."""
    where = f"ImageDataset {name!r}: {split}"
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"{where}_images must be a uint8 tensor [N, C, H, W], got {_desc(images)}")
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        raise ValueError(f"{where}_labels must be an int64 tensor [N], got {_desc(labels)}")
    if len(images) != len(labels):
        raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{where}_labels must lie in [0, {num_classes}), "
            f"found {int(labels.min())}..{int(labels.max())}"
        )


def _desc(x: object) -> str:
    if isinstance(x, Tensor):
        return f"{x.dtype} {list(x.shape)}"
    return type(x).__name__


def _stratified_take(labels: Tensor, limit: int | None, seed: int, what: str) -> Tensor:
    """Indices (sorted) of a stratified sample of ``limit`` entries of ``labels``.

    Each index gets the key ``(rank within its class + 0.5) / class size`` after a seeded
    shuffle; taking the ``limit`` smallest keys gives every class its proportional share.
    """
    n = len(labels)
    if limit is not None and limit < 0:
        raise ValueError(f"{what} must be >= 0 or None, got {limit}")
    if limit is None or limit >= n:
        return torch.arange(n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    y = labels.numpy()[order]
    key = np.empty(n, dtype=np.float64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        key[members] = (np.arange(len(members)) + 0.5) / len(members)
    chosen = order[np.argsort(key, kind="stable")[:limit]]
    return torch.from_numpy(np.sort(chosen))


def _stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices (each sorted) of a stratified split, via scikit-learn."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    try:
        train, test = train_test_split(
            np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
        )
    except ValueError as err:
        raise ValueError(
            f"{what}: cannot split {len(labels)} images of {len(np.unique(labels))} classes "
            f"with test_fraction={test_fraction}: {err}"
        ) from err
    return np.sort(train), np.sort(test)


def _as_dataset(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    classes: Sequence[str],
) -> ImageDataset:
    """Build an :class:`ImageDataset` from full arrays and split indices."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    tr, te = torch.from_numpy(train), torch.from_numpy(test)
    return ImageDataset(name, x[tr], y[tr], x[te], y[te], tuple(classes))


# --------------------------------------------------------------------------------------------
# Where data lives
# --------------------------------------------------------------------------------------------


def data_root() -> Path | None:
    """The folder holding the offline datasets, or ``None`` if there is none.

    ``$CONTRASTKIT_DATA`` when set (and non-empty); it must then be an existing folder
    (``FileNotFoundError`` otherwise). Else ``Path.cwd() / "../shared/data"`` (the shared data
    beside the repository, when running from the repository root) if it exists, else ``None``.
    """
    env = os.environ.get("CONTRASTKIT_DATA")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"CONTRASTKIT_DATA is set to {env!r} but no such directory exists"
            )
        return path
    shared = (Path.cwd() / ".." / "shared" / "data").resolve()
    return shared if shared.is_dir() else None


def _not_found(what: str, searched: Sequence[Path]) -> FileNotFoundError:
    places = ", ".join(str(p) for p in searched) or "(no place to search)"
    return FileNotFoundError(f"{what} not found; searched: {places}")


# --------------------------------------------------------------------------------------------
# Digits (scikit-learn, embedded)
# --------------------------------------------------------------------------------------------


def load_digits(*, test_fraction: float = 0.25, seed: int = 0) -> ImageDataset:
    """The UCI optical digits shipped inside scikit-learn (no download): 1,797 images.

    Images are ``uint8 [N, 1, 8, 8]``: the original values 0..16 mapped to
    ``value * 255 // 16`` (so 0..255). Ten classes ``"0"``..``"9"``. The split is
    ``sklearn.model_selection.train_test_split(stratify=labels, random_state=seed)``.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    values = np.asarray(bunch.images).round().astype(np.int64)  # [N, 8, 8], 0..16
    images = (values * 255 // 16).astype(np.uint8)[:, None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = _stratified_split(labels, test_fraction, seed, "digits")
    classes = tuple(str(int(c)) for c in bunch.target_names)
    return _as_dataset("digits", images, labels, train, test, classes)


# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------

_IDX_UBYTE = 0x08
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped when the file starts with the gzip magic."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataFormatError(path, f"corrupt gzip stream: {err}") from err


def read_idx(path: PathLike, *, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzipped or plain) into a ``uint8`` array.

    Format: magic ``0x000008NN`` (two zero bytes, type ``0x08`` = unsigned byte, ``NN`` =
    number of dimensions), then one big-endian ``uint32`` size per dimension, then exactly
    ``prod(sizes)`` data bytes. ``ndim`` is what the caller expects: 3 for images
    (magic ``0x00000803``, ``[N, H, W]``), 1 for labels (magic ``0x00000801``, ``[N]``).

    Raises:
        DataFormatError: bad magic, truncated header or data, trailing bytes, corrupt gzip.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    expected_magic = (_IDX_UBYTE << 8) | ndim
    if len(data) < 4:
        raise DataFormatError(path, f"file has {len(data)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise DataFormatError(
            path,
            f"bad IDX magic 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})",
            offset=0,
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(
            path, f"truncated IDX header: {ndim} dimension sizes need {header} bytes", offset=4
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    found = len(data) - header
    if found != expected:
        kind = "truncated data" if found < expected else "trailing bytes"
        raise DataFormatError(
            path,
            f"{kind}: dimensions {'x'.join(map(str, dims))} need {expected} data bytes, "
            f"found {found}",
            offset=header + min(found, expected),
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _read_idx_pair(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 1, H, W]`` and labels ``int64 [N]`` from two IDX files, checked."""
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if len(labels) != len(images):
        raise DataFormatError(
            labels_path,
            f"holds {len(labels)} labels but {images_path.name} holds {len(images)} images",
            offset=4,
        )
    bad = np.flatnonzero(labels >= num_classes)
    if len(bad):
        raise DataFormatError(
            labels_path,
            f"label {int(labels[bad[0]])} out of range 0..{num_classes - 1}",
            offset=8 + int(bad[0]),
        )
    return images[:, None], labels.astype(np.int64)


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _fashion_candidates(root: PathLike | None) -> list[Path]:
    if root is not None:
        root = Path(root)
        return [root, root / "fashion_mnist", root / "fashion-mnist"]
    candidates = []
    shared = data_root()
    if shared is not None:
        candidates.append(shared / "fashion_mnist")
    candidates.append(SYSTEM_FASHION_MNIST)
    return candidates


def load_fashion_mnist(root: PathLike | None = None) -> ImageDataset:
    """Fashion-MNIST (60,000 train / 10,000 test, 10 classes) from its IDX files.

    Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each gzipped (``.gz``) or not. Images are
    ``uint8 [N, 1, 28, 28]``; the official train/test split is kept.

    Args:
        root: folder holding the four files (or its parent, with a ``fashion_mnist`` or
            ``fashion-mnist`` subfolder). ``None`` searches ``data_root() / "fashion_mnist"``
            and then ``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``).

    Raises:
        FileNotFoundError: no searched folder holds all four files (lists every folder).
        DataFormatError: a file is malformed (bad magic, truncated, count mismatch, bad label).
    """
    candidates = _fashion_candidates(root)
    for folder in candidates:
        found = {key: _find_idx_file(folder, stem) for key, stem in _FASHION_FILES.items()}
        if all(found.values()):
            paths: dict[str, Path] = {k: v for k, v in found.items() if v is not None}
            break
    else:
        names = ", ".join(f"{stem}[.gz]" for stem in _FASHION_FILES.values())
        raise _not_found(f"Fashion-MNIST files ({names})", candidates)
    n_cls = len(FASHION_MNIST_CLASSES)
    x_train, y_train = _read_idx_pair(paths["train_images"], paths["train_labels"], n_cls)
    x_test, y_test = _read_idx_pair(paths["test_images"], paths["test_labels"], n_cls)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataFormatError(
            paths["test_images"],
            f"images are {x_test.shape[2]}x{x_test.shape[3]} but training images are "
            f"{x_train.shape[2]}x{x_train.shape[3]}",
            offset=8,
        )
    return ImageDataset(
        name="fashion_mnist",
        train_images=torch.from_numpy(x_train),
        train_labels=torch.from_numpy(y_train),
        test_images=torch.from_numpy(x_test),
        test_labels=torch.from_numpy(y_test),
        classes=FASHION_MNIST_CLASSES,
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# --------------------------------------------------------------------------------------------

_CIFAR_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class _CifarLayout:
    """File names of one CIFAR variant in one format."""

    folder: str  # the folder the official archive extracts to
    train: tuple[str, ...]
    test: str
    meta: str
    binary: bool


def _cifar_layouts(variant: int) -> tuple[_CifarLayout, _CifarLayout]:
    """(binary, python) layouts; binary first because it needs no unpickling."""
    if variant == 10:
        batches = tuple(f"data_batch_{i}" for i in range(1, 6))
        return (
            _CifarLayout(
                "cifar-10-batches-bin",
                tuple(b + ".bin" for b in batches),
                "test_batch.bin",
                "batches.meta.txt",
                binary=True,
            ),
            _CifarLayout("cifar-10-batches-py", batches, "test_batch", "batches.meta", False),
        )
    return (
        _CifarLayout(
            "cifar-100-binary", ("train.bin",), "test.bin", "fine_label_names.txt", binary=True
        ),
        _CifarLayout("cifar-100-python", ("train",), "test", "meta", binary=False),
    )


def _find_cifar(root: Path, variant: int) -> tuple[Path, _CifarLayout]:
    """The folder and layout of the first complete CIFAR copy under ``root``."""
    searched = []
    for layout in _cifar_layouts(variant):
        for folder in (root, root / layout.folder):
            searched.append(folder)
            needed = (*layout.train, layout.test)
            if all((folder / name).is_file() for name in needed):
                return folder, layout
    expected = "; ".join(
        f"{layout.folder}/{{{', '.join((*layout.train, layout.test))}}}"
        for layout in _cifar_layouts(variant)
    )
    raise _not_found(f"CIFAR-{variant} files ({expected})", searched)


def _read_cifar_binary(path: Path, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """One binary CIFAR file: records of label byte(s) + 3072 pixel bytes.

    CIFAR-10 records are ``<label><3072 pixels>``; CIFAR-100 records are
    ``<coarse label><fine label><3072 pixels>`` and the fine label is used. Pixels are the
    red, green and blue 32x32 planes in row-major order, i.e. already ``[3, 32, 32]``.
    """
    n_labels = 1 if variant == 10 else 2
    record = n_labels + _CIFAR_PIXELS
    data = path.read_bytes()
    if len(data) == 0 or len(data) % record:
        full = len(data) // record
        raise DataFormatError(
            path,
            f"truncated record: file size {len(data)} is not a positive multiple of the "
            f"{record}-byte CIFAR-{variant} record",
            offset=full * record,
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, n_labels - 1].astype(np.int64)
    bad = np.flatnonzero(labels >= variant)
    if len(bad):
        raise DataFormatError(
            path,
            f"label {int(labels[bad[0]])} out of range 0..{variant - 1}",
            offset=int(bad[0]) * record + n_labels - 1,
        )
    images = rows[:, n_labels:].reshape(-1, 3, 32, 32).copy()
    return images, labels


# numpy moved ``numpy.core`` to ``numpy._core`` in 2.0; pickles name either.
def _numpy_multiarray() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")


def _allowed_pickle_globals() -> dict[tuple[str, str], Any]:
    multiarray = _numpy_multiarray()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array / dtype / scalar reconstruction.

    Dicts, lists, tuples, strings, bytes and numbers are built by pickle opcodes and need no
    global; any other global (``os.system``, ``builtins.eval``, ...) is refused before it is
    looked up, so nothing in the file can run code.
    """

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = _allowed_pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataFormatError(
                self._path,
                f"refused pickle global {module}.{name} "
                "(only numpy array reconstruction is allowed)",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataFormatError(self._path, "refused pickle persistent id")


def _restricted_unpickle(path: Path) -> Any:
    """Load a pickle file with :class:`_NumpyOnlyUnpickler` (``encoding="bytes"``)."""
    with path.open("rb") as f:
        try:
            return _NumpyOnlyUnpickler(f, path).load()
        except DataFormatError:
            raise
        except Exception as err:  # any failure inside a malformed pickle
            raise DataFormatError(path, f"cannot unpickle: {type(err).__name__}: {err}") from err


def _dict_get(obj: dict[Any, Any], key: str) -> Any:
    """``obj[key]`` for a str or bytes key (py2 pickles read with ``encoding="bytes"``)."""
    if key.encode() in obj:
        return obj[key.encode()]
    return obj.get(key)


def _read_cifar_python(path: Path, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """One python CIFAR batch: a dict with ``data`` uint8 [n, 3072] and the labels list.

    CIFAR-10 uses the key ``labels``, CIFAR-100 ``fine_labels``.
    """
    batch = _restricted_unpickle(path)
    if not isinstance(batch, dict):
        raise DataFormatError(path, f"expected a pickled dict, found {type(batch).__name__}")
    label_key = "labels" if variant == 10 else "fine_labels"
    data, labels = _dict_get(batch, "data"), _dict_get(batch, label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataFormatError(path, f"'data' must be a uint8 array [n, 3072], got {_npdesc(data)}")
    if data.shape[1] != _CIFAR_PIXELS:
        raise DataFormatError(path, f"'data' rows have {data.shape[1]} values, expected 3072")
    if labels is None:
        raise DataFormatError(path, f"missing key {label_key!r}")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise DataFormatError(path, f"{label_key!r} is not a list of integers") from err
    if len(y) != len(data):
        raise DataFormatError(path, f"{len(data)} images but {len(y)} {label_key!r}")
    bad = np.flatnonzero((y < 0) | (y >= variant))
    if len(bad):
        raise DataFormatError(
            path, f"{label_key}[{int(bad[0])}] = {int(y[bad[0]])} out of range 0..{variant - 1}"
        )
    return np.require(data, requirements=["C", "W"]).reshape(-1, 3, 32, 32), y


def _npdesc(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array {list(x.shape)}"
    return type(x).__name__


def _decode_names(path: Path, names: Any, count: int) -> tuple[str, ...]:
    if not isinstance(names, list | tuple) or len(names) != count:
        raise DataFormatError(path, f"expected a list of {count} class names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _cifar_classes(folder: Path, layout: _CifarLayout, variant: int) -> tuple[str, ...]:
    """Class names from the meta file when present, else the official names."""
    path = folder / layout.meta
    if not path.is_file():
        return CIFAR10_CLASSES if variant == 10 else CIFAR100_CLASSES
    if layout.binary:
        lines = path.read_text(encoding="utf-8").splitlines()
        names = [line.strip() for line in lines if line.strip()]
        if len(names) != variant:
            raise DataFormatError(
                path, f"{len(names)} class names (non-empty lines), expected {variant}"
            )
        return tuple(names)
    meta = _restricted_unpickle(path)
    if not isinstance(meta, dict):
        raise DataFormatError(path, f"expected a pickled dict, found {type(meta).__name__}")
    key = "label_names" if variant == 10 else "fine_label_names"
    return _decode_names(path, _dict_get(meta, key), variant)


def load_cifar(root: PathLike, *, variant: int = 10) -> ImageDataset:
    """CIFAR-10 or CIFAR-100 (50,000 train / 10,000 test, 32x32 RGB) from the official files.

    Both official versions are read (binary preferred when both are present):

    - binary: ``cifar-10-batches-bin/data_batch_{1..5}.bin`` + ``test_batch.bin``, records of
      1 label byte + 3072 pixel bytes; ``cifar-100-binary/train.bin`` + ``test.bin``, records
      of 2 label bytes (coarse, fine) + 3072 pixel bytes. Names from ``batches.meta.txt`` /
      ``fine_label_names.txt``.
    - python: ``cifar-10-batches-py/data_batch_{1..5}`` + ``test_batch``;
      ``cifar-100-python/train`` + ``test``: pickled dicts with ``b"data"`` (uint8
      ``[n, 3072]``) and ``b"labels"`` / ``b"fine_labels"``. Names from ``batches.meta`` /
      ``meta``. Read with a restricted unpickler (numpy arrays and plain containers only).

    Labels are CIFAR-100's *fine* labels. Images are ``uint8 [N, 3, 32, 32]``.

    Args:
        root: the extracted folder (e.g. ``cifar-10-batches-py``) or its parent.
        variant: 10 or 100.

    Raises:
        FileNotFoundError: no complete copy found (lists every folder searched).
        DataFormatError: a malformed file, or a pickle asking for anything but numpy arrays.
    """
    if variant not in (10, 100):
        raise ValueError(f"variant must be 10 or 100, got {variant!r}")
    folder, layout = _find_cifar(Path(root), variant)
    read = _read_cifar_binary if layout.binary else _read_cifar_python
    parts = [read(folder / name, variant) for name in layout.train]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = read(folder / layout.test, variant)
    return ImageDataset(
        name=f"cifar{variant}",
        train_images=torch.from_numpy(x_train),
        train_labels=torch.from_numpy(y_train),
        test_images=torch.from_numpy(x_test),
        test_labels=torch.from_numpy(y_test),
        classes=_cifar_classes(folder, layout, variant),
    )


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------


def _scan_image_folder(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """Class names (sorted subfolders), image files and their labels.

    Hidden entries are skipped; files with other suffixes are ignored.
    """
    if not root.is_dir():
        raise _not_found("image folder", [root])
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{root}: no class subfolders (expected root/<class>/*.png|jpg)")
    files: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        members = sorted(
            p
            for p in (root / name).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not members:
            raise FileNotFoundError(
                f"{root / name}: class folder holds no {'/'.join(IMAGE_SUFFIXES)} images"
            )
        files.extend(members)
        labels.extend([k] * len(members))
    return classes, files, np.asarray(labels, dtype=np.int64)


def _open_image(path: Path, action: Callable[[Any], Any]) -> Any:
    """Run ``action`` on the opened PIL image; any decoding failure -> DataFormatError."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return action(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataFormatError(path, f"cannot read image: {err}") from err


def _target_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``(width, height)`` for PIL from ``size`` (an int for square, or ``(H, W)``)."""
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else size
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(w), int(h)


def load_image_folder(
    root: PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ImageDataset:
    """Images in ``root/<class_name>/*.png|jpg|jpeg`` (one subfolder per class).

    Classes are the sorted subfolder names. Images are read with Pillow and converted to
    ``"L"`` (``C = 1``) when every image is grayscale, else to ``"RGB"`` (``C = 3``); the
    result is ``uint8 [N, C, H, W]``. With ``size`` (an int for ``size x size`` or ``(H, W)``)
    every image is resized (bilinear); without it all images must share one size. The split is
    stratified (scikit-learn ``train_test_split(stratify=labels, random_state=seed)``).

    Raises:
        FileNotFoundError: ``root`` missing, no class subfolders, or a class with no images.
        DataFormatError: an unreadable image, or (without ``size``) an image whose size differs
            from the first image's.
    """
    root = Path(root)
    target = _target_size(size)
    classes, files, labels = _scan_image_folder(root)
    headers = [_open_image(p, lambda img: (img.mode, img.size)) for p in files]
    mode = "L" if all(m in _GRAY_MODES for m, _ in headers) else "RGB"
    if target is None:
        first_size = headers[0][1]
        for path, (_, wh) in zip(files, headers, strict=True):
            if wh != first_size:
                raise DataFormatError(
                    path,
                    f"image is {wh[0]}x{wh[1]} (WxH) but {files[0].name} is "
                    f"{first_size[0]}x{first_size[1]}; pass size= to resize",
                )
        target = first_size

    def decode(img: Any) -> np.ndarray:
        from PIL import Image

        img = img.convert(mode)
        if img.size != target:
            img = img.resize(target, Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)

    arrays = [_open_image(p, decode) for p in files]
    images = np.stack(arrays)
    images = images[:, None] if mode == "L" else images.transpose(0, 3, 1, 2)
    train, test = _stratified_split(labels, test_fraction, seed, str(root))
    return _as_dataset(root.name or "image_folder", images, labels, train, test, classes)


# --------------------------------------------------------------------------------------------
# Dispatch by name
# --------------------------------------------------------------------------------------------

DATASET_NAMES: tuple[str, ...] = ("cifar10", "cifar100", "digits", "fashion_mnist", "image_folder")


def _normalise_name(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def load_image_dataset(name: str, root: PathLike | None = None, **kwargs: Any) -> ImageDataset:
    """Load an image dataset by name: one of :data:`DATASET_NAMES`.

    Names are matched ignoring case, ``-`` and ``_`` (``"CIFAR-10"`` is ``"cifar10"``).
    ``root`` is passed on; it is required for ``cifar10``, ``cifar100`` and ``image_folder``,
    optional for ``fashion_mnist`` and not accepted for ``digits``. ``kwargs`` go to the
    loader (``load_digits``, ``load_fashion_mnist``, ``load_cifar``, ``load_image_folder``).

    Raises:
        ValueError: unknown name (lists the valid ones), or a missing / unexpected ``root``.
    """
    key = {_normalise_name(n): n for n in DATASET_NAMES}.get(_normalise_name(name))
    if key is None:
        raise ValueError(f"unknown image dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    if key == "digits":
        if root is not None:
            raise ValueError("the digits dataset is embedded in scikit-learn and takes no root")
        return load_digits(**kwargs)
    if key == "fashion_mnist":
        return load_fashion_mnist(root, **kwargs)
    if root is None:
        raise ValueError(f"load_image_dataset({key!r}) needs root= (the dataset folder)")
    if key == "image_folder":
        return load_image_folder(root, **kwargs)
    return load_cifar(root, variant=10 if key == "cifar10" else 100, **kwargs)
