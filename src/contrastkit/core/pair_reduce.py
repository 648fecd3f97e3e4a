"""The one similarity core: masked reductions of pair logits over pair structures.

Every softmax-type loss of contrastkit is "a log-sum-exp over a denominator set minus a
log-sum-exp (or a weighted mean) over a positive set". This module computes those per-anchor
quantities for all anchors at once, from embeddings, row ids and :class:`PairMask` sets:

    logit(a, c) = scale * <x_a, x_c> + bias_c                     (a: anchor row, c: candidate)

and, for each requested term,

* :class:`LogSumExp`:   ``LSE_{c in mask(a)} logit(a, c)`` (optionally over the ``top_k``
  largest logits of the set); ``-inf`` for an empty set;
* :class:`WeightedSum`: ``(Σ_c w(a,c) logit(a,c), Σ_c w(a,c))`` over the set, with ``w = 1``
  or pair weights from :class:`InstanceWeights` / :class:`CosineWeights`;
* :class:`SoftmaxMean`: ``(Σ_c p(a,c) logit(a,c), LSE)`` with ``p = softmax`` of the logits over
  the set (the expected logit under the softmax; CACR's conditional weights).

Numerics: logits are formed in at least float32 (float64 stays float64); sets are applied by
``masked_fill(-inf)`` before the log-sum-exp, never by multiplying ``exp`` by zero.

This is the dense path (one ``[Ra, Rc]`` logit block). A memory-lean tiled path and a
distributed path plug in behind :func:`pair_reduce` with the same terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from contrastkit.core.pair_mask import PairMask, RowIds


class PairWeights:
    """Real-valued weights of (anchor, candidate) pairs, evaluated tile by tile from row ids."""

    def block(self, anchors: RowIds, candidates: RowIds) -> Tensor:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class InstanceWeights(PairWeights):
    """Weights from an instance-by-instance matrix: ``w(a, c) = matrix[inst(a), inst(c)]``."""

    matrix: Tensor

    def block(self, anchors: RowIds, candidates: RowIds) -> Tensor:
        return self.matrix[anchors.instance][:, candidates.instance]


@dataclass(frozen=True, eq=False)
class CosineWeights(PairWeights):
    """Weights from a second embedding: ``w(a, c) = slope * <e_inst(a), e_inst(c)> + offset``.

    With ``e`` L2-normalised, ``slope = offset = 1/2`` gives CWCL's weights in ``[0, 1]``.
    """

    embeddings: Tensor
    slope: float = 0.5
    offset: float = 0.5

    def block(self, anchors: RowIds, candidates: RowIds) -> Tensor:
        e = self.embeddings
        return self.slope * (e[anchors.instance] @ e[candidates.instance].T) + self.offset


@dataclass(frozen=True)
class LogSumExp:
    """``LSE`` of the logits over ``mask`` (over the ``top_k`` largest if given)."""

    mask: PairMask
    top_k: int | None = None


@dataclass(frozen=True)
class WeightedSum:
    """``(Σ w·logit, Σ w)`` over ``mask``; unit weights when ``weights`` is None."""

    mask: PairMask
    weights: PairWeights | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SoftmaxMean:
    """``(Σ softmax(logit)·logit, LSE)`` over ``mask``; ``detach_weights`` stops p's gradient."""

    mask: PairMask
    detach_weights: bool = False


