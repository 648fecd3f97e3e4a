"""Tests for ``contrastkit.encoders.lightgcn``: propagation against a dense reference loop, the
SimGCL perturbation, BPR and the ego L2 term against explicit float64 formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrastkit.data.graphs import InteractionGraph
from contrastkit.encoders.lightgcn import (
    LightGCN,
    bpr_loss,
    ego_l2_loss,
    symmetric_sparse_matmul,
    to_csr,
)

U, I = 4, 5
TRAIN = [[0, 1], [1, 2, 4], [], [0, 4]]  # user 2 and item 3 have degree 0


def _graph() -> InteractionGraph:
    return InteractionGraph(U, I, train=TRAIN, test=[[]] * U)


def _model(layers: int = 3, dim: int = 6, seed: int = 0) -> LightGCN:
    torch.manual_seed(seed)
    return LightGCN(U, I, dim=dim, layers=layers)


def _reference(model: LightGCN, adj: np.ndarray, include_ego: bool = True) -> np.ndarray:
    """mean over l of A^l E0 (l = 0..L, or 1..L), float64, plain loop."""
    e = model.ego_embeddings().detach().double().numpy()
    layers = [e] if include_ego else []
    for _ in range(model.layers):
        e = adj @ e
        layers.append(e)
    return np.mean(layers, axis=0)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_propagate_equals_dense_loop() -> None:
    model = _model()
    adj = _graph().normalized_adjacency()
    users, items = model.propagate(adj)
    assert users.shape == (U, 6) and items.shape == (I, 6)
    expected = _reference(model, adj.to_dense().double().numpy())
    got = torch.cat([users, items]).detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    # a degree-0 node keeps E^(0) / (L + 1)
    ego_user2 = model.user_embedding.weight[2].detach()
    torch.testing.assert_close(users[2].detach(), ego_user2 / 4)
    # dense and CSR adjacencies give the same result; forward == propagate
    for other in (adj.to_dense(), adj.to_sparse_csr()):
        u2, i2 = model(other)
        torch.testing.assert_close(u2, users)
        torch.testing.assert_close(i2, items)
    # layer-0 excluded on request (SimGCL's recommendation pass)
    u3, i3 = model.propagate(adj, include_ego=False)
    expected3 = _reference(model, adj.to_dense().double().numpy(), include_ego=False)
    got3 = torch.cat([u3, i3]).detach().double().numpy()
    np.testing.assert_allclose(got3, expected3, rtol=1e-5, atol=1e-7)


def test_propagate_backprop_and_checks() -> None:
    model = _model(layers=2)
    adj = _graph().normalized_adjacency()
    users, items = model.propagate(adj)
    (users.sum() + items.pow(2).sum()).backward()
    assert model.user_embedding.weight.grad is not None
    assert model.item_embedding.weight.grad is not None
    with pytest.raises(ValueError, match="adjacency must be"):
        model.propagate(torch.eye(U + I + 1).to_sparse())
    with pytest.raises(ValueError, match="noise_eps"):
        model.propagate(adj, noise_eps=-0.1)
    with pytest.raises(ValueError, match="include_ego=False needs layers"):
        LightGCN(U, I, layers=0).propagate(adj, include_ego=False)
    with pytest.raises(ValueError, match="init"):
        LightGCN(U, I, init="uniform")  # type: ignore[arg-type]


def test_init_normal_and_xavier() -> None:
    torch.manual_seed(0)
    normal = LightGCN(3000, 1000, dim=64, init_std=0.1)
    w = normal.user_embedding.weight.detach()
    assert abs(float(w.std()) - 0.1) < 0.003 and abs(float(w.mean())) < 0.003
    xavier = LightGCN(3000, 1000, dim=64, init="xavier")
    bound = math.sqrt(6.0 / (3000 + 64))  # xavier_uniform on a [3000, 64] table
    largest = float(xavier.user_embedding.weight.detach().abs().max())
    assert 0.9 * bound < largest <= bound


# --------------------------------------------------------------------------------------------
# SimGCL noise
# --------------------------------------------------------------------------------------------


def test_perturb_norm_and_sign_alignment() -> None:
    torch.manual_seed(1)
    e = torch.randn(50, 16, dtype=torch.float64)
    eps = 0.1
    delta = LightGCN.perturb(e, eps, torch.Generator().manual_seed(3)) - e
    torch.testing.assert_close(delta.norm(dim=1), torch.full((50,), eps, dtype=torch.float64))
    assert (torch.sign(delta) == torch.sign(e)).all()  # same orthant, entry by entry
    # exact zeros get no noise, so the row norm drops below eps
    e[0, :8] = 0
    delta0 = LightGCN.perturb(e, eps, torch.Generator().manual_seed(3)) - e
    assert (delta0[0, :8] == 0).all() and float(delta0[0].norm()) < eps
    # the same generator seed gives the same noise; another seed another
    again = LightGCN.perturb(e, eps, torch.Generator().manual_seed(3)) - e
    other = LightGCN.perturb(e, eps, torch.Generator().manual_seed(4)) - e
    assert torch.equal(again, delta0) and not torch.equal(other, delta0)


def test_simgcl_propagation_matches_explicit_recursion() -> None:
    model = _model(layers=3)
    adj = _graph().normalized_adjacency()
    eps = 0.2
    users, items = model.propagate(adj, noise_eps=eps, generator=torch.Generator().manual_seed(7))
    # reference: noise after each step, noisy embedding propagated further, E^(0) left out
    gen = torch.Generator().manual_seed(7)
    a = adj.to_dense()
    e = model.ego_embeddings().detach()
    outs = []
    for _ in range(3):
        e = a @ e
        noise = torch.rand(e.shape, generator=gen)
        e = e + eps * torch.sign(e) * F.normalize(noise, dim=-1)
        outs.append(e)
    expected = torch.stack(outs).mean(0)
    torch.testing.assert_close(torch.cat([users, items]).detach(), expected)
    # eps = 0: the noiseless SimGCL pass == LightGCN without E^(0)
    u0, i0 = model.propagate(adj, noise_eps=0.0)
    u1, i1 = model.propagate(adj, include_ego=False)
    torch.testing.assert_close(u0, u1)
    torch.testing.assert_close(i0, i1)


# --------------------------------------------------------------------------------------------
# BPR and the ego L2 term
# --------------------------------------------------------------------------------------------


def test_bpr_equals_explicit_float64_formula() -> None:
    torch.manual_seed(2)
    ue, ie = torch.randn(U, 8), torch.randn(I, 8)
    u = torch.tensor([0, 1, 3, 1])
    pos = torch.tensor([1, 2, 4, 4])
    neg = torch.tensor([3, 0, 2, 3])
    got = bpr_loss(ue, ie, u, pos, neg)
    ue64, ie64 = ue.double().numpy(), ie.double().numpy()
    terms = []
    for b in range(4):
        x = ue64[u[b]] @ ie64[pos[b]] - ue64[u[b]] @ ie64[neg[b]]
        terms.append(-math.log(1.0 / (1.0 + math.exp(-x))))
    assert float(got) == pytest.approx(sum(terms) / 4, rel=1e-5)
    # K negatives per pair: mean over all B*K triples
    negk = torch.tensor([[3, 0], [0, 3], [2, 0], [3, 1]])
    gotk = bpr_loss(ue, ie, u, pos, negk)
    termsk = [
        -math.log(1.0 / (1.0 + math.exp(-(ue64[u[b]] @ (ie64[pos[b]] - ie64[negk[b, k]])))))
        for b in range(4)
        for k in range(2)
    ]
    assert float(gotk) == pytest.approx(sum(termsk) / 8, rel=1e-5)


def test_bpr_is_finite_for_large_scores() -> None:
    ue = torch.tensor([[100.0, 0.0]])
    ie = torch.tensor([[-100.0, 0.0], [100.0, 0.0]])
    u, pos, neg = torch.tensor([0]), torch.tensor([0]), torch.tensor([1])
    loss = bpr_loss(ue, ie, u, pos, neg)  # s_pos - s_neg = -20000
    assert float(loss) == pytest.approx(20000.0)
    assert float(bpr_loss(ue, ie, u, neg, pos)) == 0.0  # diff = +20000
    with pytest.raises(ValueError, match="empty batch"):
        bpr_loss(ue, ie, u[:0], pos[:0], neg[:0])
    with pytest.raises(TypeError, match="integer"):
        bpr_loss(ue, ie, u.float(), pos, neg)


def test_ego_l2_equals_lightgcn_formula() -> None:
    model = _model(dim=5)
    u = torch.tensor([0, 3, 3])
    pos = torch.tensor([1, 4, 0])
    neg = torch.tensor([2, 2, 3])
    got = model.reg_loss(u, pos, neg)
    w_u = model.user_embedding.weight.detach().double().numpy()
    w_i = model.item_embedding.weight.detach().double().numpy()
    # 1/2 (||E_u[u]||_F^2 + ||E_i[pos]||_F^2 + ||E_i[neg]||_F^2) / B, repeats counted
    expected = 0.5 * ((w_u[u] ** 2).sum() + (w_i[pos] ** 2).sum() + (w_i[neg] ** 2).sum()) / 3
    assert float(got.detach()) == pytest.approx(expected, rel=1e-6)
    table_u, table_i = model.user_embedding.weight, model.item_embedding.weight
    assert torch.equal(ego_l2_loss(table_u, table_i, u, pos, neg), got)
    got.backward()
    assert model.user_embedding.weight.grad is not None


def test_symmetric_sparse_matmul_matches_torch_sparse_mm_in_values_and_gradients() -> None:
    adj = _graph().normalized_adjacency().double()
    for matrix in (adj, to_csr(adj)):
        x = torch.randn(U + I, 3, dtype=torch.float64, requires_grad=True)
        upstream = torch.randn(U + I, 3, dtype=torch.float64)
        (symmetric_sparse_matmul(matrix, x) * upstream).sum().backward()
        ours = x.grad.clone()
        x.grad = None
        (torch.sparse.mm(adj, x) * upstream).sum().backward()
        torch.testing.assert_close(ours, x.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            symmetric_sparse_matmul(matrix, x), torch.sparse.mm(adj, x), rtol=1e-12, atol=1e-12
        )


def test_symmetric_propagation_equals_the_plain_one_and_needs_a_symmetric_matrix() -> None:
    model = _model()
    adj = _graph().normalized_adjacency()
    plain = torch.cat(model.propagate(adj))
    (plain**2).sum().backward()
    plain_grad = model.user_embedding.weight.grad.clone()
    model.zero_grad()
    fast = torch.cat(model.propagate(to_csr(adj), symmetric=True))
    (fast**2).sum().backward()
    torch.testing.assert_close(fast, plain)
    torch.testing.assert_close(model.user_embedding.weight.grad, plain_grad)
    # the backward uses the matrix itself: with a non-symmetric matrix the gradient differs
    skew = torch.triu(adj.to_dense()).to_sparse()
    x = torch.randn(U + I, 2, requires_grad=True)
    symmetric_sparse_matmul(skew, x).sum().backward()
    assert not torch.allclose(x.grad, skew.to_dense().T @ torch.ones(U + I, 2))
