"""Tests for ``contrastkit.data.graphs``: tiny files written to ``tmp_path`` (LightGCN text files,
Planetoid pickles), plus the real shared Gowalla / Cora files when ``$CONTRASTKIT_DATA`` or
``../shared/data`` holds them."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data.graphs import (
    InteractionGraph,
    load_lightgcn_dataset,
    load_movielens_graph,
    load_planetoid,
    random_split_graph,
    read_lightgcn_interactions,
)
from contrastkit.data.images import DataFormatError, data_root


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# LightGCN text files
# --------------------------------------------------------------------------------------------


def test_read_lightgcn_parses_users_items_and_empty_users(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.txt", "0 1 2\n1\n2\t0  3 \n3 \n\n\n")
    lists = read_lightgcn_interactions(path)
    assert [a.tolist() for a in lists] == [[1, 2], [], [0, 3], []]
    assert all(a.dtype == np.int64 for a in lists)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("0 1\nx 2\n", 2, "user id 'x'"),
        ("0 1\n1 2 -3\n", 2, "item id '-3'"),
        ("0 1\n1 2.5\n", 2, "item id '2.5'"),
        ("0 1\n1 1_0\n", 2, "item id '1_0'"),
        ("0 1\n2 3\n", 2, "user id 2 out of order: expected 1"),
        ("0 1\n1 4 5 4\n", 2, "item 4 repeated for user 1"),
        ("0 1\n\n1 2\n", 2, "blank line"),
        ("0 1\n1 99999999999999999999\n", 2, "below 2**63"),
    ],
)
def test_read_lightgcn_malformed_lines_name_file_and_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = _write(tmp_path / "bad.txt", text)
    with pytest.raises(DataFormatError, match=f"line {line}: .*{re.escape(reason)}") as info:
        read_lightgcn_interactions(path)
    assert info.value.line == line
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_read_lightgcn_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="empty file"):
        read_lightgcn_interactions(_write(tmp_path / "e.txt", "\n"))
    with pytest.raises(FileNotFoundError):
        read_lightgcn_interactions(tmp_path / "nope.txt")


def test_load_lightgcn_dataset_sizes_and_padding(tmp_path: Path) -> None:
    _write(tmp_path / "train.txt", "0 0 1\n1 2\n2\n")
    _write(tmp_path / "test.txt", "0 4\n1 0 3\n")  # user 2 has no test line
    graph = load_lightgcn_dataset(tmp_path)
    assert (graph.num_users, graph.num_items) == (3, 5)  # item ids up to 4 (test file)
    assert (graph.num_train, graph.num_test) == (3, 3)
    assert [t.tolist() for t in graph.test] == [[4], [0, 3], []]
    users, items = graph.edge_index()
    assert users.tolist() == [0, 0, 1] and items.tolist() == [0, 1, 2]
    assert users.dtype == items.dtype == torch.int64
    dense = graph.train_mask().to_dense()
    assert dense.dtype == torch.bool
    assert dense.tolist() == [
        [True, True, False, False, False],
        [False, False, True, False, False],
        [False, False, False, False, False],
    ]
    assert load_lightgcn_dataset(tmp_path, num_items=7).num_items == 7
    with pytest.raises(DataFormatError, match=r"test.txt: line 1: item id 4 >= num_items = 4"):
        load_lightgcn_dataset(tmp_path, num_items=4)
    (tmp_path / "test.txt").unlink()
    with pytest.raises(FileNotFoundError):
        load_lightgcn_dataset(tmp_path)


def test_interaction_graph_validates() -> None:
    with pytest.raises(ValueError, match=r"train\[1\] has item ids"):
        InteractionGraph(2, 3, train=[[0], [3]], test=[[], []])
    with pytest.raises(ValueError, match="test has 1 users"):
        InteractionGraph(2, 3, train=[[0], [1]], test=[[2]])
    with pytest.raises(ValueError, match="repeats an item"):
        InteractionGraph(1, 3, train=[[1, 1]], test=[[]])


# --------------------------------------------------------------------------------------------
# normalised adjacency
# --------------------------------------------------------------------------------------------


def _dense_normalized(num_users: int, num_items: int, edges: list[tuple[int, int]]) -> np.ndarray:
    """Reference: D^-1/2 A D^-1/2 of [[0, R], [R^T, 0]] in float64, zero-degree rows 0."""
    n = num_users + num_items
    a = np.zeros((n, n))
    for u, i in edges:
        a[u, num_users + i] = a[num_users + i, u] = 1.0
    deg = a.sum(axis=1)
    inv = np.zeros(n)
    inv[deg > 0] = 1.0 / np.sqrt(deg[deg > 0])
    return inv[:, None] * a * inv[None, :]


# users 0..2 (user 2 has no item), items 0..3 (item 3 has no user)
TINY_TRAIN = [[0, 1, 2], [1], []]
TINY_EDGES = [(0, 0), (0, 1), (0, 2), (1, 1)]


def test_normalized_adjacency_matches_dense_numpy() -> None:
    graph = InteractionGraph(3, 4, train=TINY_TRAIN, test=[[], [], []])
    adj = graph.normalized_adjacency()
    assert adj.layout == torch.sparse_coo and adj.is_coalesced()
    assert adj.shape == (7, 7) and adj.dtype == torch.float32
    assert adj._nnz() == 2 * len(TINY_EDGES)
    dense = adj.to_dense().double().numpy()
    expected = _dense_normalized(3, 4, TINY_EDGES)
    np.testing.assert_allclose(dense, expected, rtol=1e-6, atol=0)
    # e.g. entry (user 0, item 1): deg(user 0) = 3, deg(item 1) = 2 -> 1/sqrt(6)
    assert dense[0, 3 + 1] == pytest.approx(1 / np.sqrt(6), rel=1e-6)
    np.testing.assert_array_equal(dense, dense.T)  # symmetric
    assert np.isfinite(dense).all()
    assert not dense[2].any() and not dense[:, 2].any()  # zero-degree user
    assert not dense[3 + 3].any()  # zero-degree item
    adj64 = graph.normalized_adjacency(dtype=torch.float64)
    np.testing.assert_allclose(adj64.to_dense().numpy(), expected, rtol=1e-12, atol=0)


def test_normalized_adjacency_edge_mask_drops_edges_and_renormalises() -> None:
    graph = InteractionGraph(3, 4, train=TINY_TRAIN, test=[[], [], []])
    # edge_index order: (0,0), (0,1), (0,2), (1,1); drop (0,1)
    mask = torch.tensor([True, False, True, True])
    adj = graph.normalized_adjacency(mask)
    expected = _dense_normalized(3, 4, [(0, 0), (0, 2), (1, 1)])
    np.testing.assert_allclose(adj.to_dense().double().numpy(), expected, rtol=1e-6, atol=0)
    assert adj._nnz() == 6
    assert adj.to_dense()[0, 3 + 1] == 0
    # item 1 now has degree 1 and user 1 degree 1 -> weight 1
    assert adj.to_dense()[1, 3 + 1] == pytest.approx(1.0)
    none = graph.normalized_adjacency(np.zeros(4, dtype=bool))
    assert none._nnz() == 0 and not torch.isnan(none.to_dense()).any()
    with pytest.raises(ValueError, match="edge_mask"):
        graph.normalized_adjacency(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="edge_mask"):
        graph.normalized_adjacency(torch.ones(4))


# --------------------------------------------------------------------------------------------
# Planetoid: tiny synthetic files and the restricted unpickler
# --------------------------------------------------------------------------------------------


def _write_toy_planetoid(folder: Path) -> None:
    """8 nodes: allx = nodes 0..4 (x = 0..1), test nodes [7, 5] (node 6 isolated, absent).

    Protocol 4: Python 3's protocol 2 would encode bytes through ``_codecs.encode``, a global
    the loader refuses (the real files are Python 2 protocol-2 pickles, which do not need it).
    """
    import scipy.sparse as sp

    feats = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) % 5
    onehot = np.eye(2, dtype=np.int32)
    lab = np.array([0, 1, 1, 0, 1, 0, -1, 1])
    objects = {
        "x": sp.csr_matrix(feats[:2]),
        "y": onehot[lab[:2]],
        "allx": sp.csr_matrix(feats[:5]),
        "ally": onehot[lab[:5]],
        "tx": sp.csr_matrix(feats[[7, 5]]),
        "ty": onehot[lab[[7, 5]]],
    }
    graph: collections.defaultdict[int, list[int]] = collections.defaultdict(list)
    graph.update({0: [1, 1, 0], 1: [0, 2], 2: [1], 3: [7], 5: [4], 7: [3]})
    objects["graph"] = graph
    for key, obj in objects.items():
        (folder / f"ind.toy.{key}").write_bytes(pickle.dumps(obj, protocol=4))
    (folder / "ind.toy.test.index").write_text("7\n5\n")


def test_planetoid_toy_reorders_tests_and_builds_edges(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    _write_toy_planetoid(tmp_path)
    data = load_planetoid(tmp_path, "toy", num_val=2)
    feats = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) % 5
    feats[6] = 0  # the isolated node missing from test.index
    assert data.num_nodes == 8 and data.num_features == 3 and data.num_classes == 2
    np.testing.assert_array_equal(data.features.numpy(), feats)
    assert data.features.dtype == torch.float32
    assert data.labels.tolist() == [0, 1, 1, 0, 1, 0, -1, 1]
    assert data.train_mask.nonzero().flatten().tolist() == [0, 1]
    assert data.val_mask.nonzero().flatten().tolist() == [2, 3]
    assert data.test_mask.nonzero().flatten().tolist() == [5, 7]
    # undirected {0-1, 1-2, 3-7, 4-5} both ways; self loop 0-0 and the repeated 0-1 dropped
    assert data.edge_index.tolist() == [
        [0, 1, 1, 2, 3, 4, 5, 7],
        [1, 0, 2, 1, 7, 5, 4, 3],
    ]


class _TrapError(Exception):
    pass


@pytest.mark.parametrize(
    ("payload", "target"),
    [
        (b"cos\nsystem\n(S'touch pwned'\ntR.", "os.system"),
        (b"c__builtin__\neval\n(S'1 + 1'\ntR.", "__builtin__.eval"),
        (b"\x80\x02cbuiltins\ngetattr\nq\x00.", "builtins.getattr"),
    ],
)
def test_planetoid_refuses_malicious_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload: bytes, target: str
) -> None:
    calls: list[object] = []

    def trap(*args: object) -> None:  # would run instead of the real function
        calls.append(args)
        raise _TrapError("called")

    monkeypatch.setattr(os, "system", trap)
    monkeypatch.setattr(builtins, "eval", trap)
    for key in ("y", "tx", "ty", "allx", "ally", "graph", "test.index"):
        (tmp_path / f"ind.cora.{key}").write_bytes(b"")
    (tmp_path / "ind.cora.x").write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match=f"refused pickle global {target}") as info:
        load_planetoid(tmp_path)
    assert isinstance(info.value, DataFormatError)
    assert info.value.path == tmp_path / "ind.cora.x"
    assert calls == []
    assert not (tmp_path / "pwned").exists()


def test_planetoid_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ind\.cora\.x"):
        load_planetoid(tmp_path)


# --------------------------------------------------------------------------------------------
# the real shared files
# --------------------------------------------------------------------------------------------


def _shared(name: str) -> Path:
    try:
        root = data_root()
    except FileNotFoundError:
        root = None
    if root is None or not (root / name).is_dir():
        pytest.skip(
            f"shared {name} not found: set CONTRASTKIT_DATA or run pytest from the repo root "
            f"with ../shared/data/{name} beside it"
        )
    return root / name


def test_real_cora_matches_readme() -> None:
    pytest.importorskip("scipy")
    data = load_planetoid(_shared("planetoid"), "cora")
    assert (data.num_nodes, data.num_features, data.num_classes) == (2708, 1433, 7)
    assert data.num_edges == 10556  # 5,278 undirected edges
    src, dst = data.edge_index
    assert not (src == dst).any()
    keys = src * data.num_nodes + dst
    assert torch.equal(keys.unique(), keys)  # unique and sorted
    assert torch.equal((dst * data.num_nodes + src).sort().values, keys)  # symmetric
    assert int(data.train_mask.sum()) == 140 and int(data.val_mask.sum()) == 500
    assert int(data.test_mask.sum()) == 1000
    assert data.train_mask[:140].all() and data.val_mask[140:640].all()
    assert int(data.test_mask.nonzero().min()) == 1708
    assert not (data.train_mask & data.val_mask).any()
    assert not ((data.train_mask | data.val_mask) & data.test_mask).any()
    assert torch.bincount(data.labels[data.train_mask]).tolist() == [20] * 7
    assert int(data.labels.min()) == 0 and int(data.labels.max()) == 6
    assert set(data.features.unique().tolist()) == {0.0, 1.0}
    assert (data.features.sum(dim=1) > 0).all()


def test_real_gowalla_matches_readme() -> None:
    root = _shared("lightgcn_gowalla")
    graph = load_lightgcn_dataset(root)
    assert (graph.num_users, graph.num_items) == (29858, 40981)
    assert (graph.num_train, graph.num_test) == (810128, 217242)


# --------------------------------------------------------------------------------------------
# Random per-user split (MovieLens 100K as an interaction graph)
# --------------------------------------------------------------------------------------------


def test_random_split_graph_sizes_order_and_disjointness() -> None:
    lists = [np.arange(10), np.array([7, 3, 3, 5]), np.array([4]), np.zeros(0, dtype=np.int64)]
    graph = random_split_graph(lists, 12, test_fraction=0.2, seed=3)
    assert [len(t) for t in graph.test] == [2, 1, 0, 0]  # round(0.2 n), capped at n - 1
    assert [len(t) for t in graph.train] == [8, 2, 1, 0]  # the repeated 3 counts once
    for items, train, test in zip(lists, graph.train, graph.test, strict=True):
        _, first = np.unique(items, return_index=True)
        distinct = items[np.sort(first)]
        assert not set(train) & set(test)
        assert sorted([*train, *test]) == sorted(distinct)
        position = {int(v): k for k, v in enumerate(distinct)}  # both parts keep file order
        assert [position[int(v)] for v in train] == sorted(position[int(v)] for v in train)
        assert [position[int(v)] for v in test] == sorted(position[int(v)] for v in test)
    same = random_split_graph(lists, 12, test_fraction=0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(graph.test, same.test, strict=True))
    draws = {tuple(random_split_graph(lists, 12, seed=s).test[0]) for s in range(20)}
    assert len(draws) > 10  # the seed moves the split
    with pytest.raises(ValueError, match="test_fraction"):
        random_split_graph(lists, 12, test_fraction=1.0)
    with pytest.raises(ValueError, match="outside"):
        random_split_graph(lists, 9)


def test_load_movielens_graph_tiny_file(tmp_path: Path) -> None:
    rows = ["1\t2\t5\t30", "1\t1\t3\t10", "2\t3\t1\t20", "1\t3\t4\t20", "2\t1\t2\t5"]
    _write(tmp_path / "u.data", "\n".join(rows) + "\n")
    graph = load_movielens_graph(tmp_path, test_fraction=0.34, seed=0)
    assert (graph.num_users, graph.num_items) == (2, 3)
    assert (graph.num_train, graph.num_test) == (3, 2)  # user 1: round(1.02) = 1 of 3; user 2: 1
    everything = [sorted([*a, *b]) for a, b in zip(graph.train, graph.test, strict=True)]
    assert everything == [[0, 1, 2], [0, 2]]  # 1-based ids -> 0-based, ratings ignored
    _write(tmp_path / "u.data", "1\t2\t5\n")
    with pytest.raises(DataFormatError, match=r"u\.data: line 1: expected 4"):
        load_movielens_graph(tmp_path)


def test_real_movielens_graph() -> None:
    graph = load_movielens_graph(_shared("movielens_100k"))
    assert (graph.num_users, graph.num_items) == (943, 1682)
    assert (graph.num_train, graph.num_test) == (80000, 20000)  # every user has >= 20 ratings