Term = LogSumExp | WeightedSum | SoftmaxMean


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype losses compute in: at least float32, float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def dense_pair_reduce(
    anchors: Tensor,
    candidates: Tensor,
    anchor_ids: RowIds,
    candidate_ids: RowIds,
    terms: Sequence[Term],
    *,
    scale: float | Tensor,
    candidate_bias: Tensor | None = None,
) -> list[Tensor | tuple[Tensor, Tensor]]:
    """Dense path: one ``[Ra, Rc]`` logit block, every term reduced from it.

    Shapes: ``anchors [Ra, D]``, ``candidates [Rc, D]``, ``candidate_bias [Rc]``.
    Returns one entry per term: a ``[Ra]`` tensor for :class:`LogSumExp`, a pair of ``[Ra]``
    tensors for :class:`WeightedSum` and :class:`SoftmaxMean`.
    """
    logits = (anchors @ candidates.T) * scale
    if candidate_bias is not None:
        logits = logits + candidate_bias[None, :]
    results: list[Tensor | tuple[Tensor, Tensor]] = []
    for term in terms:
        mask = term.mask.block(anchor_ids, candidate_ids)
        if isinstance(term, LogSumExp):
            masked = logits.masked_fill(~mask, float("-inf"))
            if term.top_k is not None and term.top_k < masked.shape[1]:
                masked = masked.topk(term.top_k, dim=1).values
            results.append(torch.logsumexp(masked, dim=1))
        elif isinstance(term, WeightedSum):
            weights = mask.to(logits.dtype)
            if term.weights is not None:
                weights = weights * term.weights.block(anchor_ids, candidate_ids).to(logits.dtype)
            total = (torch.where(mask, logits, 0.0) * weights).sum(dim=1)
            results.append((total, weights.sum(dim=1)))
        elif isinstance(term, SoftmaxMean):
            masked = logits.masked_fill(~mask, float("-inf"))
            lse = torch.logsumexp(masked, dim=1)
            probs = torch.softmax(masked, dim=1)
            if term.detach_weights:
                probs = probs.detach()
            results.append(((probs * torch.where(mask, logits, 0.0)).sum(dim=1), lse))
        else:
            raise TypeError(f"terms must be LogSumExp, WeightedSum or SoftmaxMean; got {term!r}")
    return results


def pair_reduce(
    z: Tensor,
    terms: Sequence[Term],
    *,
    scale: float | Tensor,
    labels: Tensor | None = None,
    anchor_views: Sequence[int] | None = None,
    candidate_views: Sequence[int] | None = None,
    candidate_bias: Tensor | None = None,
) -> list[Tensor | tuple[Tensor, Tensor]]:
    """Masked pair reductions over the rows of a multi-view batch.

    Args:
        z: ``[N, V, D]`` embeddings (already normalised if the loss wants cosine logits).
        terms: what to compute per anchor (see the module docstring).
        scale: logit scale, usually ``1 / temperature`` (a float or a 0-d tensor).
        labels: optional ``[N]`` integer labels; without them each instance is its own class.
        anchor_views: the views whose rows are anchors (default: all ``V``).
        candidate_views: the views whose rows are candidates (default: all ``V``). View ids keep
            their original values, so "same view" still means the same view index.
        candidate_bias: optional ``[N, V]`` additive logit bias of each candidate row.

    Returns:
        One entry per term, reshaped to ``[N, Va]`` (``Va = len(anchor_views)``): a tensor for
        :class:`LogSumExp`, a pair of tensors for :class:`WeightedSum` / :class:`SoftmaxMean`.
    """
    n, v, d = z.shape
    all_views = list(range(v))
    anchor_views = all_views if anchor_views is None else list(anchor_views)
    candidate_views = all_views if candidate_views is None else list(candidate_views)
    ids = RowIds.for_batch(n, v, labels=labels, device=z.device)

    anchors = z[:, anchor_views].reshape(-1, d)
    candidates = z[:, candidate_views].reshape(-1, d)
    anchor_ids = _rows_of_views(ids, n, v, anchor_views)
    candidate_ids = _rows_of_views(ids, n, v, candidate_views)
    bias = None
    if candidate_bias is not None:
        bias = candidate_bias[:, candidate_views].reshape(-1)

    results = dense_pair_reduce(
        anchors, candidates, anchor_ids, candidate_ids, terms, scale=scale, candidate_bias=bias
    )
    va = len(anchor_views)
    shaped: list[Tensor | tuple[Tensor, Tensor]] = []
    for result in results:
        if isinstance(result, tuple):
            shaped.append(tuple(part.reshape(n, va) for part in result))  # type: ignore[arg-type]
        else:
            shaped.append(result.reshape(n, va))
    return shaped


def _rows_of_views(ids: RowIds, n: int, v: int, views: list[int]) -> RowIds:
    index = (
        torch.arange(n, device=ids.instance.device)[:, None] * v
        + torch.tensor(views, device=ids.instance.device)[None, :]
    ).reshape(-1)
    return ids.select(index)


def within_instance_logits(z: Tensor, *, scale: float | Tensor) -> Tensor:
    """``[N, V, V]`` logits between the views of each instance: ``scale * <z[i,a], z[i,b]>``.

    This is the positive structure of every multi-view loss; it costs ``O(N V² D)``.
    """
    return torch.einsum("nad,nbd->nab", z, z) * scale
