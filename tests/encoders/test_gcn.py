"""GRACE's GCN encoder and projection head against dense float64 computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.encoders import GCNEncoder, GraceProjection, gcn_normalized_adjacency


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread (on a loaded 2-core machine a second OpenMP thread
    turns each small matmul into a ~16 ms wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dense_normalized(edges: list[tuple[int, int]], n: int) -> torch.Tensor:
    """D̃^{-1/2}(A + I)D̃^{-1/2} with A[t, s] = #edges s -> t (self loops replaced by one)."""
    a = torch.eye(n, dtype=torch.float64)
    for s, t in edges:
        if s != t:
            a[t, s] += 1
    d = a.sum(1)
    return a / d.sqrt()[:, None] / d.sqrt()[None, :]


EDGES = [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (0, 3), (4, 4), (3, 4), (3, 4), (4, 0)]


def test_normalized_adjacency_matches_dense_formula():
    edge_index = torch.tensor(EDGES).T  # a self loop, a duplicate and one-way edges included
    adj = gcn_normalized_adjacency(edge_index, 5, dtype=torch.float64)
    assert adj.is_sparse
    torch.testing.assert_close(adj.to_dense(), _dense_normalized(EDGES, 5))


@pytest.mark.parametrize("activation", ["relu", "prelu"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_gcn_encoder_equals_dense_computation(activation, num_layers):
    torch.manual_seed(0)
    enc = GCNEncoder(6, 4, num_layers=num_layers, activation=activation).double()
    with torch.no_grad():
        for layer in enc.layers:
            layer.bias.normal_()
    x = torch.randn(5, 6, dtype=torch.float64)
    edge_index = torch.tensor(EDGES).T
    a = _dense_normalized(EDGES, 5)
    slope = 0.0 if activation == "relu" else float(enc.activation.weight.detach())
    h = x
    for layer in enc.layers:
        h = a @ h @ layer.weight.T + layer.bias
        h = torch.where(h >= 0, h, slope * h)
    torch.testing.assert_close(enc(x, edge_index), h)
    adj = gcn_normalized_adjacency(edge_index, 5, dtype=torch.float64)
    torch.testing.assert_close(enc(x, adj), h)
    # GRACE's widths: in -> 2·out -> ... -> out
    widths = [layer.weight.shape for layer in enc.layers]
    expected = [(4, 6)] if num_layers == 1 else [(8, 6)] + [(8, 8)] * (num_layers - 2) + [(4, 8)]
    assert widths == [torch.Size(w) for w in expected]


def test_projection_and_negative_slopes():
    torch.manual_seed(0)
    head = GraceProjection(8, 5)
    z = torch.randn(3, 8)
    torch.testing.assert_close(head(z), head.fc2(F.elu(head.fc1(z))))
    assert float(GCNEncoder(3, 2, activation="relu").negative_slope()) == 0.0
    assert float(GCNEncoder(3, 2, activation="prelu").negative_slope().detach()) == pytest.approx(
        0.25
    )
    assert float(GCNEncoder(3, 2, activation="leaky_relu").negative_slope()) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="bound propagation"):
        GCNEncoder(3, 2, activation="elu").negative_slope()
    with pytest.raises(ValueError, match="bound propagation"):
        GCNEncoder(3, 2, activation=nn.Tanh()).negative_slope()
