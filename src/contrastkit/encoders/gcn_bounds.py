"""Bound propagation through a :class:`~contrastkit.encoders.gcn.GCNEncoder` under edge dropping
(and optionally feature-column masking): the machinery of POT (Yu et al., "Provable Training
for Graph Contrastive Learning", NeurIPS 2023; official code ``VoidHaruhi/POT-GCL``, files
``GRACE/model.py::pot_loss`` and ``GRACE/my_utils.py::{get_alpha_beta, get_crown_weights}``).

Perturbation set (POT's "drop up to ``r·deg`` edges per node"), for a clean graph ``A`` and a
drop rate ``r``: every graph ``A'`` obtained by removing edges of ``A`` such that each node ``i``
loses at most ``m_i`` of its incoming edges, where (official formula; ``deg`` = in-degree)::

    m_i = min(max(deg_i - 1, 0), round(r · deg_i))        (round half to even, as numpy)

so a node keeps at least one neighbour. Both undirected drops (a subset) and GRACE's
independent directed drops are covered. With ``feature_mask=True`` the set also contains every
feature-column mask of ``x`` (any subset of columns set to 0, as GRACE's feature masking).

Entry-wise bounds of ``Â' = D̃'^{-1/2}(A'+I)D̃'^{-1/2}`` over the set (:func:`edge_drop_bounds`)::

    Â'_ii ∈ [1/d̃_i, 1/(d̃_i - m_i)]
    Â'_ij ∈ [0 or Â_ij, 1/sqrt((d̃_i - m_i)(d̃_j - m_j))]      (edge j -> i of A)

with ``d̃ = deg + 1``; the lower end is ``Â_ij`` when ``m_i = 0`` (the edge cannot be dropped
and degrees only shrink), else 0. POT's official ``A_lower`` is 0 off the diagonal for every
edge; this one is never looser, and makes ``r = 0`` collapse to the clean graph.

Three quantities are offered:

- :func:`gcn_interval_bounds`: interval bound propagation (IBP) of every layer's
  pre-activation and of the encoder output over the whole set (sound, any depth).
- :func:`compactness_lower_bound`: POT's node-compactness score ``f_i``: a lower bound of
  ``w_i · z_i(G')`` (``w_i`` = POT's target row, ``z_i`` = encoder output) obtained by the
  CROWN-style linear relaxation of the activations around the IBP pre-activation bounds,
  *evaluated on the sampled view* ``G'`` (1- or 2-layer encoders). ``variant="sound"`` is a
  valid bound for every ``G'`` in the set; ``variant="official"`` reproduces the official code
  and its three shortcuts (see :func:`compactness_lower_bound`), which make it a heuristic
  score that can exceed ``w_i · z_i(G')``.
- :func:`interval_compactness_bound`: a lower bound of ``w_i · z_i(G')`` valid for *all* ``G'``
  of the set at once (from the IBP output interval).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.encoders.gcn import GCNEncoder, _check_edge_index, _graph_operator

__all__ = [
    "EdgeDropBounds",
    "IntervalBounds",
    "compactness_lower_bound",
    "edge_drop_bounds",
    "gcn_interval_bounds",
    "interval_compactness_bound",
    "max_deleted_edges",
]

Variant = Literal["sound", "official"]


def max_deleted_edges(degree: Tensor, drop_rate: float) -> Tensor:
    """POT's per-node budget ``m = min(max(deg - 1, 0), round(drop_rate · deg))`` (int64).
    Computed in float64 with round-half-to-even, as the official numpy code."""
    if isinstance(drop_rate, bool) or not 0.0 <= float(drop_rate) <= 1.0:
        raise ValueError(f"drop_rate must be in [0, 1]; got {drop_rate!r}")
    degree = degree.long()
    scaled = torch.round(degree.double() * float(drop_rate)).long()
    return torch.minimum((degree - 1).clamp(min=0), scaled)


@dataclass(frozen=True)
class EdgeDropBounds:
    """Entry-wise bounds of the normalised adjacency over POT's edge-drop set (see the module
    docstring). Arrays are aligned with ``index``, the coalesced ``[2, nnz]`` (row = target,
    column = source) pattern of ``A + I``.

    Attributes:
        index: ``[2, nnz]`` int64 pattern of ``A + I``.
        lower, upper: ``[nnz]`` bounds of ``Â'`` on that pattern (0 elsewhere).
        clean: ``[nnz]`` values of the clean ``Â``.
        max_delete: ``[N]`` int64 budget ``m_i`` of removable incoming edges.
        degree: ``[N]`` int64 in-degree of the clean graph (self loops excluded).
        num_nodes: ``N``.
        drop_rate: the rate ``r`` the budget was computed from.
    """

    index: Tensor
    lower: Tensor
    upper: Tensor
    clean: Tensor
    max_delete: Tensor
    degree: Tensor
    num_nodes: int
    drop_rate: float

    def _matrix(self, values: Tensor, dtype: torch.dtype | None) -> Tensor:
        n = self.num_nodes
        values = values if dtype is None else values.to(dtype)
        return torch.sparse_coo_tensor(
            self.index, values, (n, n), check_invariants=False
        ).coalesce()

    def lower_matrix(self, dtype: torch.dtype | None = None) -> Tensor:
        """Sparse ``[N, N]`` lower bound of ``Â'``."""
        return self._matrix(self.lower, dtype)

    def upper_matrix(self, dtype: torch.dtype | None = None) -> Tensor:
        """Sparse ``[N, N]`` upper bound of ``Â'``."""
        return self._matrix(self.upper, dtype)

    def clean_matrix(self, dtype: torch.dtype | None = None) -> Tensor:
        """Sparse ``[N, N]`` clean ``Â``."""
        return self._matrix(self.clean, dtype)

    def within_budget(self, view_edge_index: Tensor) -> Tensor:
        """``bool [N]``: node ``i`` lost at most ``m_i`` incoming edges in the view (the view
        is in the set iff all are True and it only uses edges of the clean graph). A random
        GRACE view (each edge dropped with probability ``r``) exceeds the budget of many nodes;
        POT's official code does not check it."""
        view = _check_edge_index(view_edge_index, self.num_nodes)
        view = view[:, view[0] != view[1]]
        kept = torch.bincount(view[1], minlength=self.num_nodes)
        return self.degree - kept <= self.max_delete

    def to(self, device: torch.device | str) -> EdgeDropBounds:
        return EdgeDropBounds(
            self.index.to(device),
            self.lower.to(device),
            self.upper.to(device),
            self.clean.to(device),
            self.max_delete.to(device),
            self.degree.to(device),
            self.num_nodes,
            self.drop_rate,
        )


