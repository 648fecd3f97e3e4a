"""Cross-modal retrieval Recall@k (pessimistic ties) and zero-shot classification on
hand-made examples."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.eval import (
    cross_modal_recall,
    retrieval_ranks,
    zero_shot_accuracy,
    zero_shot_predict,
)
from contrastkit.eval.retrieval import random_ranking_recall

pytestmark = pytest.mark.usefixtures("one_thread")


def _unit(degrees: float) -> list[float]:
    r = math.radians(degrees)
    return [math.cos(r), math.sin(r)]


def test_ranks_and_recall_by_hand():
    """Gallery on the unit circle at 0, 40, 90, 90 (a duplicate), 180 degrees; queries at 10,
    85, 95, 170, 30 degrees with targets 0..4. Cosine = cos(angle difference):

    q0 (10):  g0 10, g1 30, g2 80, g3 80, g4 170  -> target g0 first            -> rank 1
    q1 (85):  g1 at 45; g2, g3 at 5 are closer     -> 2 above                    -> rank 3
    q2 (95):  g2 at 5 ties its duplicate g3 (5)    -> pessimistic: g3 counts     -> rank 2
    q3 (170): g3 at 80 ties g2 (80); g4 (10) closer -> g4 and g2 count           -> rank 3
    q4 (30):  g4 at 150; g0 30, g1 10, g2, g3 60  -> every other row is closer   -> rank 5
    """
    gallery = torch.tensor([_unit(a) for a in (0, 40, 90, 90, 180)])
    query = torch.tensor([_unit(a) for a in (10, 85, 95, 170, 30)])
    ranks = retrieval_ranks(query, gallery)
    assert ranks.tolist() == [1, 3, 2, 3, 5]
    recall = cross_modal_recall(query, gallery, (1, 2, 3, 5))
    assert recall == {"R@1": 0.2, "R@2": 0.4, "R@3": 0.8, "R@5": 1.0}
    # scaling rows changes nothing (cosine); without normalisation the norm matters
    scaled = gallery * torch.tensor([[1.0], [3.0], [1.0], [1.0], [1.0]])
    assert retrieval_ranks(query, scaled).tolist() == [1, 3, 2, 3, 5]
    assert retrieval_ranks(query, scaled, normalize=False)[0] == 2  # g1 (norm 3) wins for q0


def test_duplicate_gallery_rows_count_against_every_query():
    """Four identical gallery rows: every query ties with the other three -> rank 4 each."""
    gallery = torch.ones(4, 3)
    query = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert retrieval_ranks(query, gallery).tolist() == [4, 4, 4, 4]
    assert cross_modal_recall(query, gallery, (1, 3, 4)) == {"R@1": 0.0, "R@3": 0.0, "R@4": 1.0}
    # near-duplicates within atol tie too; atol=0 separates them
    near = gallery.clone()
    near[1] += torch.tensor([1e-8, 0, 0])
    assert retrieval_ranks(query, near).tolist() == [4, 4, 4, 4]


def test_explicit_targets_and_a_larger_gallery():
    gallery = torch.tensor([_unit(a) for a in (0, 90, 180, 270)])
    query = torch.tensor([_unit(a) for a in (80, 190)])
    ranks = retrieval_ranks(query, gallery, targets=torch.tensor([1, 0]))
    assert ranks.tolist() == [1, 4]  # q1 (190): g2 at 10, g3 at 80, g1 at 100 before g0 (170)
    chunked = retrieval_ranks(query, gallery, targets=torch.tensor([1, 0]), chunk=1)
    assert torch.equal(chunked, ranks)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"query": torch.ones(3, 2), "gallery": torch.ones(4, 2)}, ValueError, "n == m"),
        ({"query": torch.ones(3, 2), "gallery": torch.ones(3, 5)}, ValueError, "same D"),
        ({"query": torch.ones(3), "gallery": torch.ones(3, 2)}, ValueError, r"\[n, D\]"),
        (
            {"query": torch.ones(3, 2, dtype=torch.long), "gallery": torch.ones(3, 2)},
            TypeError,
            "floating-point",
        ),
        (
            {"query": torch.full((2, 2), float("nan")), "gallery": torch.ones(2, 2)},
            ValueError,
            "NaN",
        ),
        (
            {
                "query": torch.ones(2, 2),
                "gallery": torch.ones(3, 2),
                "targets": torch.tensor([0, 3]),
            },
            ValueError,
            "index the gallery",
        ),
    ],
)
def test_bad_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        retrieval_ranks(**kwargs)


def test_bad_ks():
    with pytest.raises(ValueError, match="ks"):
        cross_modal_recall(torch.ones(2, 2), torch.ones(2, 2), (0,))
    with pytest.raises(ValueError, match="ks"):
        cross_modal_recall(torch.ones(2, 2), torch.ones(2, 2), ())


def test_zero_shot_by_hand():
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    x = torch.tensor([[2.0, 0.1], [0.1, -0.2], [-1.0, 0.5], [1.0, 1.0]])
    # cosines: x0 -> class 0; x1 -> class 0 (0.45 vs -0.89 vs -0.45); x2 -> class 2;
    # x3 ties classes 0 and 1 -> the lower id
    assert zero_shot_predict(x, classes).tolist() == [0, 0, 2, 0]
    assert zero_shot_accuracy(x, classes, torch.tensor([0, 1, 2, 0])) == 0.75
    with pytest.raises(ValueError, match="labels"):
        zero_shot_accuracy(x, classes, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same D"):
        zero_shot_predict(x, torch.ones(3, 3))


def test_bad_chunk_and_zero_shot_labels():
    for chunk in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="chunk"):
            retrieval_ranks(torch.ones(2, 2), torch.ones(2, 2), chunk=chunk)
    classes = torch.eye(3)
    x = torch.eye(3)
    for labels in (torch.tensor([0.0, 1.0, 2.0]), torch.tensor([True, False, True])):
        with pytest.raises(TypeError, match="integer"):
            zero_shot_accuracy(x, classes, labels)
    for labels in (torch.tensor([0, 1, 3]), torch.tensor([-1, 1, 2])):
        with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
            zero_shot_accuracy(x, classes, labels)


def test_random_ranking_recall_without_ties_is_k_over_m():
    gallery = torch.randn(9, 4, generator=torch.Generator().manual_seed(0))
    got = random_ranking_recall(gallery, (1, 5, 10))
    assert got == pytest.approx({"R@1": 1 / 9, "R@5": 5 / 9, "R@10": 1.0})


def test_random_ranking_recall_with_ties_by_hand():
    # groups of sizes 2 and 1: rows 0, 1 identical, row 2 alone
    gallery = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # a target in the pair: rank 2 if its group is first (1/2), 3 else -> R@1 = 0, R@2 = 1/2;
    # the single row: rank 1 (1/2) or 3 -> R@1 = R@2 = 1/2. Mean over the three targets:
    got = random_ranking_recall(gallery, (1, 2, 3))
    assert got == pytest.approx({"R@1": 1 / 6, "R@2": 1 / 2, "R@3": 1.0})
    only_pair = random_ranking_recall(gallery, (1, 2), targets=torch.tensor([0, 1]))
    assert only_pair == pytest.approx({"R@1": 0.0, "R@2": 0.5})


def test_random_ranking_recall_matches_a_monte_carlo_random_scorer():
    # the exact value against 20,000 random scorers (seed 0): identical rows share a score
    rows = [[0, 1], [0, 1], [1, 0], [1, 1], [2, 1], [2, 1], [2, 1], [3, 1], [4, 1], [0, 1]]
    gallery = torch.tensor(rows, dtype=torch.float64)
    ks = (1, 2, 3, 5, 8)
    exact = random_ranking_recall(gallery, ks)
    _, group = torch.unique(gallery, dim=0, return_inverse=True)
    g = torch.Generator().manual_seed(0)
    trials = 20_000
    scores = torch.rand(trials, int(group.max()) + 1, generator=g)[:, group]  # [T, m]
    target = torch.randint(0, len(rows), (trials,), generator=g)
    own = scores.gather(1, target[:, None])
    rank = (scores >= own).sum(dim=1)
    for k in ks:
        estimate = float((rank <= k).double().mean())
        assert abs(estimate - exact[f"R@{k}"]) < 0.015, k
    assert exact["R@1"] < 1 / len(rows)  # the ties push chance below k / m
