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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from contrastkit.core.pair_mask import PairMask, RowIds


class PairWeights:
    """Real-valued weights of (anchor, candidate) pairs, evaluated tile by tile from row ids."""

    def block(self, anchors: RowIds, candidates: RowIds) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @property
    def requires_grad(self) -> bool:
        """Whether the weights carry gradient (only the dense path propagates it)."""
        return any(isinstance(v, Tensor) and v.requires_grad for v in vars(self).values())


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


Partial = Tensor | tuple[Tensor, Tensor]


def reduce_block(
    logits: Tensor, mask: Tensor, term: Term, weights: Tensor | None = None
) -> Partial:
    """Reduce one ``[Ra, Rc]`` logit block of one term to a partial result.

    Partials of several candidate blocks are combined by :func:`merge_partials`: a
    :class:`LogSumExp` partial is the block's LSE ``[Ra]`` (or its ``top_k`` largest masked
    logits ``[Ra, k]``); a :class:`WeightedSum` partial is ``(Σ w·logit, Σ w)``; a
    :class:`SoftmaxMean` partial is ``(expected logit within the block, block LSE)``.
    Rows with an empty set give ``-inf`` LSEs and zero sums, never NaN.
    """
    if isinstance(term, LogSumExp):
        masked = logits.masked_fill(~mask, float("-inf"))
        if term.top_k is not None:
            return masked.topk(min(term.top_k, masked.shape[1]), dim=1).values
        return torch.logsumexp(masked, dim=1)
    if isinstance(term, WeightedSum):
        w = mask.to(logits.dtype) if weights is None else torch.where(mask, weights, 0.0)
        return (torch.where(mask, logits, 0.0) * w).sum(dim=1), w.sum(dim=1)
    if isinstance(term, SoftmaxMean):
        masked = logits.masked_fill(~mask, float("-inf"))
        lse = torch.logsumexp(masked, dim=1)
        # rows with an empty set: softmax over zeros (finite), then masked out below
        safe = torch.where(mask.any(dim=1, keepdim=True), masked, 0.0)
        probs = torch.softmax(safe, dim=1) * mask
        if term.detach_weights:
            probs = probs.detach()
        return (probs * torch.where(mask, logits, 0.0)).sum(dim=1), lse
    raise TypeError(f"terms must be LogSumExp, WeightedSum or SoftmaxMean; got {term!r}")


def merge_partials(term: Term, partials: Sequence[Partial], num_rows: int, like: Tensor) -> Partial:
    """Combine the partial results of one term over candidate blocks into its final value."""
    if not partials:  # the set is empty for every row
        empty = torch.full((num_rows,), float("-inf"), dtype=like.dtype, device=like.device)
        zeros = torch.zeros(num_rows, dtype=like.dtype, device=like.device)
        return (
            empty
            if isinstance(term, LogSumExp)
            else (zeros, empty if isinstance(term, SoftmaxMean) else zeros)
        )
    if isinstance(term, LogSumExp):
        if term.top_k is not None:
            values = torch.cat(list(partials), dim=1)  # type: ignore[arg-type]
            values = values.topk(min(term.top_k, values.shape[1]), dim=1).values
            return torch.logsumexp(values, dim=1)
        return torch.logsumexp(torch.stack(list(partials), dim=1), dim=1)  # type: ignore[arg-type]
    if isinstance(term, WeightedSum):
        return (
            torch.stack([p[0] for p in partials], dim=1).sum(dim=1),  # type: ignore[index]
            torch.stack([p[1] for p in partials], dim=1).sum(dim=1),  # type: ignore[index]
        )
    expected = torch.stack([p[0] for p in partials], dim=1)  # type: ignore[index]
    block_lse = torch.stack([p[1] for p in partials], dim=1)  # type: ignore[index]
    total_lse = torch.logsumexp(block_lse, dim=1)
    # each block's share of the softmax mass; rows whose set is empty everywhere get 0, not NaN
    finite_total = torch.where(torch.isinf(total_lse), 0.0, total_lse)
    share = torch.exp(block_lse - finite_total[:, None])
    if isinstance(term, SoftmaxMean) and term.detach_weights:
        share = share.detach()
    return (share * expected).sum(dim=1), total_lse


