"""Sigmoid pairwise loss: SigLIP (Zhai et al., ICCV 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

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
def siglip(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    bias: float | Tensor = -10.0,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """SigLIP: every (i, j) pair is an independent binary classification.

        logit_ij = <z[i,a], z[j,b]> / temperature + bias,   sign_ij = +1 if i == j else -1
        loss_i = mean_{a<b} ( -Σ_j log sigmoid(sign_ij · logit_ij) )

    The mean over instances is the paper's ``(1/N) Σ_ij`` for V = 2. Defaults are the paper's
    initial values (``t' = log 10`` i.e. temperature 0.1, ``b = -10``); to learn them, use
    :class:`contrastkit.losses.SigLIP` (learnable parameters) or pass tensors.
    Not a softmax loss, so it does not go through the log-sum-exp core.
    """
    check_positive(temperature, name="temperature", loss="siglip")
    check_reduction(reduction, loss="siglip")
    z = prepare(z, loss="siglip", normalize=normalize)
    n = z.shape[0]
    sign = 2.0 * torch.eye(n, dtype=z.dtype, device=z.device) - 1.0
    rows = []
    for a, b in pair_views(z.shape[1]):
        logits = (z[:, a] @ z[:, b].T) / temperature + bias
        rows.append(-F.logsigmoid(sign * logits).sum(dim=1))
    return reduce(torch.stack(rows, dim=1).mean(dim=1), reduction)
