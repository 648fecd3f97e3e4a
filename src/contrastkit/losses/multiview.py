"""Multi-view baselines compared in the MV-InfoNCE / MV-DHEL paper: PVC and AVG.

(The third baseline, PWE, is :func:`contrastkit.losses.info_nce` with V > 2.)
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from contrastkit.core import LogSumExp, PairMask, pair_reduce, within_instance_logits
from contrastkit.losses._common import (
    Reduction,
    check_choice,
    check_positive,
    check_reduction,
    full_precision,
    prepare,
    reduce,
)
from contrastkit.losses.infonce import pairwise_infonce_terms


@full_precision
def pvc(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    aggregation: Literal["geometric", "arithmetic"] = "geometric",
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Poly-View Contrastive loss (Shidani et al., ICLR 2024), as a baseline of Koromilas et al.

    For ordered views ``alpha != beta`` the anchor ``(i, alpha)`` has the single positive
    ``(i, beta)``; the other views of instance ``i`` are left out of its denominator:

        CE(i,alpha,beta) = -s(ia, ib) + LSE_{c in {(i,beta)} ∪ {(j,m): j != i}} s(ia, c)
        geometric:  l(i,alpha) = mean_beta CE
        arithmetic: l(i,alpha) = -LSE_beta(-CE) + log(V - 1)
        loss_i = mean_alpha l(i,alpha)

    Difference from the official code: its arithmetic aggregation is
    ``LSE_beta(+CE) - log(batch size)`` over batch-averaged cross-entropies (note the sign inside
    the LSE); here it is per instance, ``-LSE_beta(-CE) + log(V - 1)``: minus the log of the
    arithmetic mean of the per-positive likelihoods ``exp(-CE)``, as the paper defines it.
    """
    check_positive(temperature, name="temperature", loss="pvc")
    check_reduction(reduction, loss="pvc")
    check_choice(aggregation, ("geometric", "arithmetic"), name="aggregation", loss="pvc")
    z = prepare(z, loss="pvc", normalize=normalize)
    scale = 1.0 / temperature
    v = z.shape[1]
    logits = within_instance_logits(z, scale=scale)  # [N, alpha, beta]
    (negatives,) = pair_reduce(z, [LogSumExp(PairMask.NEGATIVES)], scale=scale)  # [N, alpha]
    cross_entropy = torch.logaddexp(logits, negatives[:, :, None]) - logits
    off_diagonal = ~torch.eye(v, dtype=torch.bool, device=z.device)
    per_pair = cross_entropy[:, off_diagonal].reshape(-1, v, v - 1)
    if aggregation == "geometric":
        per_anchor = per_pair.mean(dim=2)
    else:
        per_anchor = -torch.logsumexp(-per_pair, dim=2) + math.log(v - 1)
    return reduce(per_anchor.mean(dim=1), reduction)


@full_precision
def avg_infonce(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """AVG multi-view baseline: each view against the mean of the other views, with NT-Xent.

    For every view ``v``, ``c[i] = mean_{u != v} z[i,u]`` (not re-normalised, as in the
    official code) and the two-view batch ``(z[:, v], c)`` gets the NT-Xent loss; the loss of
    instance ``i`` is the mean over ``v``.
    """
    check_positive(temperature, name="temperature", loss="avg_infonce")
    check_reduction(reduction, loss="avg_infonce")
    z = prepare(z, loss="avg_infonce", normalize=normalize)
    v = z.shape[1]
    total = z.sum(dim=1)
    per_view = []
    for view in range(v):
        others_mean = (total - z[:, view]) / (v - 1)
        pair = torch.stack([z[:, view], others_mean], dim=1)
        per_view.append(pairwise_infonce_terms(pair, scale=1.0 / temperature))
    return reduce(torch.stack(per_view, dim=1).mean(dim=1), reduction)
