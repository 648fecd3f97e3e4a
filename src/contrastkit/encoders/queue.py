"""MoCo's queue of negative keys, as a ring buffer (He et al., CVPR 2020).

Stored row-wise: ``queue`` is ``[size, dim]`` (MoCo's code keeps ``[dim, K]``; the FT code
``[K, dim]``, as here). It starts as L2-normalised standard-normal noise, exactly like MoCo,
and :attr:`FeatureQueue.features` always returns the full ``[size, dim]`` buffer, random
initial rows included (MoCo's behaviour; after ``size / batch`` steps they are all gone).
``num_filled`` says how many rows hold real keys, for callers that want only those
(``queue.features[:queue.num_filled]`` is only meaningful before the first wrap-around, when
the filled rows are ``0 .. num_filled - 1``).

Both ``ptr`` (next row to write) and ``num_filled`` are buffers, so ``state_dict`` checkpoints
the position; the queue moves with ``.to(device)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeatureQueue(nn.Module):
    """Ring buffer of ``size`` keys of dimension ``dim``.

    Args:
        dim: key dimension ``D``.
        size: number of stored keys ``K`` (default 65536, MoCo).
        normalize: L2-normalise keys in :meth:`enqueue` (default True; a no-op up to rounding
            for keys that are already unit-norm).
    """

    queue: Tensor
    ptr: Tensor
    filled: Tensor

    def __init__(self, dim: int, size: int = 65536, *, normalize: bool = True) -> None:
        super().__init__()
        if dim < 1 or size < 1:
            raise ValueError(f"dim and size must be >= 1; got dim={dim}, size={size}")
        self.dim = dim
        self.size = size
        self.normalize = normalize
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @property
    def features(self) -> Tensor:
        """The whole ``[size, dim]`` buffer (random initial rows included, as in MoCo).
        Read-only use: it is the live storage, so clone before modifying it in place."""
        return self.queue

    @property
    def num_filled(self) -> int:
        """How many rows hold enqueued keys (``min(total enqueued, size)``)."""
        return int(self.filled)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` ([B, dim]; detached, cast to the queue's dtype and device) at ``ptr``,
        oldest rows first, and advance ``ptr`` by ``B`` modulo ``size``.

        Writes wrap around the end of the buffer, so ``size`` need not be a multiple of ``B``
        (unlike MoCo's ``assert K % batch_size == 0``): with ``size = 5`` and batches of 3 the
        second batch fills rows 3, 4, 0. If ``B > size`` only the last ``size`` keys are kept,
        placed where they would have landed. In distributed training, gather the keys of all
        processes first (MoCo's ``concat_all_gather``) and enqueue the same keys everywhere.
        """
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape [B, {self.dim}]; got {tuple(keys.shape)}")
        keys = keys.detach().to(device=self.queue.device, dtype=self.queue.dtype)
        if self.normalize:
            keys = F.normalize(keys, dim=1)
        batch = keys.shape[0]
        if batch == 0:
            return
        start = int(self.ptr)
        if batch > self.size:
            start = (start + batch - self.size) % self.size
            keys = keys[-self.size :]
        rows = (start + torch.arange(keys.shape[0], device=self.queue.device)) % self.size
        self.queue.index_copy_(0, rows, keys)
        self.ptr.fill_((int(self.ptr) + batch) % self.size)
        self.filled.fill_(min(int(self.filled) + batch, self.size))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}, normalize={self.normalize}"
