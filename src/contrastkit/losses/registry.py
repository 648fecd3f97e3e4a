"""Name registry and thin ``nn.Module`` wrappers for the loss functions.

Every loss is a plain function ``loss(z, [extra inputs], *, hyperparameters...)``; its module
holds the hyperparameters and calls the function in ``forward``::

    criterion = contrastkit.losses.get("mv_dhel", temperature=0.2)
    loss = criterion(z)                 # z: [N, V, D]
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

_REGISTRY: dict[str, type[LossModule]] = {}


class LossModule(nn.Module):
    """Thin module around a loss function: ``forward(z, *inputs)`` = ``fn(z, *inputs, **hparams)``.

    Hyperparameters are checked against the function's keyword-only arguments when the module
    is built, so a misspelt name fails at once. Tensor hyperparameters are registered: an
    ``nn.Parameter`` (e.g. a learnable temperature) as a parameter, any other tensor as a
    buffer, so ``.parameters()`` and ``.to(device)`` see them.
    """

    fn: ClassVar[Callable[..., Tensor]]
    name: ClassVar[str]

    def __init__(self, **hyperparameters: Any) -> None:
        super().__init__()
        allowed = keyword_arguments(type(self).fn)
        unknown = sorted(set(hyperparameters) - set(allowed))
        if unknown:
            raise TypeError(
                f"{type(self).name}: unknown hyperparameter(s) {unknown}; "
                f"accepted: {sorted(allowed)}"
            )
        self.hyperparameters: dict[str, Any] = {}
        self._tensor_names: list[str] = []
        for key, value in {**allowed, **hyperparameters}.items():
            if isinstance(value, nn.Parameter):
                self.register_parameter(key, value)
                self._tensor_names.append(key)
            elif isinstance(value, Tensor):
                self.register_buffer(key, value)
                self._tensor_names.append(key)
            else:
                self.hyperparameters[key] = value

    def current_hyperparameters(self) -> dict[str, Any]:
        """All hyperparameters, tensors included, as passed to the loss function."""
        tensors = {key: getattr(self, key) for key in self._tensor_names}
        return {**self.hyperparameters, **tensors}

    def forward(self, z: Tensor, *inputs: Tensor) -> Tensor:
        return type(self).fn(z, *inputs, **self.current_hyperparameters())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())


def keyword_arguments(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword-only parameters of ``fn`` with their defaults."""
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def positional_inputs(fn: Callable[..., Any]) -> list[str]:
    """Names of the required positional inputs of a loss function after ``z`` (labels,
    scores, features, ...)."""
    return [
        name
        for name, p in list(inspect.signature(fn).parameters.items())[1:]
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]


def register(
    name: str,
    fn: Callable[..., Tensor],
    class_name: str,
    base: type[LossModule] = LossModule,
) -> type[LossModule]:
    """Create the module class of ``fn`` (a subclass of ``base``) and register it as ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"loss {name!r} is already registered")
    doc = f"Module form of :func:`contrastkit.losses.{name}`.\n\n{inspect.getdoc(fn) or ''}"
    if base.__doc__ and base is not LossModule:
        doc = f"{base.__doc__}\n\n{doc}"
    cls = type(class_name, (base,), {"fn": staticmethod(fn), "name": name, "__doc__": doc})
    _REGISTRY[name] = cls
    return cls


def get(name: str, **hyperparameters: Any) -> LossModule:
    """The module of the loss registered as ``name``, built with ``hyperparameters``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name](**hyperparameters)


def available() -> list[str]:
    """Names of all registered losses, sorted."""
    return sorted(_REGISTRY)


class LearnableTemperature(nn.Module):
    """Positive temperature learnt as ``exp(-log_scale)`` (CLIP), scale clamped at ``max_scale``."""

    def __init__(self, initial: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / initial)))
        self.max_scale = max_scale

    def forward(self) -> Tensor:
        return 1.0 / self.log_scale.exp().clamp(max=self.max_scale)
