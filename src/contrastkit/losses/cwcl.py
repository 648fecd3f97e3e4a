"""CWCL: continuously weighted contrastive loss (Srinivasa et al., NeurIPS 2023)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from contrastkit.core import CosineWeights, LogSumExp, PairMask, WeightedSum, pair_reduce
from contrastkit.losses._common import (
    Reduction,
    check_positive,
    check_reduction,
    full_precision,
    prepare,
    reduce,
)


@full_precision
def cwcl(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.07,
    symmetric: bool = True,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Cross-modal contrastive loss with continuous positive weights from a frozen modality.

    ``z[:, 0]`` is the frozen (teacher) modality ``p``, ``z[:, 1]`` the trained modality ``q``.
    Pair weights come from the frozen modality only and carry no gradient:

        w_ij = <p̄_i, p̄_j> / 2 + 1/2   (p̄ = L2-normalised p),    w̃_ij = w_ij / Σ_k w_ik
        u2v_i = LSE_j s(p_i, q_j) - Σ_j w̃_ij s(p_i, q_j)
        v2u_i = LSE_j s(q_i, p_j) - Σ_j w̃_ij s(q_i, p_j)
        loss_i = (u2v_i + v2u_i) / 2   if symmetric else u2v_i

    i.e. the cross-entropy between the weight distribution and the softmax over the other
    modality; with ``w = I`` it is the CLIP loss. Whether the paper weights the V->U direction
    too could not be verified (no official code); ``symmetric=False`` gives the U->V loss only.
    ``temperature`` 0.07 is CLIP's initial value (the paper's value is unpublished).
    """
    check_positive(temperature, name="temperature", loss="cwcl")
    check_reduction(reduction, loss="cwcl")
    z = prepare(z, loss="cwcl", normalize=normalize, min_views=2, max_views=2)
    frozen = F.normalize(z[:, 0].detach(), dim=-1)
    anchor_views = (0, 1) if symmetric else (0,)
    denominator, (weighted_sum, weight_total) = pair_reduce(
        z,
        [LogSumExp(PairMask.OTHER_VIEW), WeightedSum(PairMask.OTHER_VIEW, CosineWeights(frozen))],
        scale=1.0 / temperature,
        anchor_views=anchor_views,
    )
    per_direction = denominator - weighted_sum / weight_total
    return reduce(per_direction.mean(dim=1), reduction)
