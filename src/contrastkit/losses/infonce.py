"""InfoNCE family: NT-Xent / CLIP (pairwise), MV-InfoNCE, hard-negative InfoNCE, SupCon.

All of them are "log-sum-exp over a denominator set minus the positive logit(s)", computed by
:func:`contrastkit.core.pair_reduce` from :class:`~contrastkit.core.PairMask` sets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.core import LogSumExp, PairMask, WeightedSum, pair_reduce, within_instance_logits
from contrastkit.losses._common import (
    Reduction,
    check_labels,
    check_positive,
    check_reduction,
    full_precision,
    pair_views,
    prepare,
    reduce,
    reduce_valid,
)


def pairwise_infonce_terms(
    z: Tensor,
    *,
    scale: float | Tensor,
    same_view_negatives: bool = True,
    top_k: int | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Per-instance NT-Xent / CLIP value averaged over all view pairs and both directions.

    ``z`` is ``[N, V, D]`` in the compute dtype (already normalised if wanted). For the view pair
    ``(a, b)`` the anchor ``(i, a)`` has positive ``(i, b)`` and denominator ``D(i, a)``:
    every row of views ``a, b`` except itself (``same_view_negatives=True``) or every row of view
    ``b`` (``False``). With ``top_k`` the denominator keeps the positive and the ``top_k`` largest
    negative logits (Wang & Liu's hard contrastive loss). ``label_smoothing`` ``ε`` (CLIP form
    only, checked by the caller) adds ``ε (s_pos - mean_{c in D} s)`` to each term, the mean from
    a unit-weight :class:`WeightedSum` over the same set. Returns ``[N]``.
    """
    n, v, _ = z.shape
    positive_logits = within_instance_logits(z, scale=scale)
    total = torch.zeros(n, dtype=z.dtype, device=z.device)
    for a, b in pair_views(v):
        if top_k is None:
            mask = PairMask.NOT_SELF if same_view_negatives else PairMask.OTHER_VIEW
            terms = [LogSumExp(mask)] + ([WeightedSum(mask)] if label_smoothing else [])
            denominator, *smoothing = pair_reduce(
                z, terms, scale=scale, anchor_views=(a, b), candidate_views=(a, b)
            )
            if smoothing:  # (1-ε)(LSE - s_pos) + ε(LSE - mean s) = LSE - s_pos + ε(s_pos - mean s)
                logit_sum, count = smoothing[0]
                mean_logit = logit_sum / count
                total = total + label_smoothing * (positive_logits[:, a, b] - mean_logit[:, 0])
                total = total + label_smoothing * (positive_logits[:, b, a] - mean_logit[:, 1])
        else:
            (negatives,) = pair_reduce(
                z,
                [LogSumExp(PairMask.NEGATIVES, top_k=top_k)],
                scale=scale,
                anchor_views=(a, b),
                candidate_views=(a, b),
            )
            positive = positive_logits[:, a, b][:, None].expand(n, 2)
            denominator = torch.logaddexp(negatives, positive)
        total = total + (denominator[:, 0] - positive_logits[:, a, b])
        total = total + (denominator[:, 1] - positive_logits[:, b, a])
    return total / (v * (v - 1))


@full_precision
def info_nce(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    same_view_negatives: bool = True,
    label_smoothing: float = 0.0,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """InfoNCE / NT-Xent (SimCLR) and its CLIP form; V > 2 is the pairwise-mean ("PWE") loss.

    For each view pair ``a < b`` and direction, anchor ``(i, a)``, positive ``(i, b)``:

        term = -s(ia, ib) + LSE_{c in D(i,a)} s(ia, c),     s(x, y) = <x, y> / temperature

    ``same_view_negatives=True`` (NT-Xent): ``D`` = every row of views ``a, b`` but the anchor
    (2N - 1 entries). ``False`` (CLIP / cross-modal): ``D`` = the N rows of view ``b``.
    The loss of instance ``i`` is the mean of its ``V(V-1)`` terms.

    Label smoothing (CLIP form only; Fini et al. 2023 use ``ε`` = 0.1): each term becomes

        term = (1 - ε) (LSE_{c in D} s(ia, c) - s(ia, ib))
               + ε (LSE_{c in D} s(ia, c) - mean_{c in D} s(ia, c))

    i.e. ``torch.nn.functional.cross_entropy(logits, targets, label_smoothing=ε)`` over the
    ``N`` candidates of view ``b``, per direction.

    Args:
        z: ``[N, V, D]`` embeddings, N >= 2, V >= 2 (view ``m`` is modality ``m`` for CLIP).
        temperature: softmax temperature ``tau`` > 0 (default 0.1).
        same_view_negatives: NT-Xent (True) or CLIP (False) denominator.
        label_smoothing: ``ε`` in ``[0, 1)`` (default 0); ``ε > 0`` needs
            ``same_view_negatives=False``.
        normalize: L2-normalise ``z`` first (cosine logits).
        reduction: ``"mean"`` (scalar) or ``"none"`` (``[N]``).

    References: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations" (SimCLR), 2020; Radford et al., CLIP, 2021; Koromilas et al. 2025 (PWE);
    Fini et al., "Improved Baselines for Vision-Language Pre-training", TMLR 2023 (smoothing).
    """
    check_positive(temperature, name="temperature", loss="info_nce")
    check_reduction(reduction, loss="info_nce")
    _check_label_smoothing(label_smoothing, same_view_negatives)
    z = prepare(z, loss="info_nce", normalize=normalize)
    per_instance = pairwise_infonce_terms(
        z,
        scale=1.0 / temperature,
        same_view_negatives=same_view_negatives,
        label_smoothing=float(label_smoothing),
    )
    return reduce(per_instance, reduction)


def _check_label_smoothing(label_smoothing: object, same_view_negatives: bool) -> None:
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, (int, float))
        or not 0.0 <= label_smoothing < 1.0
    ):
        raise ValueError(f"info_nce: label_smoothing must be in [0, 1); got {label_smoothing!r}")
    if label_smoothing > 0 and same_view_negatives:
        raise ValueError(
            "info_nce: label_smoothing > 0 is defined for the CLIP form only (cross-entropy over "
            "the N rows of the other view): pass same_view_negatives=False"
        )


