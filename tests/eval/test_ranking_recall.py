"""Tests for ``recall_ndcg_at_k`` / ``recall_ndcg_in_chunks`` (several held-out items per user,
LightGCN's Recall@k and NDCG@k): a hand-computed example and a brute-force comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastkit.data.graphs import InteractionGraph
from contrastkit.eval.ranking import recall_ndcg_at_k, recall_ndcg_in_chunks

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CS. tensor support is in beta:UserWarning")

# 3 users, 6 items.
SCORES = torch.tensor(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # user 0: order 0, 1, 2, 3, 4, 5
        [0.1, 0.9, 0.8, 0.3, 0.2, 0.7],  # user 1: item 1 excluded -> order 2, 5, 3, 4, 0
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],  # user 2: no held-out item -> skipped
    ]
)
POSITIVES = [[1, 3, 5], [0, 2], []]
EXCLUDE = torch.zeros(3, 6, dtype=torch.bool)
EXCLUDE[1, 1] = True

L3, L4, L5, L6 = math.log2(3), math.log2(4), math.log2(5), math.log2(6)
# user 0, k=3: top-3 = [0, 1, 2], one hit (item 1) at rank 1.
#   Recall = 1/3; DCG = 1/log2(1+2) = 1/log2 3 = 0.63093
#   IDCG over min(3, |P|=3) = 3 ranks: 1/log2 2 + 1/log2 3 + 1/log2 4 = 1 + 0.63093 + 0.5 = 2.13093
#   NDCG = 0.63093 / 2.13093 = 0.29608
U0_R3, U0_N3 = 1 / 3, (1 / L3) / (1 + 1 / L3 + 1 / L4)
# user 1, k=3: top-3 = [2, 5, 3], one hit (item 2) at rank 0.
#   Recall = 1/2; DCG = 1; IDCG over min(3, 2) = 2 ranks: 1 + 1/log2 3 = 1.63093
#   NDCG = 1 / 1.63093 = 0.61315
U1_R3, U1_N3 = 1 / 2, 1 / (1 + 1 / L3)
# user 0, k=5: top-5 = [0, 1, 2, 3, 4], hits (items 1, 3) at ranks 1 and 3.
#   Recall = 2/3; DCG = 1/log2 3 + 1/log2 5 = 0.63093 + 0.43068 = 1.06161
#   NDCG = 1.06161 / 2.13093 = 0.49819
U0_R5, U0_N5 = 2 / 3, (1 / L3 + 1 / L5) / (1 + 1 / L3 + 1 / L4)
# user 1, k=5: top-5 = [2, 5, 3, 4, 0], hits (items 2, 0) at ranks 0 and 4.
#   Recall = 2/2 = 1; DCG = 1 + 1/log2 6 = 1.38685; NDCG = 1.38685 / 1.63093 = 0.85034
U1_R5, U1_N5 = 1.0, (1 + 1 / L6) / (1 + 1 / L3)
# means over users 0 and 1 (user 2 skipped):
#   Recall@3 = (1/3 + 1/2) / 2 = 0.41667   NDCG@3 = (0.29608 + 0.61315) / 2 = 0.45461
#   Recall@5 = (2/3 + 1) / 2 = 0.83333     NDCG@5 = (0.49819 + 0.85034) / 2 = 0.67427
EXPECTED = {
    "Recall@3": (U0_R3 + U1_R3) / 2,
    "NDCG@3": (U0_N3 + U1_N3) / 2,
    "Recall@5": (U0_R5 + U1_R5) / 2,
    "NDCG@5": (U0_N5 + U1_N5) / 2,
}


def test_hand_computed_example() -> None:
    assert EXPECTED["Recall@3"] == pytest.approx(0.41667, abs=1e-5)
    assert EXPECTED["NDCG@3"] == pytest.approx(0.45461, abs=1e-5)
    assert EXPECTED["Recall@5"] == pytest.approx(0.83333, abs=1e-5)
    assert EXPECTED["NDCG@5"] == pytest.approx(0.67427, abs=1e-5)
    got = recall_ndcg_at_k(SCORES, POSITIVES, EXCLUDE, ks=(3, 5))
    assert list(got) == ["Recall@3", "NDCG@3", "Recall@5", "NDCG@5"]
    for name, value in EXPECTED.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name


def test_input_forms_agree() -> None:
    dense_pos = torch.zeros(3, 6, dtype=torch.bool)
    for u, items in enumerate(POSITIVES):
        dense_pos[u, items] = True
    forms = [
        (POSITIVES, EXCLUDE),
        ([np.array(p, dtype=np.int32) for p in POSITIVES], EXCLUDE.to_sparse()),
        ([torch.tensor(p + p[:1], dtype=torch.long) for p in POSITIVES], EXCLUDE.to_sparse_csr()),
        (dense_pos, EXCLUDE),
        (dense_pos.to_sparse(), EXCLUDE.to_sparse()),
        (dense_pos.to_sparse_csr(), EXCLUDE),
    ]
    for positives, exclude in forms:
        got = recall_ndcg_at_k(SCORES, positives, exclude, ks=(3, 5))
        for name, value in EXPECTED.items():
            assert got[name] == pytest.approx(value, rel=1e-12), (name, type(positives))


def test_per_user_and_chunks() -> None:
    per = recall_ndcg_at_k(SCORES, POSITIVES, EXCLUDE, ks=(3, 5), per_user=True)
    r3 = per["Recall@3"]
    assert r3.dtype == torch.float64 and r3.shape == (3,)
    assert r3[:2].tolist() == pytest.approx([U0_R3, U1_R3])
    assert torch.isnan(r3[2]) and torch.isnan(per["NDCG@5"][2])  # user 2 skipped
    assert per["NDCG@5"][:2].tolist() == pytest.approx([U0_N5, U1_N5])
    for chunk in (1, 2, 5):
        got = recall_ndcg_in_chunks(
            lambda a, b: SCORES[a:b], POSITIVES, EXCLUDE.to_sparse(), ks=(3, 5), chunk_size=chunk
        )
        for name, value in EXPECTED.items():
            assert got[name] == pytest.approx(value, rel=1e-12), (name, chunk)
        per_c = recall_ndcg_in_chunks(
            lambda a, b: SCORES[a:b], POSITIVES, EXCLUDE, ks=(3, 5), chunk_size=chunk, per_user=True
        )
        for name in per:
            torch.testing.assert_close(per_c[name], per[name], equal_nan=True)


def test_k_beyond_items_and_excluded_positive() -> None:
    # k = 10 > 6 items: every non-excluded item is in the "top-k"
    got = recall_ndcg_at_k(SCORES, POSITIVES, EXCLUDE, ks=(10,), per_user=True)
    assert got["Recall@10"][:2].tolist() == [1.0, 1.0]
    # a held-out item that is also excluded is never a hit but stays in the denominator
    positives = [[0], [1, 2], []]  # item 1 of user 1 is excluded
    got = recall_ndcg_at_k(SCORES, positives, EXCLUDE, ks=(6,), per_user=True)
    assert got["Recall@6"][1] == pytest.approx(0.5)
    # user 1: hit item 2 at rank 0; IDCG over min(6, 2) = 2 ranks -> 1 / (1 + 1/log2 3)
    assert got["NDCG@6"][1] == pytest.approx(1 / (1 + 1 / L3))


def _brute_force(scores: np.ndarray, pos: list[set[int]], excl: np.ndarray, k: int) -> tuple:
    recalls, ndcgs = [], []
    for u in range(len(scores)):
        if not pos[u]:
            continue
        order = [i for i in np.argsort(-scores[u], kind="stable") if not excl[u, i]][:k]
        hits = [r for r, i in enumerate(order) if i in pos[u]]
        recalls.append(len(hits) / len(pos[u]))
        dcg = sum(1 / math.log2(r + 2) for r in hits)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(pos[u]))))
        ndcgs.append(dcg / idcg)
    return float(np.mean(recalls)), float(np.mean(ndcgs))


def test_matches_brute_force_on_random_data() -> None:
    rng = np.random.default_rng(0)
    users, items = 40, 30
    scores = rng.standard_normal((users, items))  # distinct: no ties
    excl = rng.random((users, items)) < 0.2
    pos = [
        set(rng.choice(items, size=rng.integers(0, 6), replace=False).tolist())
        for _ in range(users)
    ]
    positives = [np.array(sorted(p), dtype=np.int64) for p in pos]
    got = recall_ndcg_at_k(
        torch.from_numpy(scores), positives, torch.from_numpy(excl), ks=(1, 5, 20)
    )
    for k in (1, 5, 20):
        recall, ndcg = _brute_force(scores, pos, excl, k)
        assert got[f"Recall@{k}"] == pytest.approx(recall, rel=1e-12)
        assert got[f"NDCG@{k}"] == pytest.approx(ndcg, rel=1e-12)


def test_with_interaction_graph() -> None:
    graph = InteractionGraph(3, 6, train=[[], [1], [2]], test=[[1, 3, 5], [0, 2], []])
    got = recall_ndcg_at_k(SCORES, graph.test, graph.train_mask(), ks=(3, 5))
    for name, value in EXPECTED.items():
        assert got[name] == pytest.approx(value, rel=1e-12)


def test_errors() -> None:
    with pytest.raises(ValueError, match="no user has a held-out item"):
        recall_ndcg_at_k(SCORES, [[], [], []])
    with pytest.raises(ValueError, match="outside"):
        recall_ndcg_at_k(SCORES, [[6], [], []])
    with pytest.raises(ValueError, match="positives has 2 users"):
        recall_ndcg_at_k(SCORES, [[1], [2]])
    with pytest.raises(TypeError, match="positives"):
        recall_ndcg_at_k(SCORES, [[0.5], [], []])
    with pytest.raises(ValueError, match="NaN"):
        recall_ndcg_at_k(torch.full((3, 6), float("nan")), POSITIVES)
    with pytest.raises(ValueError, match="returned 5 item columns; the first chunk had 6"):
        recall_ndcg_in_chunks(lambda a, b: SCORES[a:b, : 6 - a // 2], POSITIVES, chunk_size=2)
