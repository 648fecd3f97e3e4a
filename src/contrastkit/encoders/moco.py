"""MoCo v2 InfoNCE against a queue of negatives, with the optional Feature Transformation.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020;
Chen et al., "Improved Baselines with Momentum Contrastive Learning" (MoCo v2), 2020;
Zhu et al., "Improving Contrastive Learning by Visualizing Feature Transformation", ICCV 2021.

This is an anchor-vs-external-negatives loss (queries, their keys, a stored queue), not one of
the ``z [N, V, D]`` losses of :mod:`contrastkit.losses`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.core import LogSumExp, PairMask, RowIds, dense_pair_reduce
from contrastkit.views.feature import neg_interpolate, pos_extrapolate, score_stats

FTOption = float | Mapping[str, Any] | None


def _ft_kwargs(option: FTOption, name: str) -> dict[str, Any] | None:
    if option is None:
        return None
    if isinstance(option, Mapping):
        return dict(option)
    if isinstance(option, bool) or not isinstance(option, (int, float)):
        raise TypeError(f"moco_loss: {name} must be None, an alpha or a mapping; got {option!r}")
    return {"alpha": float(option)}


def moco_loss(
    q: Tensor,
    k: Tensor,
    queue_features: Tensor,
    *,
    temperature: float = 0.2,
    pos_extrapolation: FTOption = None,
    neg_interpolation: FTOption = None,
    normalize: bool = True,
    reduction: Literal["mean", "none"] = "mean",
    return_stats: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """MoCo v2 InfoNCE: the key ``k_i`` is the positive of the query ``q_i``, the queue rows are
    the negatives.

        logits_i = [<q_i, k_i>, q_i · Q^T] / temperature          ([B, 1 + K])
        loss_i   = CE(logits_i, 0) = LSE(logits_i) − <q_i, k_i> / temperature

    The log-sum-exp over the queue is the core's (:func:`contrastkit.core.dense_pair_reduce`),
    in at least float32.

    ``k`` is detached (the key encoder gets no gradient); gradients flow into ``q`` only.
    ``queue_features`` is never modified (and detached).

    Feature Transformation (Zhu et al.), applied after the normalisation of ``q`` and ``k``:

    * ``pos_extrapolation``: ``q̂ = λ q + (1 − λ) k``, ``k̂ = λ k + (1 − λ) q`` with
      ``λ = 1 + Beta(α, α)`` (paper: ``α = 2.0``), by
      :func:`contrastkit.views.feature.pos_extrapolate`. ``k̂`` contains ``q``, so gradient also
      reaches ``q`` through the positive logit, as in the official code.
    * ``neg_interpolation``: ``Q̂ = λ Q + (1 − λ) Q[perm]`` with ``λ ~ Beta(α, α)`` (paper:
      ``α = 1.6``) on a copy of the queue, by :func:`contrastkit.views.feature.neg_interpolate`.

    Each option is ``None`` (off), a float ``α``, or a mapping of keyword arguments for the
    function (``alpha``, ``per_dim``, ``lam``, ``renormalize``), e.g. ``{"lam": 1.0}`` for a fixed
    (identity) transform. As in the official code the mixed features are not re-normalised
    unless ``renormalize=True`` is passed. ``generator`` drives the random draws.

    **Queue update**: after the step, enqueue the ORIGINAL keys ``normalize(k)`` (gathered over
    processes), never the transformed ``k̂``, e.g. ``queue.enqueue(k)`` with the key-encoder
    output. (The official single-GPU path enqueues the mixed key; its multi-GPU path, which
    produced the reported numbers, enqueues the original gathered keys.)

    Args:
        q: ``[B, D]`` queries (online encoder, with gradient).
        k: ``[B, D]`` keys (momentum encoder).
        queue_features: ``[K, D]`` negatives (e.g. ``FeatureQueue.features``), unit-norm.
        temperature: softmax temperature (MoCo v2: 0.2; MoCo v1: 0.07).
        normalize: L2-normalise ``q`` and ``k`` first (default True; the queue is used as is).
        reduction: ``"mean"`` (scalar) or ``"none"`` (``[B]``).
        return_stats: also return :func:`contrastkit.views.feature.score_stats` of the features
            that entered the logits (after the transformation, as the FT code logs them),
            detached: ``pos``, ``neg_mean``, ``neg_var``, ``exp_pos``, ``exp_neg_mean``, each
            ``[B]``.

    Returns:
        the loss, or ``(loss, stats)`` with ``return_stats=True``.
    """
    if isinstance(temperature, bool) or not float(temperature) > 0:
        raise ValueError(f"moco_loss: temperature must be > 0; got {temperature!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"moco_loss: reduction must be 'mean' or 'none'; got {reduction!r}")
    if q.dim() != 2 or q.shape != k.shape:
        raise ValueError(
            f"moco_loss: q and k must both be [B, D]; got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if queue_features.dim() != 2 or queue_features.shape[1] != q.shape[1]:
        raise ValueError(
            f"moco_loss: queue_features must be [K, {q.shape[1]}]; "
            f"got {tuple(queue_features.shape)}"
        )
    pos_kwargs = _ft_kwargs(pos_extrapolation, "pos_extrapolation")
    neg_kwargs = _ft_kwargs(neg_interpolation, "neg_interpolation")

    dtype = torch.promote_types(q.dtype, torch.float32)
    q = q.to(dtype)
    k = k.detach().to(dtype)
    queue = queue_features.detach().to(device=q.device, dtype=dtype)
    if normalize:
        q = F.normalize(q, dim=1)
        k = F.normalize(k, dim=1)
    if pos_kwargs is not None:
        q, k = pos_extrapolate(q, k, generator=generator, **pos_kwargs)
    if neg_kwargs is not None:
        queue = neg_interpolate(queue, generator=generator, **neg_kwargs)

    # The queue part goes through the library's core: every queue row is a negative of every
    # query (queue rows get instance ids after the batch's, so no pair is a positive).
    b = q.shape[0]
    query_ids = RowIds(
        torch.arange(b, device=q.device), torch.zeros(b, dtype=torch.long, device=q.device)
    )
    queue_ids = RowIds(
        torch.arange(b, b + queue.shape[0], device=q.device),
        torch.ones(queue.shape[0], dtype=torch.long, device=q.device),
    )
    (negatives,) = dense_pair_reduce(
        q, queue, query_ids, queue_ids, [LogSumExp(PairMask.NEGATIVES)], scale=1.0 / temperature
    )
    positive = (q * k).sum(dim=1) / temperature
    per_query = torch.logaddexp(positive, negatives) - positive
    loss = per_query.mean() if reduction == "mean" else per_query
    if not return_stats:
        return loss
    with torch.no_grad():
        stats = score_stats(q.detach(), k.detach(), queue, temperature=temperature)
    return loss, stats