@full_precision
def hard_info_nce(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    top_k: int = 16,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Hard-negative InfoNCE (Wang & Liu, "Understanding the Behaviour of Contrastive Loss", 2021).

    As :func:`info_nce` (NT-Xent denominator), but the denominator of each anchor keeps only its
    positive and the ``top_k`` most similar negatives. ``top_k >= 2N - 2`` equals ``info_nce``.
    ``top_k`` = 16 is a library default (the paper's value is not published in a form we could
    verify).
    """
    check_positive(temperature, name="temperature", loss="hard_info_nce")
    check_reduction(reduction, loss="hard_info_nce")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"hard_info_nce: top_k must be an int >= 1; got {top_k!r}")
    z = prepare(z, loss="hard_info_nce", normalize=normalize)
    per_instance = pairwise_infonce_terms(z, scale=1.0 / temperature, top_k=top_k)
    return reduce(per_instance, reduction)


@full_precision
def mv_infonce(
    z: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    same_view_negatives: bool = True,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """MV-InfoNCE (Koromilas et al., "A Principled Framework for Multi-View Contrastive
    Learning", 2025): one term per instance over all views.

        pos_i = LSE_{l != l'} s(il, il')                  (ordered view pairs)
        neg_i = LSE_{l, (j,m) != (i,l)} s(il, jm)
        loss_i = neg_i - pos_i

    ``same_view_negatives=True`` follows the official code (the reported numbers);
    ``False`` keeps only other-view rows in the denominator (the README formula).
    Computed as log-sum-exps, not the official code's ratio of raw sums of ``exp``.
    """
    check_positive(temperature, name="temperature", loss="mv_infonce")
    check_reduction(reduction, loss="mv_infonce")
    z = prepare(z, loss="mv_infonce", normalize=normalize)
    scale = 1.0 / temperature
    v = z.shape[1]
    logits = within_instance_logits(z, scale=scale)
    off_diagonal = ~torch.eye(v, dtype=torch.bool, device=z.device)
    positive = logits[:, off_diagonal].logsumexp(dim=1)
    mask = PairMask.NOT_SELF if same_view_negatives else PairMask.OTHER_VIEW
    (row_lse,) = pair_reduce(z, [LogSumExp(mask)], scale=scale)
    negative = row_lse.logsumexp(dim=1)
    return reduce(negative - positive, reduction)


@full_precision
def supcon(
    z: Tensor,
    labels: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    base_temperature: float | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Supervised contrastive loss, "L_out" (Khosla et al., NeurIPS 2020).

    Every row ``(i, a)`` is an anchor; ``A`` = every other row, ``P`` = rows of ``A`` with the
    same label:

        term(i,a) = LSE_{c in A} s(ia, c) - mean_{p in P} s(ia, p)

    The loss of instance ``i`` is the mean over its anchors that have a positive, times
    ``temperature / base_temperature`` when ``base_temperature`` is given (official code:
    0.07). Instances without any positive (possible only for V = 1) are excluded from the mean
    and are 0 in ``reduction="none"``; a batch with no positive at all is a ``ValueError``.

    Args:
        z: ``[N, V, D]``, V >= 1.
        labels: ``[N]`` integer class labels.
    """
    check_positive(temperature, name="temperature", loss="supcon")
    if base_temperature is not None:
        check_positive(base_temperature, name="base_temperature", loss="supcon")
    check_reduction(reduction, loss="supcon")
    z = prepare(z, loss="supcon", normalize=normalize, min_views=1)
    labels = check_labels(labels, z.shape[0], loss="supcon", device=z.device)
    scale = 1.0 / temperature
    positives = PairMask.where(label="same") - PairMask.SELF
    denominator, (positive_sum, positive_count) = pair_reduce(
        z, [LogSumExp(PairMask.NOT_SELF), WeightedSum(positives)], scale=scale, labels=labels
    )
    return _mean_over_anchors_with_positives(
        denominator,
        positive_sum,
        positive_count,
        reduction,
        loss="supcon",
        why="every label is unique and V = 1",
        factor=1.0 if base_temperature is None else temperature / base_temperature,
    )


def _mean_over_anchors_with_positives(
    denominator: Tensor,
    positive_sum: Tensor,
    positive_count: Tensor,
    reduction: Reduction,
    *,
    loss: str,
    why: str,
    factor: float | Tensor = 1.0,
) -> Tensor:
    """``[N, V]`` anchor statistics to per-instance SupCon-style values (see :func:`supcon`)."""
    has_positive = positive_count > 0
    safe_count = torch.where(has_positive, positive_count, torch.ones_like(positive_count))
    anchor_terms = torch.where(
        has_positive, denominator - positive_sum / safe_count, torch.zeros_like(denominator)
    )
    anchors_used = has_positive.sum(dim=1)
    per_instance = anchor_terms.sum(dim=1) / anchors_used.clamp(min=1).to(anchor_terms.dtype)
    return reduce_valid(per_instance * factor, anchors_used > 0, reduction, loss=loss, why=why)
