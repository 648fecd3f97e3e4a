"""GRACE's loss against the official formula, POT's loss wiring, and a GRACE+POT smoke run."""

import pytest
import torch
import torch.nn.functional as F

from contrastkit.core import core_backend
from contrastkit.encoders import compactness_lower_bound, edge_drop_bounds
from contrastkit.recipes.graph_nodes import (
    GraceModel,
    grace_loss,
    grace_pot_objective,
    node_linear_probe,
    pot_loss,
    pot_target,
)
from contrastkit.views import drop_edges, mask_features


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread (on a loaded 2-core machine a second OpenMP thread
    turns each small matmul into a ~16 ms wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _official_grace(h1: torch.Tensor, h2: torch.Tensor, tau: float) -> torch.Tensor:
    """``CRIPAC-DIG/GRACE`` model.py ``Model.loss`` (refl_sim / between_sim), per node."""

    def sim(a, b):
        return F.normalize(a) @ F.normalize(b).T

    def semi_loss(z1, z2):
        refl_sim = torch.exp(sim(z1, z1) / tau)
        between_sim = torch.exp(sim(z1, z2) / tau)
        return -torch.log(
            between_sim.diag() / (refl_sim.sum(1) + between_sim.sum(1) - refl_sim.diag())
        )

    return (semi_loss(h1, h2) + semi_loss(h2, h1)) * 0.5


@pytest.mark.parametrize("backend", ["dense", "tiled"])
def test_grace_loss_equals_the_official_formula(backend):
    gen = torch.Generator().manual_seed(0)
    base1 = torch.randn(37, 16, dtype=torch.float64, generator=gen)
    base2 = base1 + 0.5 * torch.randn(37, 16, dtype=torch.float64, generator=gen)
    tau = 0.4
    h1, h2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
    with core_backend(backend, tile_size=8):
        ours = grace_loss(h1, h2, tau=tau)
        per_node = grace_loss(h1, h2, tau=tau, reduction="none")
    ours.backward()
    r1, r2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
    theirs = _official_grace(r1, r2, tau)
    theirs.mean().backward()
    torch.testing.assert_close(per_node, theirs.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, theirs.mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h1.grad, r1.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h2.grad, r2.grad, rtol=1e-10, atol=1e-12)


def test_grace_loss_checks_shapes():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        grace_loss(torch.randn(4, 3), torch.randn(5, 3))


def test_pot_target_is_own_minus_mean_of_others():
    z = torch.randn(6, 4, dtype=torch.float64)
    z_hat = F.normalize(z)
    loop = torch.stack(
        [z_hat[i] - torch.cat([z_hat[:i], z_hat[i + 1 :]]).mean(0) for i in range(6)]
    )
    torch.testing.assert_close(pot_target(z), loop)


def _two_communities(n: int = 40, seed: int = 0):
    """Stochastic block model: two communities of n/2 nodes (p_in 0.3, p_out 0.02), features
    = a noisy community indicator in 8 dimensions."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    same = labels[:, None] == labels[None, :]
    prob = torch.where(same, 0.3, 0.02)
    upper = torch.triu(torch.rand(n, n, generator=gen) < prob, diagonal=1)
    src, dst = upper.nonzero().T
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
    centers = torch.randn(2, 8, generator=gen)
    x = centers[labels] + 1.5 * torch.randn(n, 8, generator=gen)
    return x, edge_index, labels


def test_pot_loss_averages_the_two_directions():
    x, edge_index, _ = _two_communities()
    n = x.shape[0]
    model = GraceModel(8, 6, 6)
    gen = torch.Generator().manual_seed(1)
    g1, g2 = drop_edges(edge_index, 0.4, gen), drop_edges(edge_index, 0.3, gen)
    z1, z2 = model(x, g1), model(x, g2)
    b1, b2 = edge_drop_bounds(edge_index, n, 0.4), edge_drop_bounds(edge_index, n, 0.3)
    for variant in ("sound", "official"):
        value = pot_loss(model.encoder, x, (g1, g2), (z1, z2), (b1, b2), variant=variant)
        f1 = compactness_lower_bound(model.encoder, x, g1, b1, pot_target(z2), variant=variant)
        f2 = compactness_lower_bound(model.encoder, x, g2, b2, pot_target(z1), variant=variant)
        expected = (
            F.binary_cross_entropy_with_logits(f1, torch.ones(n))
            + F.binary_cross_entropy_with_logits(f2, torch.ones(n))
        ) / 2
        torch.testing.assert_close(value, expected)
    gcl = torch.tensor(2.0)
    torch.testing.assert_close(grace_pot_objective(gcl, torch.tensor(1.0)), torch.tensor(1.6))
    with pytest.raises(ValueError, match="kappa"):
        grace_pot_objective(gcl, gcl, kappa=1.5)


@pytest.mark.parametrize("variant", ["sound", "official"])
def test_grace_pot_training_smoke(variant):
    """A few Adam steps of GRACE + POT on a 2-community graph lower both losses (measured on
    fixed views), and the embeddings separate the communities."""
    torch.manual_seed(0)
    x, edge_index, labels = _two_communities()
    n = x.shape[0]
    model = GraceModel(8, 16, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    bounds = (edge_drop_bounds(edge_index, n, 0.4), edge_drop_bounds(edge_index, n, 0.3))

    def losses(gen):
        g1, g2 = drop_edges(edge_index, 0.4, gen), drop_edges(edge_index, 0.3, gen)
        x1, x2 = mask_features(x, 0.1, gen), mask_features(x, 0.1, gen)
        z1, z2 = model(x1, g1), model(x2, g2)
        gcl = model.loss(z1, z2, tau=0.5)
        pot = pot_loss(model.encoder, x, (g1, g2), (z1, z2), bounds, variant=variant)
        return gcl, pot

    def evaluate():
        with torch.no_grad():
            pairs = [losses(torch.Generator().manual_seed(100 + i)) for i in range(4)]
        return [sum(float(p[k]) for p in pairs) / 4 for k in range(2)]

    gcl_before, pot_before = evaluate()
    gen = torch.Generator().manual_seed(1)
    for _ in range(40):
        optimizer.zero_grad()
        gcl, pot = losses(gen)
        grace_pot_objective(gcl, pot, kappa=0.4).backward()
        optimizer.step()
    gcl_after, pot_after = evaluate()
    assert gcl_after < gcl_before - 0.05
    assert pot_after < pot_before
    z = model(x, edge_index)
    train = torch.arange(n) < n // 2
    result = node_linear_probe(z, labels, train, ~train & (torch.arange(n) % 3 == 0), ~train)
    assert result.test.accuracy >= 0.8 and result.val.accuracy >= 0.8
