"""Contrastive Attraction and Contrastive Repulsion (CACR; Zheng et al., TMLR 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.core import PairMask, SoftmaxMean, pair_reduce
from contrastkit.losses._common import (
    Reduction,
    check_positive,
    check_reduction,
    full_precision,
    pair_views,
    prepare,
    reduce,
)


@full_precision
def cacr(
    z: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    tau_pos: float = 1.0,
    tau_neg: float = 1.0,
    detach_weights: bool = False,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """CACR, small-scale form (official ``our_loss1`` + ``our_loss2``), with d² = squared L2:

        attraction_i = mean_x Σ_{k != x} softmax_k(tau_pos d²(ix, ik)) · alpha d²(ix, ik)
        repulsion_i  = mean_{x<y} Σ_{j != i} softmax_j(-tau_neg d²(ix, jy)) · (-beta d²(ix, jy))
        loss_i = attraction_i + repulsion_i

    Attraction weighs distant positives more; repulsion weighs close negatives more. The
    official small-scale code does not detach the conditional weights (``detach_weights=False``);
    its ImageNet code does. ``tau_neg`` per dataset in the paper: CIFAR-10 0.9, CIFAR-100 and
    STL-10 2.0. Views: ``V = Ny + 1`` (paper: 5).
    """
    for name, value in (
        ("alpha", alpha),
        ("beta", beta),
        ("tau_pos", tau_pos),
        ("tau_neg", tau_neg),
    ):
        check_positive(value, name=name, loss="cacr")
    check_reduction(reduction, loss="cacr")
    z = prepare(z, loss="cacr", normalize=normalize)
    v = z.shape[1]
    squared_norm = (z * z).sum(dim=-1)  # [N, V]

    within = (
        squared_norm[:, :, None]
        + squared_norm[:, None, :]
        - 2.0 * torch.einsum("nad,nbd->nab", z, z)
    ).clamp(min=0.0)
    off_diagonal = ~torch.eye(v, dtype=torch.bool, device=z.device)
    positive_d2 = within[:, off_diagonal].reshape(-1, v, v - 1)  # [N, x, k != x]
    weights = torch.softmax(tau_pos * positive_d2, dim=2)
    if detach_weights:
        weights = weights.detach()
    attraction = (weights * alpha * positive_d2).sum(dim=2).mean(dim=1)

    # -tau_neg d²(ix, jy) = 2 tau_neg <ix, jy> - tau_neg |jy|² - tau_neg |ix|²: the softmax over j
    # ignores the anchor term; E[d²] = |ix|² - E[logit] / tau_neg.
    repulsion = torch.zeros_like(attraction)
    pairs = pair_views(v)
    for x, y in pairs:
        ((expected_logit, _),) = pair_reduce(
            z,
            [SoftmaxMean(PairMask.NEGATIVES, detach_weights=detach_weights)],
            scale=2.0 * tau_neg,
            anchor_views=(x,),
            candidate_views=(y,),
            candidate_bias=-tau_neg * squared_norm,
        )
        expected_d2 = squared_norm[:, x] - expected_logit[:, 0] / tau_neg
        repulsion = repulsion - beta * expected_d2
    return reduce(attraction + repulsion / len(pairs), reduction)
