"""Semantic textual similarity: Spearman correlation between the cosine of two sentence
embeddings and the gold score (STS-B; SimCSE's and SentEval's ``all`` setting, ×100 in tables)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def average_ranks(x: Tensor) -> Tensor:
    """Ranks 1..n of a 1-d tensor, ties given the mean of their ranks (float64)."""
    if x.dim() != 1:
        raise ValueError(f"average_ranks expects a 1-d tensor; got shape {tuple(x.shape)}")
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    ranks = torch.empty(x.numel(), dtype=torch.float64)
    start = 0
    n = x.numel()
    # runs of equal values share the mean of positions start+1 .. end
    boundaries = [*torch.nonzero(sorted_x[1:] != sorted_x[:-1]).flatten().tolist(), n - 1]
    for end in boundaries:
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's rank correlation of two equally long 1-d tensors (average ranks for ties):
    the Pearson correlation of the ranks. A constant input gives NaN."""
    if x.shape != y.shape or x.dim() != 1 or x.numel() < 2:
        raise ValueError(
            f"spearman expects two 1-d tensors of the same length >= 2; got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    rx, ry = average_ranks(x.detach().cpu()), average_ranks(y.detach().cpu())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = rx.norm() * ry.norm()
    if denominator == 0:
        return float("nan")
    return float((rx @ ry) / denominator)


def sts_spearman(
    encode: Callable[[Sequence[str]], Tensor],
    first: Sequence[str],
    second: Sequence[str],
    scores: Sequence[float],
) -> float:
    """Spearman ρ between ``cos(encode(first)_i, encode(second)_i)`` and ``scores``.

    ``encode`` maps a list of sentences to ``[n, D]`` embeddings; every distinct sentence is
    encoded once."""
    if not (len(first) == len(second) == len(scores)):
        raise ValueError(
            f"first, second and scores must have the same length; got {len(first)}, "
            f"{len(second)}, {len(scores)}"
        )
    distinct = list(dict.fromkeys(list(first) + list(second)))
    index = {s: i for i, s in enumerate(distinct)}
    z = F.normalize(encode(distinct).to(torch.float64), dim=-1)
    a = z[[index[s] for s in first]]
    b = z[[index[s] for s in second]]
    cosine = (a * b).sum(dim=-1)
    return spearman(cosine, torch.tensor(list(scores), dtype=torch.float64))
