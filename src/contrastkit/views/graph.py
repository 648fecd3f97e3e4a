"""Graph views of GRACE (Zhu et al. 2020, official code ``CRIPAC-DIG/GRACE``): edge dropping and
feature-column masking.

- :func:`drop_edges` follows the official code, which calls PyG's ``dropout_adj(edge_index,
  p)`` with its default ``force_undirected=False``: every *directed* edge (every column of
  ``edge_index``) is dropped independently with probability ``p``. On an undirected graph
  stored in both directions the view is therefore generally *directed* (``u -> v`` may survive
  while ``v -> u`` is dropped). ``undirected=True`` drops both directions together instead
  (one draw per unordered pair ``{u, v}``, as ``force_undirected=True``).
- :func:`mask_features` follows GRACE's ``drop_feature``: one Bernoulli(``p``) draw per feature
  *column*, the same for every node; masked columns are set to 0 (no rescaling).

Randomness comes from ``generator`` (a ``torch.Generator`` on the tensors' device) or, when it is
``None``, from torch's global generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["drop_edges", "mask_features"]


def _check_probability(p: float, *, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name}: p must be a probability in [0, 1]; got {p!r}")
    return float(p)


def drop_edges(
    edge_index: Tensor,
    p: float,
    generator: torch.Generator | None = None,
    *,
    undirected: bool = False,
) -> Tensor:
    """Remove each edge with probability ``p``; returns the kept columns of ``edge_index``
    (in their original order).

    Args:
        edge_index: ``[2, E]`` integer tensor (source, target).
        p: drop probability in ``[0, 1]``.
        generator: optional ``torch.Generator`` (same device as ``edge_index``).
        undirected: ``False`` (GRACE): columns are dropped independently. ``True``: one draw per
            unordered pair, so ``u -> v`` and ``v -> u`` (and duplicates) share their fate.
    """
    p = _check_probability(p, name="drop_edges")
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError("drop_edges: edge_index must be a [2, E] integer tensor")
    num_edges = edge_index.shape[1]
    if num_edges == 0:
        return edge_index
    device = edge_index.device
    if not undirected:
        keep = torch.rand(num_edges, generator=generator, device=device) >= p
        return edge_index[:, keep]
    low = torch.minimum(edge_index[0], edge_index[1]).long()
    high = torch.maximum(edge_index[0], edge_index[1]).long()
    size = int(high.max()) + 1
    pairs, inverse = torch.unique(low * size + high, return_inverse=True)
    keep_pair = torch.rand(pairs.numel(), generator=generator, device=device) >= p
    return edge_index[:, keep_pair[inverse]]


def mask_features(x: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Zero each feature column with probability ``p`` (one draw per column, shared by all
    nodes). Returns a new tensor; ``x`` is not modified. Differentiable w.r.t. ``x``."""
    p = _check_probability(p, name="mask_features")
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError("mask_features: x must be a [N, F] tensor")
    keep = torch.rand(x.shape[1], generator=generator, device=x.device) >= p
    return x.masked_fill(~keep, 0)
