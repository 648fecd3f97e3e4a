"""Input checks, dtype handling, normalisation and reduction shared by every loss."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.core import compute_dtype, local_anchor_range
from contrastkit.core.distributed import all_reduce_sum

Reduction = Literal["mean", "none"]
P = ParamSpec("P")
R = TypeVar("R")

_SHAPE = "[N, V, D] (N instances, V views or modalities, D features)"


def full_precision(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a loss with autocast disabled: its logits, log-sum-exps and reductions are computed
    in the inputs' compute dtype (>= float32) even inside an autocast region."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def prepare(
    z: object,
    *,
    loss: str,
    normalize: bool,
    min_views: int = 2,
    max_views: int | None = None,
    min_instances: int = 2,
) -> Tensor:
    """Validate ``z`` and return it in the compute dtype (>= float32), L2-normalised if asked.

    Raises ``TypeError`` for a non-tensor or non-floating ``z`` and ``ValueError`` for a wrong
    rank, too few instances or views, or NaN/Inf values, each naming the argument and the
    expected shape.
    """
    if not isinstance(z, Tensor):
        raise TypeError(
            f"{loss}: z must be a torch.Tensor of shape {_SHAPE}; got {type(z).__name__}"
        )
    if not z.is_floating_point():
        raise TypeError(f"{loss}: z must be a floating-point tensor; got dtype {z.dtype}")
    if z.dim() != 3:
        raise ValueError(
            f"{loss}: z must have shape {_SHAPE}; got {z.dim()} dimensions, shape {tuple(z.shape)}"
        )
    n, v, d = z.shape
    if n < min_instances:
        raise ValueError(
            f"{loss}: z must hold N >= {min_instances} instances (shape {_SHAPE}); "
            f"got N={n}, shape {tuple(z.shape)}"
        )
    if v < min_views or (max_views is not None and v > max_views):
        wanted = f"V = {min_views}" if max_views == min_views else f"V >= {min_views}"
        if max_views is not None and max_views != min_views:
            wanted = f"{min_views} <= V <= {max_views}"
        raise ValueError(
            f"{loss}: z must have {wanted} views (shape {_SHAPE}); "
            f"got V={v}, shape {tuple(z.shape)}"
        )
    if d < 1:
        raise ValueError(f"{loss}: z must have D >= 1 features; got shape {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{loss}: z contains NaN or Inf values (shape {tuple(z.shape)})")
    z = z.to(compute_dtype(z.dtype))
    if normalize:
        z = F.normalize(z, p=2, dim=-1, eps=1e-12)
    return z


def check_positive(value: float | Tensor, *, name: str, loss: str) -> None:
    """``ValueError`` unless ``value`` is a finite number > 0 (a float or a 0-d tensor)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{loss}: {name} must be a scalar; got a tensor of shape {tuple(value.shape)}"
            )
        number = float(value.detach())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise TypeError(f"{loss}: {name} must be a positive number; got {type(value).__name__}")
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{loss}: {name} must be > 0; got {number}")


def check_reduction(reduction: str, *, loss: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"{loss}: reduction must be 'mean' or 'none'; got {reduction!r}")


def check_choice(value: object, choices: tuple[object, ...], *, name: str, loss: str) -> None:
    if value not in choices:
        raise ValueError(f"{loss}: {name} must be one of {choices}; got {value!r}")


def check_labels(labels: object, n: int, *, loss: str, device: torch.device) -> Tensor:
    """``labels`` must be an integer tensor of shape ``[N]``; returned as int64 on ``device``."""
    if not isinstance(labels, Tensor):
        raise TypeError(
            f"{loss}: labels must be an integer torch.Tensor of shape [N] = [{n}]; "
            f"got {type(labels).__name__}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"{loss}: labels must be an integer tensor of shape [N]; got dtype {labels.dtype}"
        )
    if labels.shape != (n,):
        raise ValueError(
            f"{loss}: labels must have shape [N] = [{n}] (one label per instance of z); "
            f"got shape {tuple(labels.shape)}"
        )
    return labels.to(device=device, dtype=torch.long)


def reduce(per_instance: Tensor, reduction: Reduction) -> Tensor:
    """``[N]`` per-instance losses to the requested reduction.

    Inside :func:`contrastkit.core.local_anchors` (distributed local loss) only the local
    instances count: ``"none"`` gives the local values and ``"mean"`` their sum divided by the
    number of local instances summed over processes (``N`` with equal shares; the local count
    in a single process).
    """
    local = local_anchor_range()
    if local is not None:
        start, stop = local
        if reduction == "none":
            return per_instance[start:stop]
        count = all_reduce_sum(per_instance.new_tensor(float(stop - start)))
        return per_instance[start:stop].sum() / count
    return per_instance.mean() if reduction == "mean" else per_instance


def reduce_valid(
    per_instance: Tensor, valid: Tensor, reduction: Reduction, *, loss: str, why: str
) -> Tensor:
    """Reduction for losses where some instances may have no positive.

    Invalid instances are 0 in ``reduction="none"`` and excluded from the mean; a batch with no
    valid instance is a ``ValueError`` (never a silent 0 or NaN). Inside
    :func:`contrastkit.core.local_anchors` the sum runs over the local instances and the count
    of valid instances is summed over processes (``torch.distributed`` all-reduce).
    """
    local = local_anchor_range()
    if local is not None:
        start, stop = local
        valid, per_instance = valid[start:stop], per_instance[start:stop]
        count = all_reduce_sum(valid.sum().to(per_instance.dtype).detach())
    else:
        count = valid.sum().to(per_instance.dtype)
    if not bool(count > 0):
        raise ValueError(
            f"{loss}: no anchor in the batch has a positive ({why}); the loss is undefined"
        )
    per_instance = torch.where(valid, per_instance, torch.zeros_like(per_instance))
    if reduction == "none":
        return per_instance
    return per_instance.sum() / count


def pair_views(num_views: int) -> list[tuple[int, int]]:
    """All unordered view pairs ``(a, b)`` with ``a < b``."""
    return [(a, b) for a in range(num_views) for b in range(a + 1, num_views)]