def edge_drop_bounds(
    edge_index: Tensor,
    num_nodes: int,
    drop_rate: float,
    *,
    dtype: torch.dtype = torch.float32,
) -> EdgeDropBounds:
    """Bounds of ``Â'`` over "each node loses at most ``m_i`` incoming edges" (POT's set for
    ``drop_rate``). ``O(E)`` memory (the official code builds dense ``[N, N]`` matrices and
    caches them per dataset and rate; cache this object the same way: it depends only on the
    clean graph and the rate). Duplicate edges count as parallel edges."""
    edge_index = _check_edge_index(edge_index, num_nodes)
    device = edge_index.device
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    source, target = edge_index[0], edge_index[1]
    degree = torch.bincount(target, minlength=num_nodes)
    max_delete = max_deleted_edges(degree, drop_rate)
    loops = torch.arange(num_nodes, device=device)
    rows = torch.cat([target, loops])
    cols = torch.cat([source, loops])
    counts = torch.sparse_coo_tensor(
        torch.stack([rows, cols]),
        torch.ones(rows.numel(), dtype=torch.float64, device=device),
        (num_nodes, num_nodes),
        check_invariants=False,
    ).coalesce()
    index, count = counts.indices(), counts.values()
    row, col = index[0], index[1]
    d_tilde = (degree + 1).double()
    d_min = (degree + 1 - max_delete).double()
    clean = count * (d_tilde[row] * d_tilde[col]).rsqrt()
    upper = count * (d_min[row] * d_min[col]).rsqrt()
    diagonal = row == col
    fixed = max_delete[row] == 0
    lower = torch.where(diagonal | fixed, clean, torch.zeros_like(clean))
    return EdgeDropBounds(
        index=index,
        lower=lower.to(dtype),
        upper=upper.to(dtype),
        clean=clean.to(dtype),
        max_delete=max_delete,
        degree=degree,
        num_nodes=num_nodes,
        drop_rate=float(drop_rate),
    )


