"""The loss catalogue the tests iterate over: how to call each loss and its reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import contrastkit.losses as L
from tests.reference import loops


@dataclass(frozen=True)
class LossCase:
    name: str
    min_views: int = 2
    max_views: int | None = None
    # extra positional inputs after z, built from (z, generator)
    extras: Callable[[torch.Tensor, torch.Generator], tuple[Any, ...]] = lambda z, g: ()
    # hyperparameter settings to exercise (besides the defaults)
    settings: tuple[dict[str, Any], ...] = field(default_factory=lambda: ({},))
    temperature_name: str | None = "temperature"

    @property
    def fn(self) -> Callable[..., torch.Tensor]:
        return getattr(L, self.name)

    @property
    def reference(self) -> Callable[..., torch.Tensor]:
        return getattr(loops, f"ref_{self.name}")


def _labels(z: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor]:
    n = z.shape[0]
    return (torch.randint(0, max(2, n // 2), (n,), generator=g),)


def _scores(z: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor]:
    n = z.shape[0]
    s = torch.rand(n, n, generator=g, dtype=z.dtype)
    s = (s + s.T) / 2
    s.fill_diagonal_(1.0)
    return (s,)


def _features(z: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor]:
    return (torch.randn(z.shape[0], 7, generator=g, dtype=z.dtype),)


CASES: tuple[LossCase, ...] = (
    LossCase("info_nce", settings=({}, {"same_view_negatives": False})),
    LossCase("mv_infonce", settings=({}, {"same_view_negatives": False})),
    LossCase("mv_dhel"),
    LossCase("dhel", max_views=2, settings=({}, {"include_augs": False})),
    LossCase("dcl", max_views=2),
    LossCase("dclw", max_views=2, settings=({}, {"detach_weight": False}, {"sigma": 0.2})),
    LossCase("supcon", min_views=1, extras=_labels, settings=({}, {"base_temperature": 0.07})),
    LossCase("pvc", settings=({}, {"aggregation": "arithmetic"})),
    LossCase("avg_infonce"),
    LossCase("kcl", max_views=2, temperature_name=None, settings=({}, {"t": 0.5, "gamma": 2.0})),
    LossCase("hard_info_nce", settings=({"top_k": 1}, {"top_k": 3}, {"top_k": 100})),
    LossCase(
        "cacr",
        temperature_name=None,
        settings=({}, {"detach_weights": True}, {"tau_neg": 2.0, "tau_pos": 0.5, "alpha": 0.7}),
    ),
    LossCase("cwcl", max_views=2, settings=({}, {"symmetric": False})),
    LossCase("soft_supcon", min_views=1, extras=_scores),
    LossCase("siglip", settings=({}, {"bias": 0.5})),
    LossCase("simcse"),
    LossCase(
        "soft_contrastive",
        max_views=2,
        extras=_features,
        temperature_name=None,
        settings=({}, {"detach_input": True}, {"normalize": True}),
    ),
    LossCase("alignment", min_views=2, temperature_name=None, settings=({}, {"alpha": 3.0})),
    LossCase("uniformity", min_views=1, temperature_name=None, settings=({}, {"t": 0.5})),
)

CASE_BY_NAME = {case.name: case for case in CASES}


def random_batch(
    n: int, v: int, d: int, *, seed: int, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, d, generator=g, dtype=dtype)
