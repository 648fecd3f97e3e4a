"""The tiled path of the core: the same terms as the dense path, computed tile by tile with
recomputation in the backward pass, so loss-side memory is ``O(R·D + tile²)`` instead of
``O(R²)`` (R = rows).

Forward keeps, per anchor row and term, only running statistics (log-sum-exp, weighted sums,
the softmax expectation, or the running top-k values); backward recomputes each logit tile,
forms ``dL/dlogit`` for all terms at once and accumulates the gradients of the anchors, the
candidates, the candidate bias and the logit scale. Tiles whose pairs belong to no term's set
are skipped, so with view-major rows MV-DHEL never touches the other-view tiles.

``top_k`` terms: backward routes the gradient to the masked logits that are ``>=`` the row's
k-th largest value (ties at the threshold would all receive gradient, where the dense path
picks k of them; with continuous inputs ties do not occur).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from contrastkit.core.pair_mask import RowIds
from contrastkit.core.pair_reduce import (
    LogSumExp,
    Partial,
    Term,
    WeightedSum,
    merge_partials,
    reduce_block,
)

NEG_INF = float("-inf")


def _weights(term: Term, anchors: RowIds, candidates: RowIds, dtype: torch.dtype) -> Tensor | None:
    if isinstance(term, WeightedSum) and term.weights is not None:
        return term.weights.block(anchors, candidates).to(dtype)
    return None


def _tile_views(ids: RowIds, tile: int) -> list[int | None]:
    """The view shared by every row of each tile of ``tile`` rows (``None`` where a tile mixes
    views), with one device-to-host copy for all tiles."""
    view = ids.view
    if view.numel() == 0:
        return []
    pad = (-view.shape[0]) % tile
    blocks = torch.cat([view, view[-1:].expand(pad)]).reshape(-1, tile)
    bounds = torch.stack([blocks.amin(dim=1), blocks.amax(dim=1)], dim=1).tolist()
    return [low if low == high else None for low, high in bounds]


def _tile_masks(
    terms: Sequence[Term],
    ids_a: RowIds,
    ids_c: RowIds,
    view_a: int | None,
    view_c: int | None,
) -> list[Tensor | bool]:
    """Each term's mask of one tile: ``True`` / ``False`` when the tile is one anchor view
    against one candidate view and the set holds every / no such pair (no mask is built, e.g.
    CLIP's other-view set), else the boolean ``[rows, cols]`` block."""
    if view_a is None or view_c is None:
        return [term.mask.block(ids_a, ids_c) for term in terms]
    same_view = view_a == view_c
    labelled = ids_a.label is not None and ids_c.label is not None
    masks: list[Tensor | bool] = []
    for term in terms:
        constant = term.mask.constant_block(same_view=same_view, labelled=labelled)
        masks.append(
            term.mask.block(ids_a, ids_c, same_view=same_view) if constant is None else constant
        )
    return masks


def _any_pair(masks: list[Tensor | bool]) -> bool:
    return any(m if isinstance(m, bool) else bool(m.any()) for m in masks)


def _dense_masks(masks: list[Tensor | bool], like: Tensor) -> list[Tensor]:
    return [
        torch.full(like.shape, m, dtype=torch.bool, device=like.device)
        if isinstance(m, bool)
        else m
        for m in masks
    ]


def _logits(a: Tensor, c: Tensor, bias: Tensor | None, scale: Tensor) -> Tensor:
    out = (a * scale) @ c.T  # scaling the [tile, D] rows, not the [tile, tile] product
    return out if bias is None else out + bias[None, :]


class _TiledPairReduce(torch.autograd.Function):
    """Inputs: anchors [Ra, D], candidates [Rc, D], bias [Rc] (or an empty tensor), scale (0-d).
    Non-tensor context: ids, terms, tile size. Outputs: two [Ra] tensors per term."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        anchors: Tensor,
        candidates: Tensor,
        bias: Tensor,
        scale: Tensor,
        anchor_ids: RowIds,
        candidate_ids: RowIds,
        terms: Sequence[Term],
        tile: int,
    ) -> tuple[Tensor, ...]:
        ra, rc = anchors.shape[0], candidates.shape[0]
        has_bias = bias.numel() > 0
        b = bias if has_bias else None
        dtype, device = anchors.dtype, anchors.device
        ctx.set_materialize_grads(False)
        # per term: the two [Ra] outputs (LogSumExp: LSE and an unused zero vector;
        # WeightedSum: sum and total weight; SoftmaxMean: expected logit and LSE)
        outputs = [torch.zeros(ra, dtype=dtype, device=device) for _ in range(2 * len(terms))]
        # top-k terms: the candidate columns that were kept ([Ra, k], -1 = none), so that the
        # backward routes the gradient exactly where the forward summed (ties included)
        chosen: list[Tensor | None] = [
            torch.full((ra, t.top_k), -1, dtype=torch.long, device=device)
            if isinstance(t, LogSumExp) and t.top_k is not None
            else None
            for t in terms
        ]
        views_a, views_c = _tile_views(anchor_ids, tile), _tile_views(candidate_ids, tile)
        for i0 in range(0, ra, tile):
            ids_a = anchor_ids.select(slice(i0, i0 + tile))
            rows = slice(i0, min(i0 + tile, ra))
            running: list[Partial | None] = [None for _ in terms]  # merged over candidate tiles
            top_columns: list[Tensor | None] = [None for _ in terms]
            for j0 in range(0, rc, tile):
                ids_c = candidate_ids.select(slice(j0, j0 + tile))
                tile_masks = _tile_masks(
                    terms, ids_a, ids_c, views_a[i0 // tile], views_c[j0 // tile]
                )
                if not _any_pair(tile_masks):
                    continue
                logits = _logits(
                    anchors[i0 : i0 + tile],
                    candidates[j0 : j0 + tile],
                    None if b is None else b[j0 : j0 + tile],
                    scale,
                )
                if len(terms) == 1 and isinstance(terms[0], LogSumExp) and terms[0].top_k is None:
                    # the common case (one plain log-sum-exp): mask in place, no extra copy
                    if isinstance(tile_masks[0], Tensor):  # else every pair of the tile
                        logits.masked_fill_(~tile_masks[0], NEG_INF)
                    tile_lse = torch.logsumexp(logits, dim=1)
                    running[0] = _combine(terms[0], running[0], tile_lse)
                    continue
                masks = _dense_masks(tile_masks, logits)
                for k, (term, mask) in enumerate(zip(terms, masks, strict=True)):
                    if not bool(mask.any()):
                        continue
                    if isinstance(term, LogSumExp) and term.top_k is not None:
                        masked = logits.masked_fill(~mask, NEG_INF)
                        values, where = masked.topk(min(term.top_k, masked.shape[1]), dim=1)
                        columns = where + j0
                        if running[k] is not None:
                            values = torch.cat([running[k], values], dim=1)  # type: ignore[list-item]
                            columns = torch.cat([top_columns[k], columns], dim=1)  # type: ignore[list-item]
                            values, pick = values.topk(min(term.top_k, values.shape[1]), dim=1)
                            columns = columns.gather(1, pick)
                        running[k], top_columns[k] = values, columns
                        continue
                    tile_partial = reduce_block(
                        logits, mask, term, _weights(term, ids_a, ids_c, dtype)
                    )
                    running[k] = _combine(term, running[k], tile_partial)
            for k, term in enumerate(terms):
                first, second = _final(term, running[k], rows.stop - rows.start, anchors)
                outputs[2 * k][rows], outputs[2 * k + 1][rows] = first, second
                kept = chosen[k]
                if kept is not None and top_columns[k] is not None:
                    columns = top_columns[k]
                    finite = torch.isfinite(running[k])  # type: ignore[arg-type]
                    kept[rows, : columns.shape[1]] = torch.where(finite, columns, -1)
        for k in range(1, 2 * len(terms), 2):  # outputs that carry no gradient
            if isinstance(terms[k // 2], (LogSumExp, WeightedSum)):
                ctx.mark_non_differentiable(outputs[k])
        ctx.save_for_backward(anchors, candidates, bias, scale, *outputs)
        ctx.meta = (anchor_ids, candidate_ids, list(terms), tile, has_bias, chosen)
        return tuple(outputs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        anchors, candidates, bias, scale, *outputs = ctx.saved_tensors
        anchor_ids, candidate_ids, terms, tile, has_bias, chosen = ctx.meta
        b = bias if has_bias else None
        dtype = anchors.dtype
        grad_a = torch.zeros_like(anchors)
        grad_c = torch.zeros_like(candidates)
        grad_b = torch.zeros_like(bias) if has_bias and ctx.needs_input_grad[2] else None
        need_scale = ctx.needs_input_grad[3]
        grad_s = torch.zeros((), dtype=dtype, device=anchors.device)
        single_lse = len(terms) == 1 and isinstance(terms[0], LogSumExp) and terms[0].top_k is None
        ra, rc = anchors.shape[0], candidates.shape[0]
        g = [(grads[2 * k], grads[2 * k + 1]) for k in range(len(terms))]
        views_a, views_c = _tile_views(anchor_ids, tile), _tile_views(candidate_ids, tile)
        for i0 in range(0, ra, tile):
            ids_a = anchor_ids.select(slice(i0, i0 + tile))
            rows = slice(i0, min(i0 + tile, ra))
            for j0 in range(0, rc, tile):
                ids_c = candidate_ids.select(slice(j0, j0 + tile))
                tile_masks = _tile_masks(
                    terms, ids_a, ids_c, views_a[i0 // tile], views_c[j0 // tile]
                )
                if not _any_pair(tile_masks):
                    continue
                a, c = anchors[i0 : i0 + tile], candidates[j0 : j0 + tile]
                dots = a @ c.T if need_scale else None
                logits = dots * scale if dots is not None else (a * scale) @ c.T
                if b is not None:
                    logits = logits + b[j0 : j0 + tile][None, :]
                if single_lse:  # p = exp(logit - LSE) on the set, times the row's gradient
                    g_first = g[0][0]
                    if g_first is None:
                        continue
                    lse = outputs[0][rows]
                    dlogits = logits.sub_(torch.where(torch.isinf(lse), 0.0, lse)[:, None]).exp_()
                    if isinstance(tile_masks[0], Tensor):
                        dlogits.masked_fill_(~tile_masks[0], 0.0)
                    dlogits.mul_(g_first[rows][:, None])
                else:
                    masks = _dense_masks(tile_masks, logits)
                    dlogits = _tile_dlogits(
                        terms, masks, logits, g, outputs, rows, chosen, j0, ids_a, ids_c
                    )
                grad_a[i0 : i0 + tile] += (dlogits @ c) * scale
                grad_c[j0 : j0 + tile] += (dlogits.T @ a) * scale
                if grad_b is not None:
                    grad_b[j0 : j0 + tile] += dlogits.sum(dim=0)
                if need_scale:
                    grad_s += (dlogits * dots).sum()
        return grad_a, grad_c, grad_b, grad_s if need_scale else None, None, None, None, None


def _tile_dlogits(
    terms: Sequence[Term],
    masks: list[Tensor],
    logits: Tensor,
    grads: list[tuple[Tensor | None, Tensor | None]],
    outputs: list[Tensor],
    rows: slice,
    chosen: list[Tensor | None],
    j0: int,
    ids_a: RowIds,
    ids_c: RowIds,
) -> Tensor:
    """``dLoss/dlogits`` of one ``[rows, cols]`` tile for any mix of terms (general backward)."""
    dlogits = torch.zeros_like(logits)
    for k, (term, mask) in enumerate(zip(terms, masks, strict=True)):
        g_first, g_second = grads[k]
        out_first, out_second = outputs[2 * k], outputs[2 * k + 1]
        if isinstance(term, LogSumExp):
            if g_first is None:
                continue
            keep = mask
            if term.top_k is not None:
                columns = torch.arange(j0, j0 + logits.shape[1], device=logits.device)
                picked = chosen[k][rows]  # type: ignore[index]  # [rows, k] columns, -1 = none
                keep = mask & (picked[:, :, None] == columns[None, None, :]).any(1)
            lse = out_first[rows][:, None]
            finite = torch.where(torch.isinf(lse), 0.0, lse)
            p = torch.where(keep, torch.exp(logits - finite), 0.0)
            dlogits += p * g_first[rows][:, None]
        elif isinstance(term, WeightedSum):
            if g_first is None:
                continue
            w = _weights(term, ids_a, ids_c, logits.dtype)
            w = mask.to(logits.dtype) if w is None else torch.where(mask, w, 0.0)
            dlogits += w * g_first[rows][:, None]
        else:
            lse, mean = out_second[rows][:, None], out_first[rows][:, None]
            finite_lse = torch.where(torch.isinf(lse), 0.0, lse)
            p = torch.where(mask, torch.exp(logits - finite_lse), 0.0)
            if g_first is not None:
                factor = 1.0 if term.detach_weights else (1.0 + logits - mean)
                dlogits += torch.where(mask, p * factor, 0.0) * g_first[rows][:, None]
            if g_second is not None:
                dlogits += p * g_second[rows][:, None]
    return dlogits


def _combine(term: Term, running: Partial | None, new: Partial) -> Partial:
    """Merge two partials of one term into one (bounded memory: a top-k partial keeps k)."""
    if running is None:
        return new
    if isinstance(term, LogSumExp) and term.top_k is not None:
        values = torch.cat([running, new], dim=1)  # type: ignore[list-item]
        return values.topk(min(term.top_k, values.shape[1]), dim=1).values
    rows = new.shape[0] if isinstance(new, Tensor) else new[0].shape[0]
    return merge_partials(term, [running, new], rows, new if isinstance(new, Tensor) else new[0])


def _final(term: Term, partial: Partial | None, rows: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """The two outputs of a term for ``rows`` anchors from its merged partial."""
    zeros = torch.zeros(rows, dtype=like.dtype, device=like.device)
    if isinstance(term, LogSumExp):
        if term.top_k is not None:
            if partial is None:
                return torch.full_like(zeros, NEG_INF), zeros
            return torch.logsumexp(partial, dim=1), zeros  # type: ignore[arg-type]
        lse = merge_partials(term, [] if partial is None else [partial], rows, like)
        return lse, zeros  # type: ignore[return-value]
    merged = merge_partials(term, [] if partial is None else [partial], rows, like)
    return merged  # type: ignore[return-value]


def tiled_pair_reduce(
    anchors: Tensor,
    candidates: Tensor,
    anchor_ids: RowIds,
    candidate_ids: RowIds,
    terms: Sequence[Term],
    *,
    scale: float | Tensor,
    candidate_bias: Tensor | None = None,
    tile_size: int = 1024,
) -> list[Tensor | tuple[Tensor, Tensor]]:
    """Tiled equivalent of :func:`contrastkit.core.pair_reduce.dense_pair_reduce` (same terms,
    same results, memory ``O(R·D + tile²)``)."""
    if tile_size < 1:
        raise ValueError(f"tile_size must be >= 1; got {tile_size}")
    scale_t = (
        scale
        if isinstance(scale, Tensor)
        else torch.tensor(float(scale), dtype=anchors.dtype, device=anchors.device)
    )
    scale_t = scale_t.to(dtype=anchors.dtype, device=anchors.device).reshape(())
    if any(
        isinstance(t, WeightedSum) and t.weights is not None and t.weights.requires_grad
        for t in terms
    ):
        raise ValueError(
            "pair weights that require gradient are supported by the dense path only (the "
            "tiled path treats weights as constants); detach them or use core_backend('dense')"
        )
    bias = candidate_bias.to(anchors.dtype) if candidate_bias is not None else anchors.new_zeros(0)
    # forward and the recomputation in backward must see the same precision: no autocast
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        outputs = _TiledPairReduce.apply(
            anchors,
            candidates.to(anchors.dtype),
            bias,
            scale_t,
            anchor_ids,
            candidate_ids,
            list(terms),
            tile_size,
        )
    results: list[Tensor | tuple[Tensor, Tensor]] = []
    for k, term in enumerate(terms):
        first, second = outputs[2 * k], outputs[2 * k + 1]
        results.append(first if isinstance(term, LogSumExp) else (first, second))
    return results
