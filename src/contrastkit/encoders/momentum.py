"""Momentum (EMA) copy of a network: MoCo's key encoder, BYOL's target network.

    θ_k ← m θ_k + (1 − m) θ_q            (parameters)
    buffers (BN running statistics, counters) are copied from the online network

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020
(``m = 0.999``; the FT paper uses 0.99 on ImageNet-100); Grill et al., BYOL, 2020 (cosine
schedule of ``m`` towards 1, :func:`momentum_schedule`).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def momentum_schedule(base: float, step: int, total: int) -> float:
    """BYOL's cosine increase of the momentum from ``base`` (step 0) to 1 (step ``total``):

        m(step) = 1 − (1 − base) · (cos(π · step / total) + 1) / 2

    ``step`` is clamped to ``[0, total]``.
    """
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"base momentum must be in [0, 1]; got {base}")
    if total <= 0:
        raise ValueError(f"total must be >= 1; got {total}")
    progress = min(max(step, 0), total) / total
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class MomentumEncoder(nn.Module):
    """A frozen deep copy of ``module`` that follows it by exponential moving average.

    The copy's parameters have ``requires_grad=False``; :meth:`forward` runs under
    ``torch.no_grad()``. Call :meth:`update` once per step, before computing the keys (MoCo's
    order). Train/eval mode follows ``.train()`` / ``.eval()`` of this wrapper as usual (MoCo
    keeps the key encoder in train mode). The copy is stored as ``self.module``, so a
    ``state_dict`` holds it under ``module.*``.

    Args:
        module: the online network to copy.
        momentum: ``m`` in ``[0, 1]`` (default 0.99); ``m = 0`` copies, ``m = 1`` freezes.
    """

    def __init__(self, module: nn.Module, momentum: float = 0.99) -> None:
        super().__init__()
        self._check(momentum)
        self.momentum = float(momentum)
        self.module = copy.deepcopy(module)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @staticmethod
    def _check(momentum: float) -> None:
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"momentum must be in [0, 1]; got {momentum}")

    @torch.no_grad()
    def update(self, online: nn.Module, momentum: float | None = None) -> None:
        """EMA step ``θ_k ← m θ_k + (1 − m) θ_q`` towards ``online`` (same architecture);
        buffers are copied. ``momentum`` overrides ``self.momentum`` for this call (e.g. from
        :func:`momentum_schedule`)."""
        m = self.momentum if momentum is None else float(momentum)
        self._check(m)
        targets = dict(self.module.named_parameters())
        sources = dict(online.named_parameters())
        if targets.keys() != sources.keys():
            raise ValueError("online module does not have the momentum encoder's parameters")
        names = list(targets)
        target_list = [targets[n] for n in names]
        source_list = [sources[n].detach().to(targets[n].dtype) for n in names]
        if target_list:
            torch._foreach_mul_(target_list, m)
            torch._foreach_add_(target_list, source_list, alpha=1.0 - m)
        target_buffers = dict(self.module.named_buffers())
        source_buffers = dict(online.named_buffers())
        if target_buffers.keys() != source_buffers.keys():
            raise ValueError("online module does not have the momentum encoder's buffers")
        for name, buffer in target_buffers.items():
            buffer.copy_(source_buffers[name])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}"