def dense_pair_reduce(
    anchors: Tensor,
    candidates: Tensor,
    anchor_ids: RowIds,
    candidate_ids: RowIds,
    terms: Sequence[Term],
    *,
    scale: float | Tensor,
    candidate_bias: Tensor | None = None,
) -> list[Partial]:
    """One ``[Ra, Rc]`` logit block, every term reduced from it (final values, not partials).

    Shapes: ``anchors [Ra, D]``, ``candidates [Rc, D]``, ``candidate_bias [Rc]``.
    """
    logits = (anchors @ candidates.T) * scale
    if candidate_bias is not None:
        logits = logits + candidate_bias[None, :]
    results = []
    for term in terms:
        mask = term.mask.block(anchor_ids, candidate_ids)
        weights = _weights_block(term, anchor_ids, candidate_ids, logits.dtype)
        partial = reduce_block(logits, mask, term, weights)
        results.append(merge_partials(term, [partial], len(anchor_ids), logits))
    return results


def _weights_block(
    term: Term, anchors: RowIds, candidates: RowIds, dtype: torch.dtype
) -> Tensor | None:
    if isinstance(term, WeightedSum) and term.weights is not None:
        return term.weights.block(anchors, candidates).to(dtype)
    return None


@dataclass
class _Backend:
    impl: str = "auto"  # "dense" | "tiled" | "auto"
    tile_size: int = 1024
    auto_rows: int = 8192  # "auto" goes tiled when anchors x candidates exceed auto_rows²
    local: tuple[int, int] | None = None  # anchors restricted to instances [start, stop)


_BACKEND = _Backend()


@contextmanager
def core_backend(impl: str = "auto", *, tile_size: int = 1024) -> Iterator[None]:
    """Force the core's path inside a ``with`` block (every loss follows it)::

        with contrastkit.core.core_backend("tiled", tile_size=2048):
            loss = contrastkit.losses.info_nce(z)

    ``"dense"``: ``[N, N]`` logit blocks (fastest for small batches); ``"tiled"``: tiles of
    ``tile_size`` rows with recomputation in backward (memory ``O(R·D + tile²)``);
    ``"triton"``: the Triton kernels for log-sum-exp terms without top-k (other terms take the
    tiled path; needs ``triton``; float32; not yet measured on a GPU, so never chosen by auto);
    ``"auto"`` (default): tiled when the anchor-by-candidate block exceeds 8192².
    """
    if impl not in ("dense", "tiled", "triton", "auto"):
        raise ValueError(f"impl must be 'dense', 'tiled', 'triton' or 'auto'; got {impl!r}")
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"tile_size must be an int >= 1; got {tile_size!r}")
    saved = (_BACKEND.impl, _BACKEND.tile_size)
    _BACKEND.impl, _BACKEND.tile_size = impl, tile_size
    try:
        yield
    finally:
        _BACKEND.impl, _BACKEND.tile_size = saved


@contextmanager
def local_anchors(start: int, stop: int) -> Iterator[None]:
    """Inside the block, only instances ``start <= i < stop`` are anchors (all rows stay
    candidates): the local half of the distributed "local loss + gathered candidates" pattern.

    :func:`pair_reduce` then computes the anchor rows of those instances only (cost
    ``(stop - start) / N`` of the full loss) and fills the other instances' entries with
    neutral constants (LSE 0, sums 0, weight totals 1) that carry no gradient. The losses'
    reductions follow it: ``reduction="mean"`` returns ``Σ_{local i} loss_i / count`` with the
    global count, ``"none"`` the ``[stop - start]`` local values. Used by
    :func:`contrastkit.core.distributed.local_loss`.
    """
    if isinstance(start, bool) or isinstance(stop, bool) or not (0 <= start < stop):
        raise ValueError(f"local_anchors needs integers 0 <= start < stop; got {start}, {stop}")
    saved = _BACKEND.local
    _BACKEND.local = (int(start), int(stop))
    try:
        yield
    finally:
        _BACKEND.local = saved


def local_anchor_range() -> tuple[int, int] | None:
    """The ``(start, stop)`` instance range set by :func:`local_anchors`, or None."""
    return _BACKEND.local


_SAME_VIEW = PairMask.where(view="same")
_OTHER_VIEW = PairMask.where(view="other")


