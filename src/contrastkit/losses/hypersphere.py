"""Hypersphere objectives: alignment and uniformity (Wang & Isola) and the kernel loss KCL.

Gaussian-kernel energies ``exp(-t ||x - y||²)`` are computed through the core as log-sum-exps:
``-t ||x_i - x_j||² = 2t <x_i, x_j> - t |x_j|² - t |x_i|²`` (a scaled logit, a candidate bias
and an anchor constant), so no pairwise distance matrix is formed and nothing overflows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastkit.core import LogSumExp, PairMask, local_anchor_range, pair_reduce
from contrastkit.losses._common import (
    Reduction,
    check_positive,
    check_reduction,
    full_precision,
    pair_views,
    prepare,
    reduce,
)


def gaussian_log_energy(z: Tensor, t: float) -> Tensor:
    """``[N, V]``: ``log Σ_{j != i} exp(-t ||z[i,v] - z[j,v]||²)`` within each view."""
    squared_norm = (z * z).sum(dim=-1)
    (rows,) = pair_reduce(
        z,
        [LogSumExp(PairMask.SAME_VIEW_NEGATIVES)],
        scale=2.0 * t,
        candidate_bias=-t * squared_norm,
    )
    return rows - t * squared_norm


def _power_of_distance(difference: Tensor, alpha: float) -> Tensor:
    """``||difference||^alpha`` with a zero (not NaN or inf) gradient where the distance is 0."""
    squared = difference.pow(2).sum(dim=-1)
    positive = squared > 0
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, safe.pow(alpha / 2), torch.zeros_like(squared))


@full_precision
def alignment(
    z: Tensor,
    *,
    alpha: float = 2.0,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Alignment (Wang & Isola, ICML 2020): ``loss_i = mean_{a<b} ||z[i,a] - z[i,b]||^alpha``."""
    check_positive(alpha, name="alpha", loss="alignment")
    check_reduction(reduction, loss="alignment")
    z = prepare(z, loss="alignment", normalize=normalize, min_instances=1)
    distances = [_power_of_distance(z[:, a] - z[:, b], alpha) for a, b in pair_views(z.shape[1])]
    return reduce(torch.stack(distances, dim=1).mean(dim=1), reduction)


@full_precision
def uniformity(
    z: Tensor,
    *,
    t: float = 2.0,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Uniformity (Wang & Isola, ICML 2020), per view and averaged over views:

        U_v = log mean_{i != j} exp(-t ||z[i,v] - z[j,v]||²)         (lower = more uniform)

    ``reduction="mean"`` returns ``mean_v U_v``. ``reduction="none"`` returns the per-instance
    ``mean_v log mean_{j != i} exp(-t ||z[i,v] - z[j,v]||²)`` (its mean is not ``U``: the log
    is taken per row). V >= 1.
    """
    check_positive(t, name="t", loss="uniformity")
    check_reduction(reduction, loss="uniformity")
    if local_anchor_range() is not None:
        raise ValueError(
            "uniformity: the batch value log-means over all pairs, not a mean of per-instance "
            "terms, so it has no local-anchor form; compute it on the gathered batch"
        )
    z = prepare(z, loss="uniformity", normalize=normalize, min_views=1)
    n = z.shape[0]
    rows = gaussian_log_energy(z, t)
    if reduction == "none":
        return (rows - math.log(n - 1)).mean(dim=1)
    per_view = rows.logsumexp(dim=0) - math.log(n * (n - 1))
    return per_view.mean()


uniformity.per_instance_mean = False  # type: ignore[attr-defined]  # see local_loss


@full_precision
def kcl(
    z: Tensor,
    *,
    t: float = 2.0,
    gamma: float = 16.0,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Kernel Contrastive Loss with the Gaussian kernel (Koromilas et al., ICML 2024), V = 2:

        loss_i = -2 exp(-t ||z[i,0] - z[i,1]||²)
                 + gamma * Σ_v mean_{j != i} exp(-t ||z[i,v] - z[j,v]||²)

    Its batch mean equals the official ``-alignment + gamma * energy``.
    """
    check_positive(t, name="t", loss="kcl")
    check_positive(gamma, name="gamma", loss="kcl")
    check_reduction(reduction, loss="kcl")
    z = prepare(z, loss="kcl", normalize=normalize, min_views=2, max_views=2)
    n = z.shape[0]
    aligned = torch.exp(-t * (z[:, 0] - z[:, 1]).pow(2).sum(dim=-1))
    energy = torch.exp(gaussian_log_energy(z, t) - math.log(n - 1)).sum(dim=1)
    return reduce(-2.0 * aligned + gamma * energy, reduction)
