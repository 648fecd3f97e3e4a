"""Graph datasets: user-item interaction graphs (LightGCN format) and Planetoid citation graphs.

Interaction graphs (graph collaborative filtering: LightGCN, SGL, SimGCL, LightGCL):

- :func:`read_lightgcn_interactions`: the LightGCN / NGCF text format (``train.txt``,
  ``test.txt``: one line per user, ``user item item ...``, user ids ``0..U-1`` in order,
  0-based item ids).
- :func:`load_lightgcn_dataset`: ``train.txt`` + ``test.txt`` of one folder →
  :class:`InteractionGraph`, which builds the edge list, the symmetrically normalised bipartite
  adjacency (optionally after edge dropout, for SGL) and the training mask to exclude when
  ranking (:func:`contrastkit.eval.ranking.recall_ndcg_at_k`).
- :func:`random_split_graph`: per-user item lists → a seeded random per-user train / test split
  (NGCF / LightGCN's 80 / 20 protocol); :func:`load_movielens_graph` applies it to MovieLens
  100K's ``u.data`` (every rating an interaction).

Node-level graphs (node classification / graph contrastive learning):

- :func:`load_planetoid`: Cora / CiteSeer / PubMed in Kipf & Welling's ``ind.<name>.*`` files
  (the public Planetoid split) → :class:`NodeDataset`. Those files are Python 2 pickles; they
  are read with a restricted unpickler that only rebuilds numpy arrays, scipy CSR matrices,
  ``defaultdict(list)`` and lists: any other global is refused with
  :class:`pickle.UnpicklingError` before it is looked up, so a file cannot run code.

Malformed files raise :class:`~contrastkit.data.images.DataFormatError` (``"PATH: line N:
reason"`` or ``"PATH: reason"``); missing files raise :class:`FileNotFoundError`.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.images import DataFormatError, _allowed_pickle_globals
from contrastkit.data.sequences import _content_lines, _read_text

__all__ = [
    "InteractionGraph",
    "NodeDataset",
    "load_lightgcn_dataset",
    "load_movielens_graph",
    "load_planetoid",
    "random_split_graph",
    "read_lightgcn_interactions",
]

PathLike = str | os.PathLike[str]

_LINE_RE = re.compile(r"[0-9]+(?:[ \t]+[0-9]+)*[ \t]*")
_TOKEN_RE = re.compile(r"[0-9]+")
_INT64_MAX = np.iinfo(np.int64).max


# --------------------------------------------------------------------------------------------
# LightGCN interaction files
# --------------------------------------------------------------------------------------------


def _bad_token(tokens: list[str], what: str) -> str:
    for k, token in enumerate(tokens):
        if not (_TOKEN_RE.fullmatch(token) and int(token) <= _INT64_MAX):
            name = what if k == 0 else "item id"
            return f"{name} {token!r} is not a non-negative decimal integer below 2**63"
    return "not a line of non-negative decimal integers"  # pragma: no cover - defensive


def read_lightgcn_interactions(path: PathLike) -> list[np.ndarray]:
    """Read a LightGCN / NGCF interaction file (``train.txt`` or ``test.txt``).

    Format (ASCII/UTF-8): one line per user, ``user item item ...`` separated by spaces or
    tabs. The ``k``-th line holds user ``k`` (ids ``0..U-1`` in order, no gaps); item ids are
    0-based non-negative integers. A line with only the user id is a user without items.
    Blank lines are allowed only at the end of the file.

    Returns:
        ``U`` int64 arrays, element ``u`` = the items of user ``u`` in file order.

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: ``"PATH: line N: reason"`` for a token that is not a non-negative
            decimal integer, a user id out of order, an item repeated on a line, a blank line
            in the middle; ``"PATH: reason"`` for an empty file.
    """
    path = Path(path)
    text = _read_text(path, "utf-8")
    out: list[np.ndarray] = []
    for number, line in _content_lines(path, text):
        stripped = line.strip()
        if not _LINE_RE.fullmatch(stripped):
            raise DataFormatError(path, _bad_token(stripped.split(), "user id"), line=number)
        values = [int(t) for t in stripped.split()]
        if max(values) > _INT64_MAX:
            raise DataFormatError(path, _bad_token(stripped.split(), "user id"), line=number)
        user, items = values[0], values[1:]
        if user != len(out):
            raise DataFormatError(
                path,
                f"user id {user} out of order: expected {len(out)} (ids are 0..U-1, one line each)",
                line=number,
            )
        arr = np.array(items, dtype=np.int64)
        if len(arr) > 1:
            uniq, counts = np.unique(arr, return_counts=True)
            if len(uniq) != len(arr):
                raise DataFormatError(
                    path, f"item {int(uniq[counts > 1][0])} repeated for user {user}", line=number
                )
        out.append(arr)
    if not out:
        raise DataFormatError(path, "empty file: no user line")
    return out


def _as_item_arrays(lists: Sequence[Any], what: str) -> list[np.ndarray]:
    out = []
    for u, items in enumerate(lists):
        arr = np.asarray(items.cpu() if isinstance(items, Tensor) else items)
        if arr.size == 0:
            arr = np.zeros(0, dtype=np.int64)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(
                f"InteractionGraph: {what}[{u}] must be a 1-D integer array; "
                f"got {arr.dtype} {list(arr.shape)}"
            )
        out.append(arr.astype(np.int64, copy=False))
    return out


@dataclass(eq=False)
class InteractionGraph:
    """A user-item interaction graph with a train / test split (graph collaborative filtering).

    Attributes:
        num_users: ``U``. num_items: ``I``.
        train: ``U`` int64 arrays, the training items of each user (the graph's edges).
        test: ``U`` int64 arrays, the held-out items of each user (may be empty).

    Checked on construction (``ValueError``): ``len(train) == len(test) == num_users``, every
    item id in ``[0, num_items)``, no item repeated within a user's training items.
    """

    num_users: int
    num_items: int
    train: list[np.ndarray]
    test: list[np.ndarray]

    def __post_init__(self) -> None:
        for name in ("num_users", "num_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"InteractionGraph: {name} must be an int >= 0; got {value!r}")
            setattr(self, name, int(value))
        self.train = _as_item_arrays(self.train, "train")
        self.test = _as_item_arrays(self.test, "test")
        for name in ("train", "test"):
            lists = getattr(self, name)
            if len(lists) != self.num_users:
                raise ValueError(
                    f"InteractionGraph: {name} has {len(lists)} users; num_users={self.num_users}"
                )
            for u, items in enumerate(lists):
                if len(items) and (items.min() < 0 or items.max() >= self.num_items):
                    raise ValueError(
                        f"InteractionGraph: {name}[{u}] has item ids "
                        f"{int(items.min())}..{int(items.max())} outside [0, {self.num_items})"
                    )
        for u, items in enumerate(self.train):
            if len(np.unique(items)) != len(items):
                raise ValueError(f"InteractionGraph: train[{u}] repeats an item")

    @property
    def num_train(self) -> int:
        """Number of training interactions (edges)."""
        return int(sum(len(t) for t in self.train))

    @property
    def num_test(self) -> int:
        """Number of test interactions."""
        return int(sum(len(t) for t in self.test))

    def edge_index(self) -> tuple[Tensor, Tensor]:
        """``(users, items)``: int64 ``[E]`` each, the training edges, user by user (file order).

        ``edge_mask`` of :meth:`normalized_adjacency` is aligned with this order.
        """
        lengths = np.fromiter((len(t) for t in self.train), dtype=np.int64, count=self.num_users)
        users = np.repeat(np.arange(self.num_users, dtype=np.int64), lengths)
        items = np.concatenate(self.train) if self.train else np.zeros(0, dtype=np.int64)
        return torch.from_numpy(users), torch.from_numpy(items.astype(np.int64, copy=False))

    def normalized_adjacency(
        self, edge_mask: Tensor | np.ndarray | None = None, *, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """``D^-1/2 A D^-1/2`` of the bipartite graph ``A = [[0, R], [Rᵀ, 0]]``, sparse COO.

        Nodes ``0..U-1`` are the users and ``U..U+I-1`` the items (user rows first, as in
        LightGCN); ``R`` is the 0/1 ``[U, I]`` training matrix and ``D`` the node degrees of
        ``A``. Nodes of degree 0 get all-zero rows and columns (no NaN, no inf). The result is
        coalesced, of size ``(U + I, U + I)``, symmetric, and holds ``2 E'`` entries.

        Args:
            edge_mask: optional bool ``[E]`` aligned with :meth:`edge_index`: only the edges
                where it is True are kept, and the degrees are those of the kept graph (SGL's
                edge dropout re-normalises the sub-graph).
            dtype: the values' dtype (the arithmetic is done in float64).
        """
        users, items = self.edge_index()
        if edge_mask is not None:
            mask = torch.as_tensor(edge_mask)
            if mask.dtype != torch.bool or tuple(mask.shape) != (len(users),):
                raise ValueError(
                    f"normalized_adjacency: edge_mask must be a bool [E] = [{len(users)}] "
                    f"array; got {mask.dtype} {list(mask.shape)}"
                )
            mask = mask.cpu()
            users, items = users[mask], items[mask]
        n = self.num_users + self.num_items
        rows = torch.cat([users, items + self.num_users])
        cols = torch.cat([items + self.num_users, users])
        degree = torch.bincount(rows, minlength=n).double()
        inv_sqrt = torch.zeros(n, dtype=torch.float64)
        nonzero = degree > 0
        inv_sqrt[nonzero] = degree[nonzero].rsqrt()
        values = (inv_sqrt[rows] * inv_sqrt[cols]).to(dtype)
        indices = torch.stack([rows, cols])  # valid by construction: skip the invariant checks
        return torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=False).coalesce()

    def train_mask(self) -> Tensor:
        """Sparse COO bool ``[U, I]``: True at the training items (to exclude when ranking)."""
        users, items = self.edge_index()
        values = torch.ones(len(users), dtype=torch.bool)
        size = (self.num_users, self.num_items)
        indices = torch.stack([users, items])
        return torch.sparse_coo_tensor(indices, values, size, check_invariants=False).coalesce()

    def __repr__(self) -> str:
        return (
            f"InteractionGraph(users={self.num_users}, items={self.num_items}, "
            f"train={self.num_train}, test={self.num_test})"
        )


def load_lightgcn_dataset(folder: PathLike, *, num_items: int | None = None) -> InteractionGraph:
    """Read ``folder/train.txt`` and ``folder/test.txt`` (LightGCN format) into a graph.

    ``num_users`` = the larger number of user lines of the two files (a user missing from the
    shorter file has no items there). ``num_items`` = the largest item id in either file + 1,
    unless given, in which case every item id must be below it.

    Raises:
        FileNotFoundError: a file is missing. DataFormatError: as
        :func:`read_lightgcn_interactions`, plus an item id ``>= num_items`` (with its line).
    """
    folder = Path(folder)
    train_path, test_path = folder / "train.txt", folder / "test.txt"
    train = read_lightgcn_interactions(train_path)
    test = read_lightgcn_interactions(test_path)
    largest = max(int(a.max()) for a in (*train, *test, np.zeros(1, dtype=np.int64)) if len(a))
    if num_items is None:
        num_items = largest + 1
    elif isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
        raise ValueError(f"load_lightgcn_dataset: num_items must be an int >= 1; got {num_items}")
    for path, lists in ((train_path, train), (test_path, test)):
        for user, items in enumerate(lists):
            if len(items) and int(items.max()) >= num_items:
                raise DataFormatError(
                    path,
                    f"item id {int(items.max())} >= num_items = {num_items}",
                    line=user + 1,  # user k is on line k + 1 (blank lines only at the end)
                )
    num_users = max(len(train), len(test))
    empty = np.zeros(0, dtype=np.int64)
    train += [empty] * (num_users - len(train))
    test += [empty] * (num_users - len(test))
    return InteractionGraph(num_users=num_users, num_items=num_items, train=train, test=test)


def random_split_graph(
    items_per_user: Sequence[Any], num_items: int, *, test_fraction: float = 0.2, seed: int = 0
) -> InteractionGraph:
    """Split every user's items at random into train and test (NGCF / LightGCN's protocol).

    User ``u`` with ``n`` distinct items gets ``t = round(test_fraction · n)`` test items, but
    at most ``n - 1`` (every user with an item keeps a training item); the test items are a
    uniform draw without replacement from ``numpy.random.default_rng(seed)``, users visited in
    order, so the split depends only on the data and ``seed`` (for a given numpy version: numpy
    does not promise the same ``Generator.choice`` stream across versions). ``round`` rounds
    halves to even (``0.5 · 5`` gives 2). Repeated items of a user count
    once (first occurrence kept). Both parts keep the users' original item order.

    Args:
        items_per_user: ``U`` sequences of 0-based item ids.
        num_items: ``I``; every id must be in ``[0, I)``.
        test_fraction: in ``[0, 1)``.
        seed: the split's seed (independent of the training seed).
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(
            f"random_split_graph: test_fraction must be in [0, 1); got {test_fraction}"
        )
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for items in _as_item_arrays(items_per_user, "items_per_user"):
        _, first = np.unique(items, return_index=True)
        items = items[np.sort(first)]
        n = len(items)
        held = min(round(test_fraction * n), max(n - 1, 0))
        is_test = np.zeros(n, dtype=bool)
        is_test[rng.choice(n, size=held, replace=False)] = True
        train.append(items[~is_test])
        test.append(items[is_test])
    return InteractionGraph(num_users=len(train), num_items=num_items, train=train, test=test)


