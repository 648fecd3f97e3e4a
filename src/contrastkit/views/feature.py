"""Feature-space views: positive extrapolation and negative interpolation.

Zhu et al., "Improving Contrastive Learning by Visualizing Feature Transformation", ICCV 2021
(official code: ``RGBMoCo_dropmix_norm``). Both act on embeddings, so they cost no extra
forward pass. With the README recipe:

    lam_pos ~ 1 + Beta(pos_alpha, pos_alpha)              (in [1, 2])
    q' = lam_pos q + (1 - lam_pos) k,   k' = lam_pos k + (1 - lam_pos) q     (extrapolation)
    lam_neg ~ Beta(neg_alpha, neg_alpha)                  (in [0, 1])
    Q' = lam_neg Q + (1 - lam_neg) Q[randperm]                                (interpolation)

No re-normalisation afterwards unless asked (official default). Update the MoCo queue with the
original keys, never the mixed ones. :func:`score_stats` gives the positive/negative score
statistics the paper plots.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _beta(
    alpha: float, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Beta(alpha, alpha) samples from two Gamma draws (so a ``generator`` can be used)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0; got {alpha}")
    concentration = torch.full(shape, float(alpha), dtype=torch.float64)
    if generator is None:
        a = torch._standard_gamma(concentration)
        b = torch._standard_gamma(concentration)
    else:
        # torch._standard_gamma takes no generator: draw from a fork of the generator's state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            a = torch._standard_gamma(concentration)
            b = torch._standard_gamma(concentration)
    return (a / (a + b)).to(device=like.device, dtype=like.dtype)


def _check_pair(q: Tensor, k: Tensor) -> None:
    if not isinstance(q, Tensor) or not isinstance(k, Tensor):
        raise TypeError("q and k must be tensors of shape [B, D]")
    if q.dim() != 2 or q.shape != k.shape:
        raise ValueError(
            f"q and k must both have shape [B, D]; got {tuple(q.shape)} and {tuple(k.shape)}"
        )


def pos_extrapolate(
    q: Tensor,
    k: Tensor,
    *,
    alpha: float = 2.0,
    per_dim: bool = False,
    lam: Tensor | float | None = None,
    renormalize: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Harder positives: push ``q`` and ``k`` ([B, D]) apart along their difference.

    ``lam = 1 + Beta(alpha, alpha)``: one scalar per call, or one per element with
    ``per_dim=True`` (official ``dim_mask``). Pass ``lam`` to fix it (``lam = 1`` is the identity).
    Gradients flow through both inputs (detach ``k`` yourself for MoCo).
    """
    _check_pair(q, k)
    if lam is None:
        lam = 1.0 + _beta(alpha, tuple(q.shape) if per_dim else (), q, generator)
    q_new = lam * q + (1 - lam) * k
    k_new = lam * k + (1 - lam) * q
    if renormalize:
        q_new, k_new = F.normalize(q_new, dim=-1), F.normalize(k_new, dim=-1)
    return q_new, k_new


def neg_interpolate(
    queue: Tensor,
    *,
    alpha: float = 1.6,
    per_dim: bool = False,
    lam: Tensor | float | None = None,
    renormalize: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """More diverse negatives: mix each negative of ``queue`` ([K, D]) with a random other one.

    ``lam ~ Beta(alpha, alpha)``; returns a new tensor (the stored queue is never modified).
    """
    if not isinstance(queue, Tensor) or queue.dim() != 2:
        raise ValueError(f"queue must have shape [K, D]; got {getattr(queue, 'shape', None)}")
    if lam is None:
        lam = _beta(alpha, tuple(queue.shape) if per_dim else (), queue, generator)
    perm = torch.randperm(queue.shape[0], generator=generator).to(queue.device)
    mixed = lam * queue + (1 - lam) * queue[perm]
    return F.normalize(mixed, dim=-1) if renormalize else mixed


def score_stats(
    q: Tensor, k: Tensor, queue: Tensor, *, temperature: float = 0.2
) -> dict[str, Tensor]:
    """Per-query score statistics plotted in the paper (raw dot products, ``[B]`` each):
    positive score, mean and variance of the negative scores, ``exp(pos/T)`` and
    ``mean exp(neg/T)``."""
    _check_pair(q, k)
    positive = (q * k).sum(dim=-1)
    negatives = q @ queue.T
    return {
        "pos": positive,
        "neg_mean": negatives.mean(dim=1),
        "neg_var": negatives.var(dim=1, unbiased=False),
        "exp_pos": torch.exp(positive / temperature),
        "exp_neg_mean": torch.exp(
            torch.logsumexp(negatives / temperature, dim=1) - math.log(negatives.shape[1])
        ),
    }