def pair_reduce(
    z: Tensor,
    terms: Sequence[Term],
    *,
    scale: float | Tensor,
    labels: Tensor | None = None,
    anchor_views: Sequence[int] | None = None,
    candidate_views: Sequence[int] | None = None,
    candidate_bias: Tensor | None = None,
) -> list[Partial]:
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
        One entry per term, shaped ``[N, Va]`` (``Va = len(anchor_views)``): a tensor for
        :class:`LogSumExp`, a pair of tensors for :class:`WeightedSum` / :class:`SoftmaxMean`.

    The batch is processed in ``[N, N]`` blocks, one per (anchor view, candidate view), and a
    block is skipped when no term's set can meet it (e.g. MV-DHEL's within-view sets never
    meet other-view blocks, so it costs ``O(V N² D)``, not ``O(V² N² D)``).
    """
    # logits in the inputs' compute dtype even inside an autocast region (the losses upcast z)
    with torch.autocast(device_type=z.device.type, enabled=False):
        return _pair_reduce(z, terms, scale, labels, anchor_views, candidate_views, candidate_bias)


def _pair_reduce(
    z: Tensor,
    terms: Sequence[Term],
    scale: float | Tensor,
    labels: Tensor | None,
    anchor_views: Sequence[int] | None,
    candidate_views: Sequence[int] | None,
    candidate_bias: Tensor | None,
) -> list[Partial]:
    n, v, _ = z.shape
    anchor_views = list(range(v)) if anchor_views is None else list(anchor_views)
    candidate_views = list(range(v)) if candidate_views is None else list(candidate_views)
    start, stop = 0, n
    if _BACKEND.local is not None:
        start, stop = _BACKEND.local
        if stop > n:
            raise ValueError(
                f"local_anchors({start}, {stop}) is outside the batch of N = {n} instances"
            )
    label = None if labels is None else labels.to(device=z.device, dtype=torch.long)
    impl = _BACKEND.impl
    if impl == "auto":
        big = (stop - start) * len(anchor_views) * n * len(candidate_views) > _BACKEND.auto_rows**2
        impl = "tiled" if big else "dense"
    if impl in ("tiled", "triton"):
        results = _tiled_views(
            z,
            terms,
            scale,
            label,
            anchor_views,
            candidate_views,
            candidate_bias,
            (start, stop),
            use_triton=impl == "triton",
        )
        return [_pad_instances(term, r, start, n) for term, r in zip(terms, results, strict=True)]
    try:
        return _dense_views(
            z, terms, scale, label, anchor_views, candidate_views, candidate_bias, (start, stop)
        )
    except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
        if not _is_out_of_memory(error):
            raise
        rows = (stop - start) * len(anchor_views)
        raise type(error)(
            f"{error}\n\ncontrastkit: the dense core builds [{rows}, {n}] logit blocks for this "
            f"batch; the tiled path needs only O(rows x D + tile^2) memory: wrap the loss in "
            f"`with contrastkit.core.core_backend('tiled'):` (or use several processes with "
            f"contrastkit.core.distributed.local_loss)"
        ) from error


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        "out of memory" in text or "can't allocate memory" in text
    )


def _dense_views(
    z: Tensor,
    terms: Sequence[Term],
    scale: float | Tensor,
    label: Tensor | None,
    anchor_views: list[int],
    candidate_views: list[int],
    candidate_bias: Tensor | None,
    anchor_range: tuple[int, int],
) -> list[Partial]:
    """The dense path: one ``[Ra, N]`` logit block per (anchor view, candidate view)."""
    n = z.shape[0]
    start, stop = anchor_range
    instance = torch.arange(n, device=z.device)

    def ids_of_view(view: int, rows: slice = slice(None)) -> RowIds:
        ids = instance[rows]
        return RowIds(ids, torch.full_like(ids, view), None if label is None else label[rows])

    local = slice(start, stop)
    per_term: list[list[Partial]] = [[] for _ in terms]
    for a in anchor_views:
        anchor_ids = ids_of_view(a, local)
        partials: list[list[Partial]] = [[] for _ in terms]
        for c in candidate_views:
            reachable = _SAME_VIEW if a == c else _OTHER_VIEW
            active = [k for k, term in enumerate(terms) if not (term.mask & reachable).is_empty()]
            if not active:
                continue
            candidate_ids = ids_of_view(c)
            logits = (z[local, a] @ z[:, c].T) * scale
            if candidate_bias is not None:
                logits = logits + candidate_bias[None, :, c]
            for k in active:
                term = terms[k]
                mask = term.mask.block(anchor_ids, candidate_ids, same_view=a == c)
                weights = _weights_block(term, anchor_ids, candidate_ids, logits.dtype)
                partials[k].append(reduce_block(logits, mask, term, weights))
        for k, term in enumerate(terms):
            per_term[k].append(merge_partials(term, partials[k], stop - start, z))
    return [
        _pad_instances(term, _stack_views(results), start, n)
        for term, results in zip(terms, per_term, strict=True)
    ]


def _pad_instances(term: Term, partial: Partial, start: int, n: int) -> Partial:
    """Local anchor results ``[stop - start, Va]`` back to ``[N, Va]`` with neutral constants
    (LSE 0, sums 0, weight totals 1: finite, with finite derivatives) for the other instances."""

    def pad(t: Tensor, fill: float) -> Tensor:
        if t.shape[0] == n:
            return t
        before = t.new_full((start, *t.shape[1:]), fill)
        after = t.new_full((n - start - t.shape[0], *t.shape[1:]), fill)
        return torch.cat([before, t, after], dim=0)

    if isinstance(partial, tuple):
        return pad(partial[0], 0.0), pad(partial[1], 1.0 if isinstance(term, WeightedSum) else 0.0)
    return pad(partial, 0.0)


def _view_major(
    z: Tensor, views: list[int], label: Tensor | None, *, first: int = 0
) -> tuple[Tensor, RowIds]:
    """Rows of the given views, view-major (all instances of the first view, then the next),
    so that tiles mostly fall inside one view block and can be skipped. ``first`` is the
    instance id of ``z[0]`` (a local slice of the batch)."""
    n = z.shape[0]
    rows = z[:, views].transpose(0, 1).reshape(-1, z.shape[-1])
    instance = torch.arange(first, first + n, device=z.device).repeat(len(views))
    view = torch.tensor(views, device=z.device).repeat_interleave(n)
    return rows, RowIds(instance, view, None if label is None else label.repeat(len(views)))


def _tiled_views(
    z: Tensor,
    terms: Sequence[Term],
    scale: float | Tensor,
    label: Tensor | None,
    anchor_views: list[int],
    candidate_views: list[int],
    candidate_bias: Tensor | None,
    anchor_range: tuple[int, int],
    *,
    use_triton: bool = False,
) -> list[Partial]:
    from contrastkit.core.tiled import tiled_pair_reduce

    start, stop = anchor_range
    anchors, anchor_ids = _view_major(
        z[start:stop], anchor_views, None if label is None else label[start:stop], first=start
    )
    candidates, candidate_ids = _view_major(z, candidate_views, label)
    bias = None
    if candidate_bias is not None:
        bias = candidate_bias[:, candidate_views].transpose(0, 1).reshape(-1)
    results: list[Partial | None] = [None] * len(terms)
    if use_triton:
        from contrastkit.core.triton_lse import triton_logsumexp

        simple = [k for k, t in enumerate(terms) if isinstance(t, LogSumExp) and t.top_k is None]
        lses = triton_logsumexp(
            anchors,
            candidates,
            anchor_ids,
            candidate_ids,
            [terms[k].mask for k in simple],
            scale=scale,
            candidate_bias=bias,
        )
        for k, lse in zip(simple, lses, strict=True):
            results[k] = lse
    rest = [k for k in range(len(terms)) if results[k] is None]
    if rest:
        others = tiled_pair_reduce(
            anchors,
            candidates,
            anchor_ids,
            candidate_ids,
            [terms[k] for k in rest],
            scale=scale,
            candidate_bias=bias,
            tile_size=_BACKEND.tile_size,
        )
        for k, value in zip(rest, others, strict=True):
            results[k] = value
    va = len(anchor_views)

    def to_instances(t: Tensor) -> Tensor:
        return t.reshape(va, stop - start).transpose(0, 1)

    return [
        tuple(to_instances(part) for part in r) if isinstance(r, tuple) else to_instances(r)
        for r in results
    ]


def _stack_views(results: list[Partial]) -> Partial:
    if isinstance(results[0], tuple):
        return (
            torch.stack([r[0] for r in results], dim=1),  # type: ignore[index]
            torch.stack([r[1] for r in results], dim=1),  # type: ignore[index]
        )
    return torch.stack(results, dim=1)  # type: ignore[arg-type]


def within_instance_logits(z: Tensor, *, scale: float | Tensor) -> Tensor:
    """``[N, V, V]`` logits between the views of each instance: ``scale * <z[i,a], z[i,b]>``.

    This is the positive structure of every multi-view loss; it costs ``O(N V² D)``.
    """
    return torch.einsum("nad,nbd->nab", z, z) * scale
