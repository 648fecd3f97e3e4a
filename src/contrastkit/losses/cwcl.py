"""CWCL: continuously weighted contrastive loss (Srinivasa et al., NeurIPS 2023)."""

from __future__ import annotations

import torch
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


def cwcl_multimodal(
    z: Tensor,
    *,
    frozen: int = 0,
    temperature: float | Tensor = 0.07,
    symmetric: bool = True,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """CWCL for ``M >= 2`` modalities: one frozen modality ``f`` weights every trainable one.

        loss_i = mean_{m != f} cwcl(z[:, [f, m]])_i

    i.e. :func:`cwcl` (pair weights from the frozen modality only, no gradient) between the
    frozen modality and each trainable modality ``m``, averaged over the ``M - 1`` trainable
    modalities (the mean, so that ``M = 2`` is exactly :func:`cwcl`; the sum is ``(M - 1)``
    times it). Trainable modalities are not contrasted with each other: they meet only through
    the frozen space.

    Args:
        z: ``[N, M, D]``, ``M >= 2``; ``z[:, frozen]`` is the frozen (teacher) modality.
        frozen: index of the frozen modality (default 0).
        temperature, symmetric, normalize, reduction: as :func:`cwcl` (default 0.07, True).

    Reference: Srinivasa et al., "CWCL: Cross-Modal Transfer with Continuously Weighted
    Contrastive Loss", NeurIPS 2023 (two modalities; the mean over trainable modalities is ours).
    """
    check_reduction(reduction, loss="cwcl_multimodal")
    if not isinstance(z, Tensor) or z.dim() != 3:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"cwcl_multimodal: z must have shape [N, M, D]; got {shape}")
    m = z.shape[1]
    if m < 2:
        raise ValueError(f"cwcl_multimodal: z must hold M >= 2 modalities; got M={m}")
    if isinstance(frozen, bool) or not isinstance(frozen, int) or not 0 <= frozen < m:
        raise ValueError(f"cwcl_multimodal: frozen must be an int in [0, {m}); got {frozen!r}")
    per_modality = [
        cwcl(
            z[:, [frozen, other]],
            temperature=temperature,
            symmetric=symmetric,
            normalize=normalize,
            reduction=reduction,
        )
        for other in range(m)
        if other != frozen
    ]
    return torch.stack(per_modality).mean(dim=0)
