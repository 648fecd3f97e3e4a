"""Graph convolutional encoder and projection head of GRACE (Zhu et al., "Deep Graph Contrastive
Representation Learning", 2020; official code ``CRIPAC-DIG/GRACE``), in plain torch (no
``torch_geometric``).

Graph convention (as PyG's ``GCNConv`` with ``flow="source_to_target"``): ``edge_index`` is a
``[2, E]`` integer tensor of directed edges ``source -> target``; an undirected graph lists each
edge in both directions. A node aggregates over its *incoming* edges plus one self loop::

    Â = D̃^{-1/2} (A + I) D̃^{-1/2},   A[t, s] = number of edges s -> t,   D̃ = diag(1 + in-degree)
    GCNConv(X) = Â (X W) + b

``GCNEncoder`` is GRACE's ``Encoder``: ``num_layers`` convolutions (``in -> 2·out -> ... -> out``
by default) with the activation applied after *every* layer, the last one included, and one
activation module shared by all layers (GRACE builds a single ``nn.PReLU()``, so its slope is one
parameter for the whole encoder). ``GraceProjection`` is GRACE's ``fc2(elu(fc1(z)))``.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS",
    "GCNConv",
    "GCNEncoder",
    "GraceProjection",
    "gcn_normalized_adjacency",
    "make_activation",
]

# activation names accepted by make_activation / GCNEncoder
ACTIVATIONS = ("relu", "prelu", "leaky_relu", "rrelu", "elu")


def _check_edge_index(edge_index: object, num_nodes: int) -> Tensor:
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a [2, E] integer tensor; got {type(edge_index)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E]; got {tuple(edge_index.shape)}")
    if edge_index.is_floating_point() or edge_index.dtype == torch.bool:
        raise ValueError(f"edge_index must be an integer tensor; got dtype {edge_index.dtype}")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes must be an int >= 1; got {num_nodes!r}")
    edge_index = edge_index.long()
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(
            f"edge_index holds node ids outside [0, num_nodes) = [0, {num_nodes}): "
            f"min {int(edge_index.min())}, max {int(edge_index.max())}"
        )
    return edge_index


def gcn_normalized_adjacency(
    edge_index: Tensor,
    num_nodes: int,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``Â = D̃^{-1/2} (A + I) D̃^{-1/2}`` as a coalesced sparse COO ``[N, N]`` tensor.

    Row = target, column = source (``(Â X)[t] = Σ_s Â[t, s] X[s]``). Self loops already in
    ``edge_index`` are replaced by exactly one self loop of weight 1 per node; duplicate edges
    add up (as PyG's ``gcn_norm`` on an unweighted graph). ``D̃`` counts incoming edges + 1.
    On the device of ``edge_index``.
    """
    edge_index = _check_edge_index(edge_index, num_nodes)
    device = edge_index.device
    source, target = edge_index[0], edge_index[1]
    keep = source != target
    loops = torch.arange(num_nodes, device=device)
    rows = torch.cat([target[keep], loops])
    cols = torch.cat([source[keep], loops])
    degree = torch.bincount(rows, minlength=num_nodes).to(dtype)
    inv_sqrt = degree.rsqrt()
    values = inv_sqrt[rows] * inv_sqrt[cols]
    adj = torch.sparse_coo_tensor(
        torch.stack([rows, cols]),
        values,
        (num_nodes, num_nodes),
        device=device,
        check_invariants=False,
    )
    return adj.coalesce()


def make_activation(name: str) -> nn.Module:
    """GRACE's activations by name: ``relu``, ``prelu`` (one shared slope, init 0.25),
    ``leaky_relu`` (slope 0.01), ``rrelu`` (torch defaults) or ``elu``."""
    factories = {
        "relu": nn.ReLU,
        "prelu": nn.PReLU,
        "leaky_relu": nn.LeakyReLU,
        "rrelu": nn.RReLU,
        "elu": nn.ELU,
    }
    if name not in factories:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {name!r}")
    return factories[name]()