def load_movielens_graph(
    directory: PathLike, *, test_fraction: float = 0.2, seed: int = 0
) -> InteractionGraph:
    """MovieLens 100K (``directory/u.data``) as an implicit-feedback interaction graph.

    Every rating is an interaction (the rating value is ignored); users are ordered by id and
    items re-indexed to ``0..I-1`` (ml-100k: 943 users, 1,682 items, 100,000 edges). The split
    is :func:`random_split_graph` (default 80 / 20 per user, split seed 0).

    Raises:
        FileNotFoundError / DataFormatError: as
        :func:`contrastkit.data.sequences.read_movielens_100k`.
    """
    from contrastkit.data.sequences import read_movielens_100k

    data = read_movielens_100k(directory)
    lists = [np.asarray(seq, dtype=np.int64) - 1 for seq in data.sequences]  # 1-based -> 0-based
    return random_split_graph(lists, data.num_items, test_fraction=test_fraction, seed=seed)


# --------------------------------------------------------------------------------------------
# Planetoid (Kipf & Welling's ind.<name>.* files)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NodeDataset:
    """A node-classification graph with fixed train / validation / test node masks.

    Attributes:
        name: e.g. ``"cora"``.
        features: float32 ``[N, F]`` (dense, as stored: Cora's are 0/1 bag-of-words, not
            row-normalised).
        labels: int64 ``[N]`` in ``[0, num_classes)``, or ``-1`` for a node without a label
            (CiteSeer's isolated test-range nodes; never in a mask).
        edge_index: int64 ``[2, E]``: undirected edges stored in both directions, no self
            loops, no duplicates, sorted by (source, target).
        train_mask / val_mask / test_mask: bool ``[N]``, pairwise disjoint.
        num_classes: number of classes (the width of the one-hot label arrays).
    """

    name: str
    features: Tensor
    labels: Tensor
    edge_index: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    num_classes: int

    @property
    def num_nodes(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def num_edges(self) -> int:
        """Directed edges (twice the number of undirected ones)."""
        return int(self.edge_index.shape[1])

    def __repr__(self) -> str:
        return (
            f"NodeDataset({self.name!r}, nodes={self.num_nodes}, features={self.num_features}, "
            f"classes={self.num_classes}, edges={self.num_edges // 2} undirected, "
            f"train={int(self.train_mask.sum())}, val={int(self.val_mask.sum())}, "
            f"test={int(self.test_mask.sum())})"
        )


def _planetoid_globals() -> dict[tuple[str, str], Any]:
    allowed = dict(_allowed_pickle_globals())  # numpy ndarray / dtype / _reconstruct / scalar
    allowed[("collections", "defaultdict")] = collections.defaultdict
    for module in ("__builtin__", "builtins"):  # Python 2 pickles name ``__builtin__``
        allowed[(module, "list")] = list
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return allowed
    for module in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse"):
        allowed[(module, "csr_matrix")] = sp.csr_matrix
    return allowed


class _RefusedPickleGlobalError(DataFormatError, pickle.UnpicklingError):
    """A pickle names a global outside the allow-list (both a DataFormatError and an
    UnpicklingError)."""


class _PlanetoidUnpickler(pickle.Unpickler):
    """Unpickler for the Planetoid files: numpy arrays, scipy CSR matrices, dicts, lists.

    Any other global (``os.system``, ``builtins.eval``, ...) is refused *before* it is looked
    up (:class:`pickle.UnpicklingError` naming it), so nothing in the file can run code.
    """

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")  # Python 2 pickles (numpy byte strings)
        self._path = path
        self._allowed = _planetoid_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _RefusedPickleGlobalError(
                self._path,
                f"refused pickle global {module}.{name} (only numpy arrays, scipy CSR "
                "matrices, defaultdict and list are allowed)",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedPickleGlobalError(self._path, "refused pickle persistent id")


def _unpickle_planetoid(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as f:
        try:
            return _PlanetoidUnpickler(f, path).load()
        except DataFormatError:
            raise
        except Exception as err:  # any failure inside a malformed pickle
            raise DataFormatError(path, f"cannot unpickle: {type(err).__name__}: {err}") from err


def _dense_features(path: Path, obj: Any) -> np.ndarray:
    """A feature matrix (scipy CSR or numpy 2-D array) as a float32 dense array."""
    if isinstance(obj, np.ndarray):
        if obj.ndim != 2 or obj.dtype.kind not in "biuf":
            raise DataFormatError(path, f"expected a 2-D numeric array, found {_npdesc(obj)}")
        return obj.astype(np.float32)
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover
        sp = None
    if sp is None or not isinstance(obj, sp.csr_matrix):
        raise DataFormatError(path, f"expected a CSR matrix or 2-D array, found {_npdesc(obj)}")
    try:
        # rebuild from the raw arrays (the unpickled object's other attributes are not trusted)
        mat = sp.csr_matrix((obj.data, obj.indices, obj.indptr), shape=obj.shape)
        mat.check_format(full_check=True)
        if mat.dtype.kind not in "biuf":
            raise ValueError(f"dtype {mat.dtype} is not numeric")
        return mat.toarray().astype(np.float32)
    except Exception as err:
        raise DataFormatError(path, f"invalid CSR matrix: {type(err).__name__}: {err}") from err


def _label_rows(path: Path, obj: Any, classes: int | None) -> np.ndarray:
    """One-hot label rows → int64 labels (``-1`` for an all-zero row)."""
    if not isinstance(obj, np.ndarray) or obj.ndim != 2 or obj.dtype.kind not in "biuf":
        raise DataFormatError(path, f"expected a one-hot 2-D array, found {_npdesc(obj)}")
    if classes is not None and obj.shape[1] != classes:
        raise DataFormatError(path, f"{obj.shape[1]} label columns, expected {classes}")
    ones = obj != 0
    if not np.isin(obj, (0, 1)).all() or (ones.sum(axis=1) > 1).any():
        raise DataFormatError(path, "labels are not one-hot rows of 0/1")
    return np.where(ones.any(axis=1), ones.argmax(axis=1), -1).astype(np.int64)


def _npdesc(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array {list(x.shape)}"
    return type(x).__name__


def _graph_edges(path: Path, graph: Any, num_nodes: int) -> np.ndarray:
    """``dict node -> neighbours`` → int64 ``[2, E]`` both directions, no loops, unique."""
    if not isinstance(graph, dict):
        raise DataFormatError(path, f"expected a dict node -> neighbour list, found {type(graph)}")
    src: list[int] = []
    dst: list[int] = []
    for node, neighbours in graph.items():  # .items(): never triggers a default factory
        if not isinstance(neighbours, list | tuple):
            raise DataFormatError(path, f"node {node!r}: neighbours are not a list")
        src.extend([node] * len(neighbours))
        dst.extend(neighbours)
    try:
        s = np.array(src, dtype=np.int64)
        d = np.array(dst, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DataFormatError(path, f"node ids are not integers ({err})") from err
    for ids in (s, d):
        if len(ids) and (ids.min() < 0 or ids.max() >= num_nodes):
            bad = ids[(ids < 0) | (ids >= num_nodes)][0]
            raise DataFormatError(path, f"node id {int(bad)} outside [0, {num_nodes})")
    keep = s != d
    s, d = s[keep], d[keep]
    keys = np.unique(np.concatenate([s * num_nodes + d, d * num_nodes + s]))
    return np.stack([keys // num_nodes, keys % num_nodes])


def load_planetoid(folder: PathLike, name: str = "cora", *, num_val: int = 500) -> NodeDataset:
    """Read a Planetoid citation graph with its public split (Kipf & Welling / Yang et al.).

    Files ``folder/ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}``: ``allx``/``ally`` are
    the features / one-hot labels of nodes ``0..len(allx)-1`` (``x``/``y``, the labelled
    training nodes, are their first rows), ``tx``/``ty`` those of the test nodes whose ids are
    the lines of ``test.index`` (in the order of the rows of ``tx``), ``graph`` maps each node
    to its neighbours. As in the reference loader, test rows go to the node ids of
    ``test.index`` (the ``features[test_idx_reorder] = features[sorted]`` reordering); ids in
    the test range that are not in ``test.index`` (CiteSeer's isolated nodes) get all-zero
    features and label ``-1``. ``N = max(len(allx), max(test.index) + 1)``.

    Split: train = nodes ``0..len(y)-1`` (Cora: 140, 20 per class), validation = the next
    ``num_val`` (500) nodes, test = the ``test.index`` nodes (1,000).

    Cora: 2,708 nodes, 1,433 features, 7 classes, 5,278 undirected edges (10,556 directed).

    Raises:
        FileNotFoundError: a file is missing. pickle.UnpicklingError: a pickle names a global
        that is not allowed (this error is also a DataFormatError). DataFormatError:
        inconsistent shapes, labels that are not one-hot, duplicate or out-of-range test
        indices, node ids out of range, ``x``/``y`` not the first rows of ``allx``/``ally``.
    """
    folder = Path(folder)
    prefix = f"ind.{name.lower()}"
    paths = {key: folder / f"{prefix}.{key}" for key in ("x", "y", "tx", "ty", "allx", "ally")}
    paths["graph"] = folder / f"{prefix}.graph"
    index_path = folder / f"{prefix}.test.index"
    missing = [str(p) for p in (*paths.values(), index_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Planetoid {name!r} files not found: {', '.join(missing)}")
    try:
        import scipy.sparse  # noqa: F401
    except ImportError as err:  # pragma: no cover - scipy comes with scikit-learn
        raise ImportError("load_planetoid needs scipy (pip install scipy)") from err

    raw = {key: _unpickle_planetoid(path) for key, path in paths.items()}
    x = _dense_features(paths["x"], raw["x"])
    tx = _dense_features(paths["tx"], raw["tx"])
    allx = _dense_features(paths["allx"], raw["allx"])
    ally = _label_rows(paths["ally"], raw["ally"], None)
    classes = int(raw["ally"].shape[1])
    y = _label_rows(paths["y"], raw["y"], classes)
    ty = _label_rows(paths["ty"], raw["ty"], classes)
    num_features = allx.shape[1]
    for key, arr in (("x", x), ("tx", tx)):
        if arr.shape[1] != num_features:
            raise DataFormatError(
                paths[key], f"{arr.shape[1]} feature columns; allx has {num_features}"
            )
    for (fk, f), (lk, lab) in ((("x", x), ("y", y)), (("tx", tx), ("ty", ty))):
        if len(f) != len(lab):
            raise DataFormatError(paths[lk], f"{len(lab)} label rows but {fk} has {len(f)} rows")
    if len(allx) != len(ally):
        raise DataFormatError(paths["ally"], f"{len(ally)} rows but allx has {len(allx)}")
    if len(x) > len(allx) or not (
        np.array_equal(x, allx[: len(x)]) and (y == ally[: len(y)]).all()
    ):
        raise DataFormatError(paths["x"], "x / y are not the first rows of allx / ally")

    index_text = _read_text(index_path, "ascii")
    test_index: list[int] = []
    for number, line in _content_lines(index_path, index_text):
        token = line.strip()
        if not _TOKEN_RE.fullmatch(token):
            raise DataFormatError(index_path, f"{token!r} is not a node index", line=number)
        test_index.append(int(token))
    test_idx = np.array(test_index, dtype=np.int64)
    if len(test_idx) != len(tx):
        raise DataFormatError(index_path, f"{len(test_idx)} test indices but tx has {len(tx)} rows")
    if len(np.unique(test_idx)) != len(test_idx):
        raise DataFormatError(index_path, "repeated test index")
    if len(test_idx) and test_idx.min() < len(allx):
        raise DataFormatError(
            index_path,
            f"test index {int(test_idx.min())} < len(allx) = {len(allx)} (would overwrite allx)",
        )
    num_nodes = max(len(allx), int(test_idx.max()) + 1 if len(test_idx) else 0)
    if len(y) + num_val > len(allx):
        raise DataFormatError(
            paths["allx"], f"{len(allx)} rows: too few for {len(y)} train + {num_val} val nodes"
        )

    features = np.zeros((num_nodes, num_features), dtype=np.float32)
    features[: len(allx)] = allx
    features[test_idx] = tx
    labels = np.full(num_nodes, -1, dtype=np.int64)
    labels[: len(ally)] = ally
    labels[test_idx] = ty
    edges = _graph_edges(paths["graph"], raw["graph"], num_nodes)

    def mask(idx: np.ndarray) -> Tensor:
        m = torch.zeros(num_nodes, dtype=torch.bool)
        m[torch.from_numpy(idx)] = True
        return m

    return NodeDataset(
        name=name.lower(),
        features=torch.from_numpy(features),
        labels=torch.from_numpy(labels),
        edge_index=torch.from_numpy(edges),
        train_mask=mask(np.arange(len(y))),
        val_mask=mask(np.arange(len(y), len(y) + num_val)),
        test_mask=mask(test_idx),
        num_classes=classes,
    )
