"""Distributed training: gather embeddings across processes with gradient.

Two exact patterns, both built on :func:`gather_with_grad` (all_gather forward; backward sums
the gradient of each process's rows over processes):

* **global loss**: every process computes the loss on the gathered global batch. Each holds
  the same loss ``L``; after data-parallel gradient averaging every parameter gets exactly
  ``dL/dθ`` of one process on the global batch. Works for every loss; each process pays for
  the whole loss.
* **local loss** (:func:`local_loss`, the default of the trainer): each process's own
  instances are the anchors and the gathered batch the candidates (open_clip's
  ``local_loss=True``), so each process computes ``1/world`` of the loss. Its value is
  ``world · Σ_{local i} loss_i / N`` (their mean over processes is ``L``), which gives the same
  averaged gradients. Every loss whose mean is a mean of per-instance terms has this form;
  uniformity (a log-mean over all pairs) falls back to the global loss.

Shapes, dtypes and batch sizes are checked across processes first: a mismatch is a
``ValueError`` naming every process's value, not a hang in the collective.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of processes (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


_DTYPES = (
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
)
_MAX_DIMS = 8


def _check_same_shape(x: Tensor, what: str = "gather") -> None:
    """Every process must pass the same dtype and shape (else all_gather would hang or mix
    garbage): one fixed-size all_gather of (dtype code, rank, shape) and a ``ValueError``
    listing every process's value."""
    if x.dim() > _MAX_DIMS:
        raise ValueError(f"{what}: tensors of at most {_MAX_DIMS} dimensions; got {x.dim()}")
    code = _DTYPES.index(x.dtype) if x.dtype in _DTYPES else len(_DTYPES)
    header = torch.full((2 + _MAX_DIMS,), -1, dtype=torch.long, device=x.device)
    header[0], header[1] = code, x.dim()
    header[2 : 2 + x.dim()] = torch.tensor(list(x.shape), dtype=torch.long)
    headers = [torch.zeros_like(header) for _ in range(world_size())]
    dist.all_gather(headers, header)
    if any(not torch.equal(h, header) for h in headers):
        found = [
            f"rank {r}: {_DTYPES[h[0]] if h[0] < len(_DTYPES) else 'other dtype'} "
            f"{tuple(h[2 : 2 + h[1]].tolist())}"
            for r, h in enumerate(headers)
        ]
        raise ValueError(
            f"{what}: every process must pass the same dtype and shape (equal per-process batch "
            f"sizes); got {'; '.join(found)}"
        )


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


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over processes (a new tensor, no gradient); ``x`` itself with one process."""
    if world_size() == 1:
        return x
    total = x.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def local_loss(loss: Callable[..., Tensor], z: Tensor, *inputs: Tensor | None) -> Tensor:
    """The distributed loss of this process's ``z [n, V, D]`` (and per-instance ``inputs``,
    e.g. labels ``[n]``), exact after data-parallel gradient averaging.

    Gathers ``z`` with gradient (and floating inputs that require gradient; the others, such as
    labels, without), then computes the loss with this process's ``n`` instances as anchors
    and all ``world · n`` as candidates (:func:`contrastkit.core.local_anchors`), scaled by
    ``world`` (see the module docstring). ``loss`` is a loss function or a
    :class:`contrastkit.losses.LossModule` with ``reduction="mean"``. One process: ``loss(z,
    *inputs)``.
    """
    from contrastkit.core.pair_reduce import local_anchors

    world = world_size()
    if world == 1:
        return loss(z, *inputs)
    z_all = gather_with_grad(z)
    gathered = [
        None
        if x is None
        else gather_with_grad(x)
        if x.is_floating_point() and x.requires_grad
        else gather(x)
        for x in inputs
    ]
    fn = getattr(type(loss), "fn", loss)
    if not getattr(fn, "per_instance_mean", True):
        return loss(z_all, *gathered)  # the global loss on every process
    start = rank() * z.shape[0]
    with local_anchors(start, start + z.shape[0]):
        value = loss(z_all, *gathered)
    if value.dim() != 0:
        raise ValueError("local_loss needs reduction='mean' (a scalar loss)")
    return value * world
