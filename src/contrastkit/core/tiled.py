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
from contrastkit.core.pair_reduce import LogSumExp, SoftmaxMean, Term, WeightedSum

NEG_INF = float("-inf")


def _weights(term: Term, anchors: RowIds, candidates: RowIds, dtype: torch.dtype) -> Tensor | None:
    if isinstance(term, WeightedSum) and term.weights is not None:
        return term.weights.block(anchors, candidates).to(dtype).detach()
    return None


def _logits(a: Tensor, c: Tensor, bias: Tensor | None, scale: Tensor) -> Tensor:
    out = (a @ c.T) * scale
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
        # LogSumExp: first = running LSE; WeightedSum: (Σ w·logit, Σ w);
        # SoftmaxMean: (running expected logit, running LSE)
        first = [
            torch.full(
                (ra,), NEG_INF if isinstance(t, LogSumExp) else 0.0, dtype=dtype, device=device
            )
            for t in terms
        ]
        second = [
            torch.full(
                (ra,), NEG_INF if isinstance(t, SoftmaxMean) else 0.0, dtype=dtype, device=device
            )
            for t in terms
        ]
        topk_values: list[Tensor | None] = [None for _ in terms]
        for i0 in range(0, ra, tile):
            ids_a = anchor_ids.select(slice(i0, i0 + tile))
            for j0 in range(0, rc, tile):
                ids_c = candidate_ids.select(slice(j0, j0 + tile))
                masks = [term.mask.block(ids_a, ids_c) for term in terms]
                if not any(bool(m.any()) for m in masks):
                    continue
                logits = _logits(
                    anchors[i0 : i0 + tile],
                    candidates[j0 : j0 + tile],
                    None if b is None else b[j0 : j0 + tile],
                    scale,
                )
                rows = slice(i0, i0 + logits.shape[0])
                for k, (term, mask) in enumerate(zip(terms, masks, strict=True)):
                    if not bool(mask.any()):
                        continue
                    masked = logits.masked_fill(~mask, NEG_INF)
                    if isinstance(term, LogSumExp) and term.top_k is not None:
                        kept = masked.topk(min(term.top_k, masked.shape[1]), dim=1).values
                        prev = topk_values[k]
                        if prev is None:
                            prev = torch.full((ra, 0), NEG_INF, dtype=dtype, device=device)
                            topk_values[k] = prev
                        merged = torch.cat([prev[rows], kept], dim=1)
                        merged = merged.topk(min(term.top_k, merged.shape[1]), dim=1).values
                        if prev.shape[1] < merged.shape[1]:
                            grown = torch.full(
                                (ra, merged.shape[1]), NEG_INF, dtype=dtype, device=device
                            )
                            grown[:, : prev.shape[1]] = prev
                            prev = topk_values[k] = grown
                        prev[rows] = merged
                    elif isinstance(term, LogSumExp):
                        first[k][rows] = torch.logaddexp(
                            first[k][rows], torch.logsumexp(masked, dim=1)
                        )
                    elif isinstance(term, WeightedSum):
                        w = _weights(term, ids_a, ids_c, dtype)
                        w = mask.to(dtype) if w is None else torch.where(mask, w, 0.0)
                        first[k][rows] += (torch.where(mask, logits, 0.0) * w).sum(dim=1)
                        second[k][rows] += w.sum(dim=1)
                    else:  # SoftmaxMean, merged online like merge_partials
                        tile_lse = torch.logsumexp(masked, dim=1)
                        safe = torch.where(mask.any(dim=1, keepdim=True), masked, 0.0)
                        probs = torch.softmax(safe, dim=1) * mask
                        tile_mean = (probs * torch.where(mask, logits, 0.0)).sum(dim=1)
                        old_lse = second[k][rows]
                        new_lse = torch.logaddexp(old_lse, tile_lse)
                        w_old = torch.nan_to_num(torch.exp(old_lse - new_lse))
                        w_new = torch.nan_to_num(torch.exp(tile_lse - new_lse))
                        first[k][rows] = first[k][rows] * w_old + tile_mean * w_new
                        second[k][rows] = new_lse
        outputs: list[Tensor] = []
        thresholds: list[Tensor | None] = []
        for k, term in enumerate(terms):
            if isinstance(term, LogSumExp):
                values = topk_values[k]
                if term.top_k is not None:
                    if values is None or values.shape[1] == 0:
                        lse = torch.full((ra,), NEG_INF, dtype=dtype, device=device)
                        thresholds.append(
                            torch.full((ra,), float("inf"), dtype=dtype, device=device)
                        )
                    else:
                        lse = torch.logsumexp(values, dim=1)
                        thresholds.append(values[:, -1])
                else:
                    lse = first[k]
                    thresholds.append(None)
                outputs += [lse, torch.zeros(ra, dtype=dtype, device=device)]
            else:
                thresholds.append(None)
                outputs += [first[k], second[k]]
        ctx.save_for_backward(anchors, candidates, bias, scale, *outputs)
        ctx.meta = (anchor_ids, candidate_ids, list(terms), tile, has_bias, thresholds)
        return tuple(outputs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        anchors, candidates, bias, scale, *outputs = ctx.saved_tensors
        anchor_ids, candidate_ids, terms, tile, has_bias, thresholds = ctx.meta
        b = bias if has_bias else None
        dtype = anchors.dtype
        grad_a = torch.zeros_like(anchors)
        grad_c = torch.zeros_like(candidates)
        grad_b = torch.zeros_like(bias) if has_bias else None
        grad_s = torch.zeros((), dtype=dtype, device=anchors.device)
        ra, rc = anchors.shape[0], candidates.shape[0]
        g = [(grads[2 * k], grads[2 * k + 1]) for k in range(len(terms))]
        for i0 in range(0, ra, tile):
            ids_a = anchor_ids.select(slice(i0, i0 + tile))
            rows = slice(i0, min(i0 + tile, ra))
            for j0 in range(0, rc, tile):
                ids_c = candidate_ids.select(slice(j0, j0 + tile))
                masks = [term.mask.block(ids_a, ids_c) for term in terms]
                if not any(bool(m.any()) for m in masks):
                    continue
                a, c = anchors[i0 : i0 + tile], candidates[j0 : j0 + tile]
                dots = a @ c.T
                logits = dots * scale
                if b is not None:
                    logits = logits + b[j0 : j0 + tile][None, :]
                dlogits = torch.zeros_like(logits)
                for k, (term, mask) in enumerate(zip(terms, masks, strict=True)):
                    g_first, g_second = g[k]
                    out_first, out_second = outputs[2 * k], outputs[2 * k + 1]
                    if isinstance(term, LogSumExp):
                        if g_first is None:
                            continue
                        keep = mask
                        if term.top_k is not None:
                            keep = mask & (logits >= thresholds[k][rows][:, None])
                        p = torch.exp(logits - out_first[rows][:, None]) * keep
                        dlogits += torch.nan_to_num(p) * g_first[rows][:, None]
                    elif isinstance(term, WeightedSum):
                        if g_first is None:
                            continue
                        w = _weights(term, ids_a, ids_c, dtype)
                        w = mask.to(dtype) if w is None else torch.where(mask, w, 0.0)
                        dlogits += w * g_first[rows][:, None]
                    else:
                        lse, mean = out_second[rows][:, None], out_first[rows][:, None]
                        p = torch.nan_to_num(torch.exp(logits - lse)) * mask
                        if g_first is not None:
                            factor = 1.0 if term.detach_weights else (1.0 + logits - mean)
                            dlogits += torch.where(mask, p * factor, 0.0) * g_first[rows][:, None]
                        if g_second is not None:
                            dlogits += p * g_second[rows][:, None]
                grad_a[i0 : i0 + tile] += (dlogits @ c) * scale
                grad_c[j0 : j0 + tile] += (dlogits.T @ a) * scale
                if grad_b is not None:
                    grad_b[j0 : j0 + tile] += dlogits.sum(dim=0)
                grad_s += (dlogits * dots).sum()
        return grad_a, grad_c, grad_b, grad_s, None, None, None, None


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
    bias = candidate_bias if candidate_bias is not None else anchors.new_zeros(0)
    outputs = _TiledPairReduce.apply(
        anchors, candidates, bias, scale_t, anchor_ids, candidate_ids, list(terms), tile_size
    )
    results: list[Tensor | tuple[Tensor, Tensor]] = []
    for k, term in enumerate(terms):
        first, second = outputs[2 * k], outputs[2 * k + 1]
        results.append(first if isinstance(term, LogSumExp) else (first, second))
    return results
