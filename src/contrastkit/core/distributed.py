"""Distributed training: gather embeddings across processes with gradient.

The simplest exact pattern: every process gathers the global batch (``gather_with_grad``) and
computes the loss on it. Each process then holds the same global loss; the gather's backward
sums, over processes, the gradients that reach each process's own rows, so after data-parallel
gradient averaging every parameter gets exactly the gradient of a single process on the global
batch. This works for every loss unchanged (labels and other per-instance inputs are gathered
with :func:`gather`); its cost is that each process computes the whole loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of processes (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _check_same_shape(x: Tensor) -> None:
    shape = torch.tensor(list(x.shape), device=x.device)
    shapes = [torch.zeros_like(shape) for _ in range(world_size())]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        found = [tuple(s.tolist()) for s in shapes]
        raise ValueError(f"gather: every process must pass the same shape; got {found}")


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums the gradient of the gathered tensor over processes
    (all_reduce, which gloo supports) and returns this process's slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` of every process along dim 0 (rank order), differentiably.

    Backward: each process receives the sum over processes of the gradient of its own rows.
    Without torch.distributed (or with one process) returns ``x`` unchanged.
    """
    if world_size() == 1:
        return x
    _check_same_shape(x)
    return _GatherWithGrad.apply(x)


def gather(x: Tensor) -> Tensor:
    """Concatenate ``x`` of every process along dim 0, without gradient (labels, ids)."""
    if world_size() == 1:
        return x
    _check_same_shape(x)
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
