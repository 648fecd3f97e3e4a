"""SimCSE's loss (Gao et al., EMNLP 2021): one-directional InfoNCE with hard negatives."""

from __future__ import annotations

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
def simcse(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.05,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """SimCSE: anchors ``z[:, 0]``, positives ``z[:, 1]``, hard negatives ``z[:, 2:]``.

        loss_i = LSE_{j, v >= 1} s(z[i,0], z[j,v]) - s(z[i,0], z[i,1]),   s(x, y) = <x, y> / tau

    Only view 0 anchors (SimCSE's ``CE(cos(z1, z2ᵀ) / τ, arange)``, one direction); every row
    of the other views is a candidate: the ``N`` positives (in-batch negatives) and, with
    ``V = 3``, the ``N`` hard negatives (supervised SimCSE: the NLI contradiction; each
    anchor's own hard negative included). With ``V = 2`` it is unsupervised SimCSE (the two
    views are two dropout masks of one sentence). SimCSE's ``hard_negative_weight`` (default 0)
    is not offered.

    Args:
        z: ``[N, V, D]``, N >= 2, V >= 2.
        temperature: tau > 0 (SimCSE: 0.05).
        normalize: cosine logits (SimCSE's ``Similarity``).
        reduction: ``"mean"`` or ``"none"`` (``[N]``).
    """
    check_positive(temperature, name="temperature", loss="simcse")
    check_reduction(reduction, loss="simcse")
    z = prepare(z, loss="simcse", normalize=normalize)
    scale = 1.0 / temperature
    (denominator,) = pair_reduce(
        z,
        [LogSumExp(PairMask.OTHER_VIEW)],
        scale=scale,
        anchor_views=(0,),
        candidate_views=tuple(range(1, z.shape[1])),
    )
    positive = within_instance_logits(z[:, :2], scale=scale)[:, 0, 1]
    return reduce(denominator[:, 0] - positive, reduction)