@dataclass
class IntervalBounds:
    """Per layer ``k``: ``pre[k] = (lower, upper)`` of the pre-activation ``Â' H_{k-1} W_k + b_k``
    and ``post[k]`` of the activation's output, each ``[N, width_k]``; ``post[-1]`` bounds the
    encoder output."""

    pre: list[tuple[Tensor, Tensor]]
    post: list[tuple[Tensor, Tensor]]

    @property
    def output(self) -> tuple[Tensor, Tensor]:
        return self.post[-1]


def _activate(y: Tensor, alpha: Tensor) -> Tensor:
    return torch.where(y >= 0, y, alpha * y)


def _activation_interval(lower: Tensor, upper: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Exact image of ``[lower, upper]`` under ``y -> y (y >= 0), α y (y < 0)`` for any α."""
    a, b = _activate(lower, alpha), _activate(upper, alpha)
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    crossing = (lower < 0) & (upper > 0)
    zero = torch.zeros_like(low)
    return torch.where(crossing, torch.minimum(low, zero), low), torch.where(
        crossing, torch.maximum(high, zero), high
    )


def _interval_aggregate(
    a_lower: Tensor, a_upper: Tensor, m_lower: Tensor, m_upper: Tensor
) -> tuple[Tensor, Tensor]:
    """Bounds of ``A M`` for ``0 <= a_lower <= A <= a_upper`` (sparse) and
    ``m_lower <= M <= m_upper`` (dense), entry-wise."""
    mm = torch.sparse.mm
    low = mm(a_lower, F.relu(m_lower)) - mm(a_upper, F.relu(-m_lower))
    high = mm(a_upper, F.relu(m_upper)) - mm(a_lower, F.relu(-m_upper))
    return low, high


def _linear_interval(lower: Tensor, upper: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Bounds of ``X Wᵀ`` for ``lower <= X <= upper`` (exact per entry)."""
    center = (lower + upper) / 2
    radius = (upper - lower) / 2
    mid = center @ weight.T
    spread = radius @ weight.abs().T
    return mid - spread, mid + spread


def _check_bounds(encoder: GCNEncoder, x: Tensor, bounds: EdgeDropBounds) -> None:
    if not isinstance(encoder, GCNEncoder):
        raise TypeError(f"encoder must be a GCNEncoder; got {type(encoder).__name__}")
    if not isinstance(bounds, EdgeDropBounds):
        raise TypeError(f"bounds must be an EdgeDropBounds; got {type(bounds).__name__}")
    if x.dim() != 2 or x.shape[0] != bounds.num_nodes:
        raise ValueError(
            f"x must have shape [N, F] with N = bounds.num_nodes = {bounds.num_nodes}; "
            f"got {tuple(x.shape)}"
        )


def gcn_interval_bounds(
    encoder: GCNEncoder,
    x: Tensor,
    bounds: EdgeDropBounds,
    *,
    feature_mask: bool = False,
) -> IntervalBounds:
    """Interval bounds of every layer of ``encoder`` over the perturbation set of ``bounds``
    (plus every feature-column mask of ``x`` when ``feature_mask``), by IBP.

    Layer 1 is exact per entry of ``Â'`` (with fixed features: the official code's
    ``z1_L, z1_U``; with column masks ``X' W ∈ [(XW - |X||W|)/2, (XW + |X||W|)/2]``, also exact
    per entry); deeper layers propagate the hidden interval, which is sound but treats
    neighbours independently. Differentiable in the encoder's parameters and ``x``. Cost: one
    ``[N, F] x [F, width]`` product (two with ``feature_mask``) and ``O(nnz · width)`` per layer.
    """
    _check_bounds(encoder, x, bounds)
    return _interval_bounds(encoder, x, encoder.layers[0].transform(x), bounds, feature_mask)


def _interval_bounds(
    encoder: GCNEncoder, x: Tensor, xw: Tensor, bounds: EdgeDropBounds, feature_mask: bool
) -> IntervalBounds:
    """:func:`gcn_interval_bounds` with the first product ``xw = x W1ᵀ`` given."""
    alpha = encoder.negative_slope().to(x.dtype)
    a_lower = bounds.lower_matrix(x.dtype)
    a_upper = bounds.upper_matrix(x.dtype)
    if feature_mask:
        spread = x.abs() @ encoder.layers[0].weight.abs().T
        m_low, m_high = (xw - spread) / 2, (xw + spread) / 2
    else:
        m_low = m_high = xw
    pre: list[tuple[Tensor, Tensor]] = []
    post: list[tuple[Tensor, Tensor]] = []
    low = high = x  # the hidden interval, set after the first layer
    for k, layer in enumerate(encoder.layers):
        if k > 0:
            m_low, m_high = _linear_interval(low, high, layer.weight)
        y_low, y_high = _interval_aggregate(a_lower, a_upper, m_low, m_high)
        if layer.bias is not None:
            y_low, y_high = y_low + layer.bias, y_high + layer.bias
        pre.append((y_low, y_high))
        low, high = _activation_interval(y_low, y_high, alpha)
        post.append((low, high))
    return IntervalBounds(pre=pre, post=post)


def _relaxation(
    lower: Tensor, upper: Tensor, alpha: Tensor, *, official: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Linear bounds ``sl·y + bl <= act(y) <= su·y + bu`` on ``[lower, upper]`` for
    ``act(y) = y (y >= 0), α y (y < 0)``; returns ``(sl, bl, su, bu)``.

    Stable neurons are exact (slope 1 or α). An unstable neuron (``l < 0 < u``) uses the chord
    through ``(l, αl)`` and ``(u, u)``, slope ``λ = (u - αl)/(u - l)``, intercept
    ``(α - 1)ul/(u - l)``, as the upper bound when α <= 1 (convex) and the line ``λ y``
    through the origin as the lower bound (POT's choice of slope); swapped when α > 1.
    ``official=True`` reproduces ``get_alpha_beta``: slopes ``λ`` both sides, lower intercept 0
    and upper intercept ``(α - 1)ul/(u - αl)`` (valid for α <= 1 but looser than the chord).
    """
    active = lower >= 0
    inactive = upper <= 0
    unstable = ~(active | inactive)
    one = torch.ones_like(lower)
    stable_slope = torch.where(active, one, alpha * one)
    width = torch.where(unstable, upper - lower, one)
    chord_slope = (upper - alpha * lower) / width
    slope = torch.where(unstable, chord_slope, stable_slope)
    zero = torch.zeros_like(lower)
    if official:
        denominator = torch.where(unstable, upper - alpha * lower, one)
        intercept = (alpha - 1) * upper * lower / denominator
        return slope, zero, slope, torch.where(unstable, intercept, zero)
    intercept = torch.where(unstable, (alpha - 1) * upper * lower / width, zero)
    convex = bool(alpha <= 1)
    if convex:
        return slope, zero, slope, intercept
    return slope, intercept, slope, zero


def compactness_lower_bound(
    encoder: GCNEncoder,
    x: Tensor,
    view_graph: Tensor,
    bounds: EdgeDropBounds,
    target: Tensor,
    *,
    variant: Variant = "sound",
    x_view: Tensor | None = None,
    feature_mask: bool = False,
) -> Tensor:
    """POT's node compactness score ``f [N]``: a linear-relaxation lower bound of
    ``target_i · encoder(x', Â')_i`` evaluated on the view ``(x', Â')``.

    Args:
        encoder: a 1- or 2-layer :class:`GCNEncoder` (ReLU / LeakyReLU / PReLU).
        x: the clean features ``[N, F]`` (the set is built around them).
        view_graph: the sampled view's ``edge_index`` or its sparse ``Â'``.
        bounds: :func:`edge_drop_bounds` of the *clean* graph at the view's drop rate.
        target: ``[N, D_out]`` weight of each node's score (POT: :func:`pot_target` of the
            other view's encoder output).
        variant: ``"sound"`` (default): for every graph ``G'`` in the set (and feature mask
            when ``feature_mask``) ``f_i(G') <= target_i · z_i(G')``; the hidden layer is
            relaxed with the bounds of each neighbour ``j`` and the sign of node ``i``'s
            back-propagated weight (``O(nnz · hidden)``). ``"official"``: the official code:
            (1) second-layer pre-activation bounds from the *clean-graph* hidden layer instead
            of its interval, (2) ``A_lower`` 0 off the diagonal and the looser upper intercept
            of :func:`_relaxation`, (3) every node's features weighted with its *own*
            linearisation ``W̃1_m`` (``f = Â'(Â'(x ⊙ W̃1)1 + b̃1) + b̃2``) instead of that of the
            node being bounded. Not a guaranteed bound (on Cora at initialisation it exceeds
            ``target_i · z_i`` for about 65% of the nodes); 2-layer encoders only. One more
            difference: for a *directed* view the official code propagates with the transpose
            of ``Â'`` (its sparse tensor is indexed ``[source, target]``); here ``Â'`` is the
            operator the encoder uses (identical for undirected views).
        x_view: the view's features (default ``x``); must be ``x`` with some columns zeroed
            (and ``feature_mask=True``) for the sound guarantee.

    The sound guarantee for node ``i`` needs the view inside the set: every node within two
    hops of ``i`` lost at most ``m_j`` incoming edges (``bounds.within_budget``). A GRACE view
    (each edge dropped with probability ``r``) is not in the set as a whole (on Cora at
    ``r = 0.4`` about 30% of the nodes exceed their budget), so on such a view ``f_i`` may
    exceed ``target_i · z_i`` near those nodes; POT's official code has the same gap.
        feature_mask: include feature-column masks in the set (sound variant only).

    Gradients flow to the encoder's parameters and to ``target`` (the official code does the
    same; its PReLU slope enters as a constant, here it is differentiable).
    """
    _check_bounds(encoder, x, bounds)
    if variant not in ("sound", "official"):
        raise ValueError(f"variant must be 'sound' or 'official'; got {variant!r}")
    num_layers = len(encoder.layers)
    if num_layers > 2 or (variant == "official" and num_layers != 2):
        raise ValueError(
            f"compactness_lower_bound supports 1- or 2-layer encoders ('official': 2 only); "
            f"got {num_layers} layers"
        )
    if feature_mask and variant == "official":
        raise ValueError("feature_mask is only supported by variant='sound'")
    n = bounds.num_nodes
    if target.shape != (n, encoder.out_features):
        raise ValueError(
            f"target must have shape [N, D_out] = [{n}, {encoder.out_features}]; "
            f"got {tuple(target.shape)}"
        )
    x_view = x if x_view is None else x_view
    adj = _graph_operator(view_graph, n, x.dtype).coalesce()
    alpha = encoder.negative_slope().to(x.dtype)
    if variant == "official":
        return _official_score(encoder, x, x_view, adj, bounds, target, alpha)

    first = encoder.layers[0]
    xw = first.transform(x)
    intervals = _interval_bounds(encoder, x, xw, bounds, feature_mask)
    xw_view = xw if x_view is x else first.transform(x_view)
    y1 = torch.sparse.mm(adj, xw_view)
    if first.bias is not None:
        y1 = y1 + first.bias
    t_pos, t_neg = target.clamp(min=0), target.clamp(max=0)
    sl, bl, su, bu = _relaxation(*intervals.pre[-1], alpha, official=False)
    coefficient = t_pos * sl + t_neg * su
    constant = (t_pos * bl + t_neg * bu).sum(1)
    if num_layers == 1:
        return (coefficient * y1).sum(1) + constant
    second = encoder.layers[1]
    if second.bias is not None:
        constant = constant + coefficient @ second.bias
    back = coefficient @ second.weight  # [N, hidden]: weight of node i on its neighbours' h_j
    sl1, bl1, su1, bu1 = _relaxation(*intervals.pre[0], alpha, official=False)
    h_lower, h_upper = sl1 * y1 + bl1, su1 * y1 + bu1  # lower / upper line of act(y1) at G'
    rows, cols = adj.indices()
    values = adj.values()
    per_edge = (back.clamp(min=0)[rows] * h_lower[cols]).sum(1) + (
        back.clamp(max=0)[rows] * h_upper[cols]
    ).sum(1)
    score = torch.zeros(n, dtype=per_edge.dtype, device=per_edge.device)
    return score.index_add(0, rows, values * per_edge) + constant


def _official_score(
    encoder: GCNEncoder,
    x: Tensor,
    x_view: Tensor,
    adj: Tensor,
    bounds: EdgeDropBounds,
    target: Tensor,
    alpha: Tensor,
) -> Tensor:
    """``pot_loss``'s score as in ``VoidHaruhi/POT-GCL`` (GRACE/model.py), sparse."""
    first, second = encoder.layers
    dtype = x.dtype
    a_upper = bounds.upper_matrix(dtype)
    diagonal_lower = torch.where(bounds.index[0] == bounds.index[1], bounds.lower, 0.0)
    a_lower = bounds._matrix(diagonal_lower, dtype)

    def interval(m: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
        low, high = _interval_aggregate(a_lower, a_upper, m, m)
        return (low, high) if bias is None else (low + bias, high + bias)

    xw = first.transform(x)
    l1, u1 = interval(xw, first.bias)
    hidden = encoder.activation(first(x, bounds.clean_matrix(dtype)))
    l2, u2 = interval(second.transform(hidden), second.bias)
    b1 = first.bias if first.bias is not None else torch.zeros_like(l1[0])
    b2 = second.bias if second.bias is not None else torch.zeros_like(l2[0])

    sl2, bl2, su2, bu2 = _relaxation(l2, u2, alpha, official=True)
    positive = target >= 0
    lambda2 = torch.where(positive, sl2, su2) * target
    delta2 = torch.where(positive, bl2, bu2)
    w_tilde2 = lambda2 @ second.weight
    b_tilde2 = (lambda2 * (delta2 + b2)).sum(1)
    sl1, bl1, su1, bu1 = _relaxation(l1, u1, alpha, official=True)
    positive = w_tilde2 >= 0
    lambda1 = torch.where(positive, sl1, su1) * w_tilde2
    delta1 = torch.where(positive, bl1, bu1)
    w_tilde1 = lambda1 @ first.weight  # [N, F]
    b_tilde1 = (lambda1 * (delta1 + b1)).sum(1)
    xw_tilde = (x_view * w_tilde1).sum(1, keepdim=True)
    h_tilde = torch.sparse.mm(adj, xw_tilde) + b_tilde1[:, None]
    return (torch.sparse.mm(adj, h_tilde) + b_tilde2[:, None]).squeeze(1)


def interval_compactness_bound(
    encoder: GCNEncoder,
    x: Tensor,
    bounds: EdgeDropBounds,
    target: Tensor,
    *,
    feature_mask: bool = False,
) -> Tensor:
    """``[N]`` lower bound of ``target_i · z_i(G')`` valid for every ``G'`` of the set at once:
    ``Σ_k min(target_ik · lower_ik, target_ik · upper_ik)`` over the IBP output interval."""
    low, high = gcn_interval_bounds(encoder, x, bounds, feature_mask=feature_mask).output
    return (target.clamp(min=0) * low + target.clamp(max=0) * high).sum(1)
