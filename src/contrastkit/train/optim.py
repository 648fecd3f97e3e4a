"""Optimizers (SGD, Adam, LARS) and the warmup-cosine learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """LARS (You et al., 2017): SGD with momentum whose step for each weight matrix is scaled by
    the trust ratio ``eta * ||w|| / ||g + wd * w||``; biases and normalisation parameters (1-D
    tensors) are excluded from adaptation and weight decay, as in SimCLR. ``eta`` defaults to
    solo-learn's 0.02 (SimCLR: 0.001); there is no learning-rate clipping.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        *,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0; got {lr}")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["eta"] * w_norm / g_norm,
                        torch.ones_like(w_norm),
                    )
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(
    name: str,
    params: Iterable[nn.Parameter],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    lars_eta: float = 0.02,
) -> torch.optim.Optimizer:
    """``adam`` (plain Adam, L2 weight decay), ``sgd`` (momentum) or ``lars``."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=lars_eta)
    raise ValueError(f"optim.name must be one of adam, sgd, lars; got {name!r}")


def warmup_cosine(step: int, *, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate: linear warmup from ~0 to 1, then cosine to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))
