"""Soft-positive objectives: SPACE-2's soft-mask SupCon and SAN's soft contrastive loss."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastkit.core import InstanceWeights, LogSumExp, PairMask, WeightedSum, pair_reduce
from contrastkit.losses._common import (
    Reduction,
    check_positive,
    check_reduction,
    full_precision,
    prepare,
    reduce,
)
from contrastkit.losses.infonce import _mean_over_anchors_with_positives


@full_precision
def soft_supcon(
    z: Tensor,
    scores: Tensor,
    *,
    temperature: float | Tensor = 0.07,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """SupCon with a real-valued positive mask (SPACE-2, He et al., COLING 2022).

    ``scores[i, j] >= 0`` is the semantic similarity of instances ``i`` and ``j`` (SPACE-2: the
    tree-overlap score of their dialog frames, in [0, 1]; the diagonal is 1, so the other dropout
    view of the same turn is a full positive). With ``M = scores[i, j]`` for ``(i,a) != (j,b)``:

        term(i,a) = LSE_{c != (i,a)} s(ia, c) - Σ_c M s(ia, c) / Σ_c M

    averaged per instance over anchors with ``Σ M > 0`` (same exclusion rule as
    :func:`~contrastkit.losses.supcon`). ``scores`` = same-label indicator gives ``supcon``.
    """
    check_positive(temperature, name="temperature", loss="soft_supcon")
    check_reduction(reduction, loss="soft_supcon")
    z = prepare(z, loss="soft_supcon", normalize=normalize, min_views=1)
    n = z.shape[0]
    if not isinstance(scores, Tensor) or not scores.is_floating_point():
        raise TypeError(
            f"soft_supcon: scores must be a floating-point tensor of shape [N, N] = [{n}, {n}]"
        )
    if scores.shape != (n, n):
        raise ValueError(
            f"soft_supcon: scores must have shape [N, N] = [{n}, {n}]; got {tuple(scores.shape)}"
        )
    if not bool(torch.isfinite(scores).all()) or bool((scores < 0).any()):
        raise ValueError("soft_supcon: scores must be finite and >= 0")
    weights = InstanceWeights(scores.to(device=z.device, dtype=z.dtype))
    denominator, (positive_sum, positive_total) = pair_reduce(
        z,
        [LogSumExp(PairMask.NOT_SELF), WeightedSum(PairMask.NOT_SELF, weights)],
        scale=1.0 / temperature,
    )
    return _mean_over_anchors_with_positives(
        denominator,
        positive_sum,
        positive_total,
        reduction,
        loss="soft_supcon",
        why="every score between different rows is 0",
    )


def _t_kernel(squared_distance: Tensor, nu: float, sigma: float) -> Tensor:
    """SAN's Student-t kernel ``C(nu)² · 2 · 3.14 · (1 + d/(sigma nu))^-(nu+1)`` (log-space)."""
    log_c = math.lgamma((nu + 1) / 2) - 0.5 * math.log(nu * math.pi) - math.lgamma(nu / 2)
    log_k = 2 * log_c + math.log(2 * 3.14) - (nu + 1) * torch.log1p(squared_distance / (sigma * nu))
    return torch.exp(log_k)


def _symmetrize(p: Tensor) -> Tensor:
    return p + p.T - p * p.T


def _squared_distances(x: Tensor) -> Tensor:
    squared_norm = (x * x).sum(dim=-1)
    return (squared_norm[:, None] + squared_norm[None, :] - 2.0 * x @ x.T).clamp(min=0.0)


@full_precision
def soft_contrastive(
    z: Tensor,
    h: Tensor,
    *,
    nu_input: float = 100.0,
    nu_latent: float = 10.0,
    sigma_p: float = 10.0,
    sigma_q: float = 1.0,
    aug_near_rate: float = 10000.0,
    detach_input: bool = False,
    normalize: bool = False,
    reduction: Reduction = "mean",
) -> Tensor:
    """SAN's soft contrastive loss (Zang et al., ICCV 2023; official ``MyLoss``).

    Soft targets ``P`` from input-space distances of the view-0 features ``h`` through a
    heavy-tailed t-kernel; latent similarities ``Q`` of the two latent views ``z`` through a
    second t-kernel; a two-way cross-entropy between them over all ``(2N)²`` pairs (diagonal
    zeroed). Augmented pairs get a tiny synthetic distance (nearest-neighbour distance /
    ``aug_near_rate``), so their target is close to 1. Not a softmax loss; dense ``[2N, 2N]``.

    Args:
        z: ``[N, 2, Dz]`` latents (not normalised by default, as in SAN).
        h: ``[N, Dh]`` input-space (backbone) features of view 0.
        detach_input: stop gradients through the targets (the official code does not).
    """
    for name, value in (
        ("nu_input", nu_input),
        ("nu_latent", nu_latent),
        ("sigma_p", sigma_p),
        ("sigma_q", sigma_q),
        ("aug_near_rate", aug_near_rate),
    ):
        check_positive(value, name=name, loss="soft_contrastive")
    check_reduction(reduction, loss="soft_contrastive")
    z = prepare(z, loss="soft_contrastive", normalize=normalize, min_views=2, max_views=2)
    n = z.shape[0]
    if not isinstance(h, Tensor) or not h.is_floating_point():
        raise TypeError(
            f"soft_contrastive: h must be a floating-point tensor of shape [N, Dh] = [{n}, Dh]"
        )
    if h.dim() != 2 or h.shape[0] != n:
        raise ValueError(
            f"soft_contrastive: h must have shape [N, Dh] with N = {n} (instances of z); "
            f"got {tuple(h.shape)}"
        )
    if not bool(torch.isfinite(h).all()):
        raise ValueError("soft_contrastive: h contains NaN or Inf values")
    dtype = torch.promote_types(z.dtype, h.dtype)
    z, h = z.to(dtype), h.to(dtype)
    if detach_input:
        h = h.detach()

    d = _squared_distances(h)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    nearest = d.masked_fill(eye, float("inf")).min(dim=0).values / aug_near_rate  # [N], per column
    top = torch.cat([d, d + nearest[None, :]], dim=1)
    bottom = torch.cat([d + nearest[:, None], d + nearest[None, :] + nearest[:, None]], dim=1)
    input_d = torch.cat([top, bottom], dim=0)
    latent = torch.cat([z[:, 0], z[:, 1]], dim=0)
    p = _symmetrize(_t_kernel(input_d, nu_input, sigma_p))
    q = _symmetrize(_t_kernel(_squared_distances(latent), nu_latent, sigma_q))
    entries = -(p * torch.log(q + 1e-12) + (1 - p) * torch.log(1 - q + 1e-12))
    entries = entries.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), 0.0)
    rows = entries.mean(dim=1)
    return reduce((rows[:n] + rows[n:]) / 2, reduction)
