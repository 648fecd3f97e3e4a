"""POT's bound propagation through the GCN, checked by brute force on a 5-node graph: every
graph of the edge-drop set (each node loses at most m_i incoming edges), optionally with every
feature-column mask, is enumerated and encoded densely in float64."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from contrastkit.encoders import (
    GCNEncoder,
    compactness_lower_bound,
    edge_drop_bounds,
    gcn_interval_bounds,
    interval_compactness_bound,
)
from contrastkit.encoders.gcn_bounds import max_deleted_edges
from contrastkit.recipes.graph_nodes import pot_target

N = 5
UNDIRECTED = [(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (1, 3)]  # in-degrees 2, 3, 3, 3, 1
DIRECTED = UNDIRECTED + [(b, a) for a, b in UNDIRECTED]
EDGE_INDEX = torch.tensor(DIRECTED).T
DTYPE = torch.float64
TOL = 1e-10


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread (on a loaded 2-core machine a second OpenMP thread
    turns each small matmul into a ~16 ms wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dense(kept: list[tuple[int, int]]) -> torch.Tensor:
    a = torch.eye(N, dtype=DTYPE)
    for s, t in kept:
        a[t, s] += 1
    d = a.sum(1)
    return a / d.sqrt()[:, None] / d.sqrt()[None, :]


def _perturbation_set(max_delete: torch.Tensor, *, directed: bool) -> list[list[tuple[int, int]]]:
    """Every edge subset (directed columns, or undirected pairs) within the per-node budget."""
    items = DIRECTED if directed else UNDIRECTED
    degree = torch.bincount(EDGE_INDEX[1], minlength=N)
    graphs = []
    for bits in itertools.product([False, True], repeat=len(items)):
        kept = [e for e, b in zip(items, bits, strict=True) if b]
        if not directed:
            kept += [(b, a) for a, b in kept]
        in_degree = torch.bincount(
            torch.tensor(kept, dtype=torch.long).reshape(-1, 2)[:, 1], minlength=N
        )
        if bool((degree - in_degree <= max_delete).all()):
            graphs.append(kept)
    return graphs


def _encoder(num_layers: int, activation: str, seed: int, positive: bool = False) -> GCNEncoder:
    torch.manual_seed(seed)
    enc = GCNEncoder(3, 3, num_layers=num_layers, hidden_features=4, activation=activation)
    enc = enc.to(DTYPE)
    with torch.no_grad():
        for layer in enc.layers:
            layer.bias.normal_(0.0, 0.3)
            if positive:
                layer.weight.abs_()
                layer.bias.abs_()
        if activation == "prelu":
            enc.activation.weight.fill_(0.2)
    return enc


def _forward(enc: GCNEncoder, a: torch.Tensor, x: torch.Tensor) -> tuple[list, torch.Tensor]:
    """Dense forward; ``a`` [S, N, N], ``x`` [M, N, F] -> pre-activations / output [S, M, N, .]."""
    alpha = float(enc.negative_slope().detach())
    pre, h = [], x[None]
    for layer in enc.layers:
        y = a[:, None] @ (h @ layer.weight.T) + layer.bias
        pre.append(y)
        h = torch.where(y >= 0, y, alpha * y)
    return pre, h


def _masks(x: torch.Tensor, feature_mask: bool) -> torch.Tensor:
    if not feature_mask:
        return x[None]
    keep = torch.tensor(list(itertools.product([0.0, 1.0], repeat=x.shape[1])), dtype=DTYPE)
    return x[None] * keep[:, None, :]


def test_budget_and_entrywise_bounds_follow_the_official_formula():
    degree = torch.tensor([0, 1, 2, 3, 4, 5, 6, 10])
    # numpy rounds half to even: 0.5·{1,3,5} -> {0, 2, 2}
    expected = [min(max(int(d) - 1, 0), round(0.5 * int(d))) for d in degree]
    assert max_deleted_edges(degree, 0.5).tolist() == expected
    bounds = edge_drop_bounds(EDGE_INDEX, N, 0.5, dtype=DTYPE)
    m = bounds.max_delete
    assert m.tolist() == [1, 2, 2, 2, 0]
    d = (bounds.degree + 1).to(DTYPE)
    clean = _dense(DIRECTED)
    upper = (d - m)[:, None].rsqrt() * (d - m)[None, :].rsqrt() * (clean > 0)
    torch.testing.assert_close(bounds.upper_matrix().to_dense(), upper)
    torch.testing.assert_close(bounds.clean_matrix().to_dense(), clean)
    lower = bounds.lower_matrix().to_dense()
    torch.testing.assert_close(lower.diagonal(), clean.diagonal())
    # node 4 (degree 1) can lose nothing: its incoming entry keeps its clean value as lower bound
    assert lower[4, 3] == clean[4, 3] and lower[3, 4] == 0 and lower[0, 1] == 0


@pytest.mark.parametrize("feature_mask", [False, True])
@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_interval_bounds_contain_every_perturbed_forward(num_layers, directed, feature_mask):
    for seed, activation in [(0, "relu"), (1, "prelu")]:
        enc = _encoder(num_layers, activation, seed)
        x = torch.randn(N, 3, dtype=DTYPE, generator=torch.Generator().manual_seed(seed))
        bounds = edge_drop_bounds(EDGE_INDEX, N, 0.5, dtype=DTYPE)
        graphs = _perturbation_set(bounds.max_delete, directed=directed)
        a = torch.stack([_dense(g) for g in graphs])
        with torch.no_grad():
            pre, out = _forward(enc, a, _masks(x, feature_mask))
            intervals = gcn_interval_bounds(enc, x, bounds, feature_mask=feature_mask)
        for y, (low, high) in zip(pre, intervals.pre, strict=True):
            assert bool((y >= low - TOL).all() and (y <= high + TOL).all())
        low, high = intervals.output
        assert bool((out >= low - TOL).all() and (out <= high + TOL).all())


def test_zero_drop_rate_collapses_the_interval_to_the_clean_forward():
    enc = _encoder(2, "relu", 3)
    x = torch.randn(N, 3, dtype=DTYPE)
    bounds = edge_drop_bounds(EDGE_INDEX, N, 0.0, dtype=DTYPE)
    low, high = gcn_interval_bounds(enc, x, bounds).output
    clean = enc(x, EDGE_INDEX)
    torch.testing.assert_close(low, clean, rtol=0, atol=1e-12)
    torch.testing.assert_close(high, clean, rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_sound_compactness_bound_lower_bounds_every_graph_of_the_set(num_layers):
    worst_gap = []
    for seed, activation, directed in [(0, "relu", True), (1, "prelu", False), (2, "relu", False)]:
        enc = _encoder(num_layers, activation, seed)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(N, 3, dtype=DTYPE, generator=gen)
        target = pot_target(torch.randn(N, 3, dtype=DTYPE, generator=gen))
        bounds = edge_drop_bounds(EDGE_INDEX, N, 0.5, dtype=DTYPE)
        graphs = _perturbation_set(bounds.max_delete, directed=directed)
        with torch.no_grad():
            _, out = _forward(enc, torch.stack([_dense(g) for g in graphs]), x[None])
            exact = (target * out[:, 0]).sum(-1)  # [S, N]
            certified = interval_compactness_bound(enc, x, bounds, target)
            scores = torch.stack(
                [compactness_lower_bound(enc, x, torch.tensor(g).T, bounds, target) for g in graphs]
            )
        assert bool((scores <= exact + TOL).all())
        assert bool((certified <= exact.amin(0) + TOL).all())
        worst_gap.append(float((exact - scores).amin()))
    if num_layers == 1:
        # one relaxation step: the bound is attained wherever node i's neurons are stable
        assert min(worst_gap) < 1e-12
    else:
        assert max(worst_gap) < 0.25  # close for some (node, graph) of every case


@pytest.mark.parametrize("num_layers", [1, 2])
def test_sound_bound_is_exact_when_every_neuron_is_stable(num_layers):
    enc = _encoder(num_layers, "relu", 4, positive=True)
    x = torch.rand(N, 3, dtype=DTYPE) + 0.1  # positive features, weights, biases: all active
    target = torch.randn(N, 3, dtype=DTYPE)
    bounds = edge_drop_bounds(EDGE_INDEX, N, 0.5, dtype=DTYPE)
    assert bool((gcn_interval_bounds(enc, x, bounds).pre[0][0] > 0).all())
    for g in _perturbation_set(bounds.max_delete, directed=False):
        view = torch.tensor(g).T
        exact = (target * enc(x, view)).sum(1)
        score = compactness_lower_bound(enc, x, view, bounds, target)
        torch.testing.assert_close(score, exact, rtol=0, atol=1e-12)


def test_sound_bound_with_feature_masks():
    enc = _encoder(2, "relu", 5)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(N, 3, dtype=DTYPE, generator=gen)
    target = pot_target(torch.randn(N, 3, dtype=DTYPE, generator=gen))
    bounds = edge_drop_bounds(EDGE_INDEX, N, 0.5, dtype=DTYPE)
    masked = _masks(x, True)
    for g in _perturbation_set(bounds.max_delete, directed=False)[::4]:
        view = torch.tensor(g).T
        for x_view in masked:
            exact = (target * enc(x_view, view)).sum(1)
            score = compactness_lower_bound(
                enc, x, view, bounds, target, x_view=x_view, feature_mask=True
            )
            assert bool((score <= exact + TOL).all())


def _official_transcription(enc, x, edge_index, view_edge_index, drop_rate, z_other):
    """``VoidHaruhi/POT-GCL`` GRACE/model.py::pot_loss and my_utils.py, dense, written out."""
    first, second = enc.layers
    W1, b1, W2, b2 = first.weight.T, first.bias, second.weight.T, second.bias
    a_tilde = torch.zeros(N, N, dtype=DTYPE)
    a_tilde[edge_index[0], edge_index[1]] = 1
    a_tilde += torch.eye(N, dtype=DTYPE)
    deg = torch.bincount(edge_index[1], minlength=N).to(DTYPE)
    degs_tilde = deg + 1
    max_delete = torch.clamp(degs_tilde - 2, min=0)
    max_delete = torch.minimum(max_delete, torch.round(drop_rate * deg))
    s = 1 / torch.sqrt(degs_tilde - max_delete)
    a_upper = torch.where(a_tilde > 0, s * s[:, None], torch.zeros_like(a_tilde))
    a_lower = torch.diag(torch.diag(_dense(DIRECTED)))
    act = enc.activation
    XW = x @ W1
    H = act(_dense(DIRECTED) @ XW + b1)
    HW = H @ W2
    mid, rad = (a_upper + a_lower) / 2, (a_upper - a_lower) / 2
    z1_U, z1_L = mid @ XW + rad @ XW.abs() + b1, mid @ XW - rad @ XW.abs() + b1
    z2_U, z2_L = mid @ HW + rad @ HW.abs() + b2, mid @ HW - rad @ HW.abs() + b2
    alpha = 0.0 if isinstance(act, torch.nn.ReLU) else act.weight.item()

    def get_alpha_beta(lo, up):
        a_l, a_u = torch.zeros_like(lo), torch.zeros_like(lo)
        b_l, b_u = torch.zeros_like(lo), torch.zeros_like(lo)
        pos, neg = lo >= 0, up <= 0
        a_l[pos], a_u[pos], a_l[neg], a_u[neg] = 1, 1, alpha, alpha
        nm = ~(pos | neg)
        upp = up[nm] - alpha * lo[nm]
        a_l[nm] = upp / (up[nm] - lo[nm])
        a_u[nm] = upp / (up[nm] - lo[nm])
        b_u[nm] = (alpha - 1) * up[nm] * lo[nm] / upp
        return a_l, a_u, b_l, b_u

    n = z_other.shape[0]
    z2n = F.normalize(z_other)
    Wcl = z2n * (n / (n - 1)) - z2n.sum(0) / (n - 1)
    a2l, a2u, b2l, b2u = get_alpha_beta(z2_L, z2_U)
    a1l, a1u, b1l, b1u = get_alpha_beta(z1_L, z1_U)
    Lambda_2 = torch.where(Wcl >= 0, a2l, a2u) * Wcl
    Delta_2 = torch.where(Wcl >= 0, b2l, b2u)
    W_tilde_2 = Lambda_2 @ W2.T
    b_tilde_2 = torch.diag(Lambda_2 @ (Delta_2 + b2).T)
    Lambda_1 = torch.where(W_tilde_2 >= 0, a1l, a1u) * W_tilde_2
    Delta_1 = torch.where(W_tilde_2 >= 0, b1l, b1u)
    W_tilde_1 = Lambda_1 @ W1.T
    b_tilde_1 = torch.diag(Lambda_1 @ (Delta_1 + b1).T)
    XW_tilde = (x[:, None, :] @ W_tilde_1[:, :, None]).view(-1, 1)
    kept = list(map(tuple, view_edge_index.T.tolist()))
    An_ptb = _dense(kept).T  # the official sparse tensor is indexed [source, target]
    H_tilde = An_ptb @ XW_tilde + b_tilde_1.view(-1, 1)
    return (An_ptb @ H_tilde + b_tilde_2.view(-1, 1)).squeeze()


@pytest.mark.parametrize("activation", ["relu", "prelu"])
def test_official_variant_matches_the_official_code(activation):
    enc = _encoder(2, activation, 6)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(N, 3, dtype=DTYPE, generator=gen)
    z_other = torch.randn(N, 3, dtype=DTYPE, generator=gen)
    bounds = edge_drop_bounds(EDGE_INDEX, N, 0.4, dtype=DTYPE)
    # symmetric: the official code indexes the view's Â by [source, target] (the transpose)
    view = torch.tensor([(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3), (1, 3), (3, 1)]).T
    ours = compactness_lower_bound(enc, x, view, bounds, pot_target(z_other), variant="official")
    with torch.no_grad():
        theirs = _official_transcription(enc, x, EDGE_INDEX, view, 0.4, z_other)
    torch.testing.assert_close(ours, theirs)


def test_official_variant_is_not_a_bound():
    """Documented deviation: the official score exceeds the true value for some graphs of the
    set (clean-graph layer-2 bounds; every node weighted with its own linearisation)."""
    enc = _encoder(2, "relu", 0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, dtype=DTYPE, generator=gen)
    target = pot_target(torch.randn(N, 3, dtype=DTYPE, generator=gen))
    bounds = edge_drop_bounds(EDGE_INDEX, N, 0.5, dtype=DTYPE)
    gaps = []
    with torch.no_grad():
        for g in _perturbation_set(bounds.max_delete, directed=False):
            view = torch.tensor(g).T
            exact = (target * enc(x, view)).sum(1)
            official = compactness_lower_bound(enc, x, view, bounds, target, variant="official")
            gaps.append(float((exact - official).min()))
    worst = min(gaps)
    assert worst < -0.01


@pytest.mark.parametrize("variant", ["sound", "official"])
def test_compactness_bound_is_differentiable(variant):
    enc = _encoder(2, "prelu", 7)
    x = torch.randn(N, 3, dtype=DTYPE)
    z_other = torch.randn(N, 3, dtype=DTYPE, requires_grad=True)
    bounds = edge_drop_bounds(EDGE_INDEX, N, 0.5, dtype=DTYPE)
    score = compactness_lower_bound(
        enc, x, EDGE_INDEX[:, ::2], bounds, pot_target(z_other), variant=variant
    )
    F.softplus(-score).mean().backward()
    grads = [p.grad for p in enc.parameters()] + [z_other.grad]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads[:-1])


def test_within_budget_and_input_checks():
    bounds = edge_drop_bounds(EDGE_INDEX, N, 0.5)
    assert bool(bounds.within_budget(EDGE_INDEX).all())
    without_34 = EDGE_INDEX[:, [i for i, e in enumerate(DIRECTED) if e != (3, 4)]]
    assert bounds.within_budget(without_34).tolist() == [True, True, True, True, False]
    enc = GCNEncoder(3, 3, num_layers=3)
    with pytest.raises(ValueError, match="1- or 2-layer"):
        compactness_lower_bound(enc, torch.randn(N, 3), EDGE_INDEX, bounds, torch.randn(N, 3))
    with pytest.raises(ValueError, match="target"):
        compactness_lower_bound(
            GCNEncoder(3, 3), torch.randn(N, 3), EDGE_INDEX, bounds, torch.randn(N, 2)
        )
