"""Spearman correlation (average ranks for ties) and the STS evaluation."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.eval.sts import average_ranks, spearman, sts_spearman


def test_average_ranks_give_ties_the_mean_rank():
    x = torch.tensor([10.0, 20.0, 10.0, 30.0, 20.0, 10.0])
    assert average_ranks(x).tolist() == [2.0, 4.5, 2.0, 6.0, 4.5, 2.0]


def test_spearman_on_hand_computed_examples():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    # ranks of y: 2,1,4,3,5 -> d = -1,1,-1,1,0 -> 1 - 6*4/(5*24) = 0.8
    assert spearman(x, torch.tensor([2.0, 1.0, 4.0, 3.0, 5.0])) == pytest.approx(0.8)
    # with ties: ranks x 1,2,3,4 ; y 1.5,1.5,3.5,3.5 -> Pearson of the ranks
    rx, ry = torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.5, 1.5, 3.5, 3.5])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    expected = float(rx @ ry / (rx.norm() * ry.norm()))
    assert spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([0.0, 0, 1, 1])) == pytest.approx(
        expected
    )
    assert math.isnan(spearman(x, torch.ones(5)))


def test_spearman_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="same length >= 2"):
        spearman(torch.zeros(3), torch.zeros(4))


def test_sts_spearman_scores_the_cosine_of_each_pair_and_encodes_each_sentence_once():
    vectors = {"a": [1.0, 0.0], "b": [1.0, 0.1], "c": [0.0, 1.0], "d": [-1.0, 0.0]}
    calls = []

    def encode(sentences):
        calls.append(list(sentences))
        return torch.tensor([vectors[s] for s in sentences])

    first, second = ["a", "a", "a", "b"], ["b", "c", "d", "c"]
    # cosines: a.b 0.995, a.c 0, a.d -1, b.c 0.0995 -> perfectly ordered by these scores
    assert sts_spearman(encode, first, second, [5.0, 1.0, 0.0, 2.0]) == pytest.approx(1.0)
    assert sorted(calls[0]) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="same length"):
        sts_spearman(encode, first, second, [1.0])
