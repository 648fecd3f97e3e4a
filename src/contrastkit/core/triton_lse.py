"""Triton kernels for the core's masked log-sum-exp (forward and backward).

Scope: :class:`LogSumExp` terms without ``top_k`` (NT-Xent, CLIP, MV-InfoNCE, MV-DHEL, DHEL,
DCL, PVC, uniformity, KCL); other terms go through the PyTorch tiled path, which is also the
CPU implementation. The pair set is evaluated inside the kernel from the rows' instance, view
and label ids and the set's 6-bit relation table, so no mask is ever materialised.

    forward   lse[a]  = LSE_{c in mask(a)} (scale <x_a, y_c> + bias_c)       (online, per tile)
    backward  P[a,c]  = g[a] exp(logit[a,c] - lse[a]) [c in mask(a)]
              dx[a]   = scale Σ_c P[a,c] y_c,     dy[c] = scale Σ_a P[a,c] x_a,
              dbias[c] = Σ_a P[a,c],  dscale = Σ_a,c P[a,c] <x_a, y_c>

Inputs are computed in float32 (or float64 is refused: use the PyTorch paths). Correctness is
tested on the CPU with ``TRITON_INTERPRET=1``; enable the path with
``core_backend("triton")``. It has not been measured on a GPU yet, so ``"auto"`` does not pick
it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from contrastkit.core.pair_mask import PairMask, Relation, RowIds

try:  # optional dependency: pip install "contrastkit[triton]"
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is missing
    triton = None
    tl = None


def available() -> bool:
    return triton is not None


def relation_bits(mask: PairMask) -> int:
    """The set as a 6-bit integer: bit ``code`` is set for each :class:`Relation` in it."""
    return sum(1 << int(r) for r in Relation if r in mask)


if triton is not None:

    @triton.jit
    def _allowed(ia, va, la, ic, vc, lc, bits):
        si = ia[:, None] == ic[None, :]
        ov = (va[:, None] != vc[None, :]).to(tl.int32)
        ol = (la[:, None] != lc[None, :]).to(tl.int32)
        code = tl.where(si, ov, 2 + 2 * ol + ov)
        return ((bits >> code) & 1) == 1

    @triton.jit
    def _load_rows(ptr, index, ks, n, D):
        """Rows ``index`` of a row-major [n, D] matrix (zeros outside)."""
        return tl.load(
            ptr + index[:, None] * D + ks[None, :],
            mask=(index[:, None] < n) & (ks[None, :] < D),
            other=0.0,
        )

    @triton.jit
    def _load_ids(instance_ptr, view_ptr, label_ptr, index, n, missing):
        ok = index < n
        return (
            tl.load(instance_ptr + index, mask=ok, other=missing),
            tl.load(view_ptr + index, mask=ok, other=missing),
            tl.load(label_ptr + index, mask=ok, other=missing),
        )

    @triton.jit
    def _forward(
        x_ptr,
        y_ptr,
        bias_ptr,
        ia_ptr,
        va_ptr,
        la_ptr,
        ic_ptr,
        vc_ptr,
        lc_ptr,
        out_ptr,
        RA,
        RC,
        D,
        scale,
        bits,
        BLOCK_A: tl.constexpr,
        BLOCK_C: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        pid = tl.program_id(0)
        rows = pid * BLOCK_A + tl.arange(0, BLOCK_A)
        ks = tl.arange(0, BLOCK_D)
        row_ok = rows < RA
        x = _load_rows(x_ptr, rows, ks, RA, D)
        ia, va, la = _load_ids(ia_ptr, va_ptr, la_ptr, rows, RA, -1)
        m = tl.full((BLOCK_A,), float("-inf"), tl.float32)
        s = tl.zeros((BLOCK_A,), tl.float32)
        for j0 in range(0, RC, BLOCK_C):
            cols = j0 + tl.arange(0, BLOCK_C)
            col_ok = cols < RC
            y = _load_rows(y_ptr, cols, ks, RC, D)
            bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0)
            ic, vc, lc = _load_ids(ic_ptr, vc_ptr, lc_ptr, cols, RC, -2)
            logits = tl.dot(x, tl.trans(y)) * scale + bias[None, :]
            keep = _allowed(ia, va, la, ic, vc, lc, bits) & col_ok[None, :] & row_ok[:, None]
            logits = tl.where(keep, logits, float("-inf"))
            new_m = tl.maximum(m, tl.max(logits, 1))
            safe_m = tl.where(new_m == float("-inf"), 0.0, new_m)
            s = s * tl.exp(m - safe_m) + tl.sum(tl.exp(logits - safe_m[:, None]), 1)
            m = new_m
        lse = tl.where(s > 0, m + tl.log(tl.where(s > 0, s, 1.0)), float("-inf"))
        tl.store(out_ptr + rows, lse, mask=row_ok)

    @triton.jit
    def _backward_anchors(
        x_ptr,
        y_ptr,
        bias_ptr,
        ia_ptr,
        va_ptr,
        la_ptr,
        ic_ptr,
        vc_ptr,
        lc_ptr,
        lse_ptr,
        g_ptr,
        dx_ptr,
        dscale_ptr,
        RA,
        RC,
        D,
        scale,
        bits,
        BLOCK_A: tl.constexpr,
        BLOCK_C: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        pid = tl.program_id(0)
        rows = pid * BLOCK_A + tl.arange(0, BLOCK_A)
        ks = tl.arange(0, BLOCK_D)
        row_ok = rows < RA
        x = _load_rows(x_ptr, rows, ks, RA, D)
        ia, va, la = _load_ids(ia_ptr, va_ptr, la_ptr, rows, RA, -1)
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
        lse = tl.where(lse == float("-inf"), 0.0, lse)
        g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
        dx = tl.zeros((BLOCK_A, BLOCK_D), tl.float32)
        dscale = tl.zeros((BLOCK_A,), tl.float32)
        for j0 in range(0, RC, BLOCK_C):
            cols = j0 + tl.arange(0, BLOCK_C)
            col_ok = cols < RC
            y = _load_rows(y_ptr, cols, ks, RC, D)
            bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0)
            ic, vc, lc = _load_ids(ic_ptr, vc_ptr, lc_ptr, cols, RC, -2)
            dots = tl.dot(x, tl.trans(y))
            keep = _allowed(ia, va, la, ic, vc, lc, bits) & col_ok[None, :] & row_ok[:, None]
            p = tl.where(keep, tl.exp(dots * scale + bias[None, :] - lse[:, None]), 0.0)
            p = p * g[:, None]
            dx += tl.dot(p, y)
            dscale += tl.sum(p * dots, 1)
        tl.store(
            dx_ptr + rows[:, None] * D + ks[None, :],
            dx * scale,
            mask=row_ok[:, None] & (ks[None, :] < D),
        )
        tl.store(dscale_ptr + rows, dscale, mask=row_ok)

    @triton.jit
    def _backward_candidates(
        x_ptr,
        y_ptr,
        bias_ptr,
        ia_ptr,
        va_ptr,
        la_ptr,
        ic_ptr,
        vc_ptr,
        lc_ptr,
        lse_ptr,
        g_ptr,
        dy_ptr,
        dbias_ptr,
        RA,
        RC,
        D,
        scale,
        bits,
        BLOCK_A: tl.constexpr,
        BLOCK_C: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        pid = tl.program_id(0)
        cols = pid * BLOCK_C + tl.arange(0, BLOCK_C)
        ks = tl.arange(0, BLOCK_D)
        col_ok = cols < RC
        y = _load_rows(y_ptr, cols, ks, RC, D)
        bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0)
        ic, vc, lc = _load_ids(ic_ptr, vc_ptr, lc_ptr, cols, RC, -2)
        dy = tl.zeros((BLOCK_C, BLOCK_D), tl.float32)
        dbias = tl.zeros((BLOCK_C,), tl.float32)
        for i0 in range(0, RA, BLOCK_A):
            rows = i0 + tl.arange(0, BLOCK_A)
            row_ok = rows < RA
            x = _load_rows(x_ptr, rows, ks, RA, D)
            ia, va, la = _load_ids(ia_ptr, va_ptr, la_ptr, rows, RA, -1)
            lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
            lse = tl.where(lse == float("-inf"), 0.0, lse)
            g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
            logits = tl.dot(x, tl.trans(y)) * scale + bias[None, :]
            keep = _allowed(ia, va, la, ic, vc, lc, bits) & col_ok[None, :] & row_ok[:, None]
            p = tl.where(keep, tl.exp(logits - lse[:, None]), 0.0) * g[:, None]
            dy += tl.dot(tl.trans(p), x)
            dbias += tl.sum(p, 0)
        tl.store(
            dy_ptr + cols[:, None] * D + ks[None, :],
            dy * scale,
            mask=col_ok[:, None] & (ks[None, :] < D),
        )
        tl.store(dbias_ptr + cols, dbias, mask=col_ok)


def _ids(ids: RowIds) -> tuple[Tensor, Tensor, Tensor]:
    label = ids.instance if ids.label is None else ids.label
    # without labels, instance ids stand in for labels (so other instances are other-label)
    return (
        ids.instance.to(torch.int32).contiguous(),
        ids.view.to(torch.int32).contiguous(),
        label.to(torch.int32).contiguous(),
    )


def _blocks(d: int) -> tuple[int, int, int]:
    block_d = max(16, triton.next_power_of_2(d))
    block = 32 if block_d <= 128 else 16
    return block, block, block_d


class _TritonLSE(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        y: Tensor,
        bias: Tensor,
        scale: Tensor,
        ids_a: tuple[Tensor, ...],
        ids_c: tuple[Tensor, ...],
        bits: int,
    ) -> Tensor:
        ra, d = x.shape
        rc = y.shape[0]
        out = torch.empty(ra, dtype=torch.float32, device=x.device)
        ba, bc, bd = _blocks(d)
        _forward[(triton.cdiv(ra, ba),)](
            x,
            y,
            bias,
            *ids_a,
            *ids_c,
            out,
            ra,
            rc,
            d,
            float(scale),
            bits,
            BLOCK_A=ba,
            BLOCK_C=bc,
            BLOCK_D=bd,
        )
        ctx.save_for_backward(x, y, bias, scale, out)
        ctx.meta = (ids_a, ids_c, bits)
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, y, bias, scale, lse = ctx.saved_tensors
        ids_a, ids_c, bits = ctx.meta
        ra, d = x.shape
        rc = y.shape[0]
        g = g.contiguous().to(torch.float32)
        dx, dy = torch.empty_like(x), torch.empty_like(y)
        dbias = torch.empty(rc, dtype=torch.float32, device=x.device)
        dscale = torch.empty(ra, dtype=torch.float32, device=x.device)
        ba, bc, bd = _blocks(d)
        args = (x, y, bias, *ids_a, *ids_c, lse, g)
        _backward_anchors[(triton.cdiv(ra, ba),)](
            *args, dx, dscale, ra, rc, d, float(scale), bits, BLOCK_A=ba, BLOCK_C=bc, BLOCK_D=bd
        )
        _backward_candidates[(triton.cdiv(rc, bc),)](
            *args, dy, dbias, ra, rc, d, float(scale), bits, BLOCK_A=ba, BLOCK_C=bc, BLOCK_D=bd
        )
        return dx, dy, dbias, dscale.sum().reshape(scale.shape), None, None, None


def triton_logsumexp(
    anchors: Tensor,
    candidates: Tensor,
    anchor_ids: RowIds,
    candidate_ids: RowIds,
    masks: Sequence[PairMask],
    *,
    scale: float | Tensor,
    candidate_bias: Tensor | None = None,
) -> list[Tensor]:
    """One ``[Ra]`` masked log-sum-exp per mask, by the Triton kernels (float32)."""
    if triton is None:
        raise RuntimeError("the triton path needs the optional dependency: pip install triton")
    if anchors.dtype == torch.float64:
        raise ValueError(
            "the triton path computes in float32; use the dense or tiled path for float64 inputs"
        )
    x = anchors.float().contiguous()
    y = candidates.float().contiguous()
    bias = (
        candidate_bias.float()
        if candidate_bias is not None
        else torch.zeros(y.shape[0], device=y.device)
    ).contiguous()
    scale_t = scale if isinstance(scale, Tensor) else torch.tensor(float(scale))
    scale_t = scale_t.float().to(x.device).reshape(())
    ids_a, ids_c = _ids(anchor_ids), _ids(candidate_ids)
    return [_TritonLSE.apply(x, y, bias, scale_t, ids_a, ids_c, relation_bits(m)) for m in masks]