def _graph_operator(graph: Tensor, num_nodes: int, dtype: torch.dtype) -> Tensor:
    """A sparse ``[N, N]`` operator is used as is; an ``edge_index`` is normalised."""
    if graph.is_sparse:
        if tuple(graph.shape) != (num_nodes, num_nodes):
            raise ValueError(
                f"the sparse adjacency must be [N, N] = [{num_nodes}, {num_nodes}]; "
                f"got {tuple(graph.shape)}"
            )
        return graph.to(dtype)
    return gcn_normalized_adjacency(graph, num_nodes, dtype=dtype)


class GCNConv(nn.Module):
    """``Â (X W) + b`` (Kipf & Welling 2017), weights initialised as PyG's (Glorot, zero bias).

    ``forward(x, adj)``: ``x [N, in_features]``, ``adj`` the sparse ``Â`` from
    :func:`gcn_normalized_adjacency` or an ``edge_index [2, E]`` (normalised on the fly).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        if min(in_features, out_features) < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1; got {in_features}, {out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def transform(self, x: Tensor) -> Tensor:
        """``X W`` (the dense part, before aggregation)."""
        return x @ self.weight.T

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        adj = _graph_operator(adj, x.shape[0], x.dtype)
        out = torch.sparse.mm(adj, self.transform(x))
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class GCNEncoder(nn.Module):
    """GRACE's GCN encoder: ``x = act(GCNConv_k(x, Â))`` for ``k = 1..num_layers``.

    Args:
        in_features: input feature size ``F``.
        out_features: output (embedding) size; GRACE's ``num_hidden`` (Cora: 128).
        num_layers: number of convolutions, >= 1 (GRACE: 2; it asserts >= 2).
        hidden_features: width of the inner layers; default ``2 * out_features`` (GRACE).
        activation: a name from :data:`ACTIVATIONS` or a module; one instance is shared by all
            layers (as GRACE does).

    ``forward(x, graph)``: ``x [N, F]``; ``graph`` an ``edge_index [2, E]`` or a precomputed
    sparse ``Â`` (pass the latter when the same graph is encoded several times).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        num_layers: int = 2,
        hidden_features: int | None = None,
        activation: str | nn.Module = "relu",
    ) -> None:
        super().__init__()
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be an int >= 1; got {num_layers!r}")
        hidden = 2 * out_features if hidden_features is None else hidden_features
        sizes = [in_features] + [hidden] * (num_layers - 1) + [out_features]
        self.layers = nn.ModuleList(GCNConv(a, b) for a, b in itertools.pairwise(sizes))
        self.activation = make_activation(activation) if isinstance(activation, str) else activation
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, x: Tensor, graph: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape [N, {self.in_features}]; got {tuple(x.shape)}")
        adj = _graph_operator(graph, x.shape[0], x.dtype)
        for layer in self.layers:
            x = self.activation(layer(x, adj))
        return x

    def negative_slope(self) -> Tensor:
        """The activation's slope ``α`` on the negative side, as a 0-d tensor (``act(y) = y`` for
        ``y >= 0``, ``α y`` below): what the bound propagation of POT needs. ``ValueError``
        for an activation that is not piecewise linear with a fixed slope (ELU, RReLU in
        training mode) or a per-channel PReLU."""
        act = self.activation
        weight = self.layers[0].weight
        if isinstance(act, nn.ReLU):
            return torch.zeros((), dtype=weight.dtype, device=weight.device)
        if isinstance(act, nn.LeakyReLU):
            return torch.tensor(act.negative_slope, dtype=weight.dtype, device=weight.device)
        if isinstance(act, nn.PReLU):
            if act.weight.numel() != 1:
                raise ValueError("bound propagation supports a single-parameter PReLU only")
            return act.weight.reshape(())
        if isinstance(act, nn.RReLU) and not act.training:
            slope = (act.lower + act.upper) / 2
            return torch.tensor(slope, dtype=weight.dtype, device=weight.device)
        raise ValueError(
            f"bound propagation needs ReLU, LeakyReLU, PReLU (or RReLU in eval mode); got "
            f"{type(act).__name__}"
        )


class GraceProjection(nn.Module):
    """GRACE's projection head ``fc2(elu(fc1(z)))``: ``dim -> hidden_dim -> dim`` (Cora:
    128 -> 128 -> 128). ``nn.Linear`` default initialisation, as the official code."""

    def __init__(self, dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = dim if hidden_dim is None else hidden_dim
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.fc2(F.elu(self.fc1(z)))
