"""Decoupled losses: the positive pair is not in the denominator (DCL, DCLW, DHEL, MV-DHEL)."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.core import LogSumExp, PairMask, pair_reduce, within_instance_logits
from contrastkit.losses._common import (
    Reduction,
    check_positive,
    check_reduction,
    full_precision,
    prepare,
    reduce,
)


@full_precision
def dcl(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Decoupled Contrastive Learning (Yeh et al., ECCV 2022), symmetric over the two views.

        term(i, k) = -s(ik, io) + LSE_{(j,m): j != i} s(ik, jm)      (o = 1 - k)
        loss_i = (term(i,0) + term(i,1)) / 2

    One log-sum-exp over the union of the 2(N-1) same-view and cross-view negatives; the
    positive is not in the denominator (no negative-positive coupling). The loss can be < 0.

    Args:
        z: ``[N, 2, D]`` embeddings, N >= 2.
        temperature: ``tau`` > 0 (default 0.1, as lightly and the reference code).
    """
    return _dcl_family(z, temperature, None, True, normalize, reduction, loss="dcl")


@full_precision
def dclw(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    sigma: float = 0.5,
    detach_weight: bool = True,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Weighted DCL (DCLW): the positive logit of instance ``i`` is weighted by

        w_i = 2 - N * softmax_i(<z[i,0], z[i,1]> / sigma)        (softmax over the batch)

    so that ``mean_i w_i = 1`` and harder (less similar) positives weigh more. The weight is
    detached by default (as lightly; the raminnakhli code does not detach).
    """
    check_positive(sigma, name="sigma", loss="dclw")
    return _dcl_family(z, temperature, sigma, detach_weight, normalize, reduction, loss="dclw")


def _dcl_family(
    z: Tensor,
    temperature: float | Tensor,
    sigma: float | None,
    detach_weight: bool,
    normalize: bool,
    reduction: Reduction,
    *,
    loss: str,
) -> Tensor:
    check_positive(temperature, name="temperature", loss=loss)
    check_reduction(reduction, loss=loss)
    z = prepare(z, loss=loss, normalize=normalize, min_views=2, max_views=2)
    scale = 1.0 / temperature
    positive = within_instance_logits(z, scale=scale)[:, 0, 1]
    if sigma is not None:
        similarity = (z[:, 0] * z[:, 1]).sum(dim=-1)
        weight = 2.0 - z.shape[0] * torch.softmax(similarity / sigma, dim=0)
        if detach_weight:
            weight = weight.detach()
        positive = weight * positive
    (negatives,) = pair_reduce(z, [LogSumExp(PairMask.NEGATIVES)], scale=scale)
    per_instance = negatives.mean(dim=1) - positive
    return reduce(per_instance, reduction)


@full_precision
def mv_dhel(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """MV-DHEL (Koromilas et al., 2025): decoupled multi-view hyperspherical energy loss.

        pos_i  = LSE_{l < l'} s(il, il')                  (unordered view pairs)
        unif_i = Σ_l LSE_{j != i} s(il, jl)               (within-view energies, self excluded)
        loss_i = unif_i - pos_i

    The official code divides by a product of sums of ``exp`` (overflows fp32 for tau = 0.1 and
    V >= ~8); this is the same quantity as a sum of log-sum-exps. Equals :func:`dhel` at V = 2.
    Costs ``O(V N² D)`` rather than ``O(V² N² D)``.

    Args:
        z: ``[N, V, D]``, V >= 2.
        temperature: ``tau`` (default 0.1, the official CLI default; the class default is 0.2).
    """
    check_positive(temperature, name="temperature", loss="mv_dhel")
    check_reduction(reduction, loss="mv_dhel")
    z = prepare(z, loss="mv_dhel", normalize=normalize)
    return reduce(_dhel_terms(z, 1.0 / temperature, uniformity_views=None), reduction)


@full_precision
def dhel(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.3,
    include_augs: bool = True,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """DHEL, decoupled hyperspherical energy loss (Koromilas et al., ICML 2024), two views:

    loss_i = -s(i0, i1) + LSE_{j != i} s(i0, j0) + [include_augs] LSE_{j != i} s(i1, j1)
    """
    check_positive(temperature, name="temperature", loss="dhel")
    check_reduction(reduction, loss="dhel")
    z = prepare(z, loss="dhel", normalize=normalize, min_views=2, max_views=2)
    views = None if include_augs else (0,)
    return reduce(_dhel_terms(z, 1.0 / temperature, uniformity_views=views), reduction)


def _dhel_terms(
    z: Tensor, scale: float | Tensor, *, uniformity_views: tuple[int, ...] | None
) -> Tensor:
    v = z.shape[1]
    logits = within_instance_logits(z, scale=scale)
    upper = torch.triu(torch.ones(v, v, dtype=torch.bool, device=z.device), diagonal=1)
    positive = logits[:, upper].logsumexp(dim=1)
    (within_view,) = pair_reduce(
        z, [LogSumExp(PairMask.SAME_VIEW_NEGATIVES)], scale=scale, anchor_views=uniformity_views
    )
    return within_view.sum(dim=1) - positive
