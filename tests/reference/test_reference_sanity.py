"""Sanity checks of the float64 loop references against hand-derived closed forms / identities.

"onehot" configuration: z[i, a] = c_{ia} * e_i (positive random scale c_{ia}, D >= N), so after
normalisation all views of an instance coincide and different instances are orthogonal:
s(ia, ib) = 1/tau, s(ia, jb) = 0 for j != i, and ||zh[i,a] - zh[j,b]||^2 = 2 for j != i.
"""

import math

import pytest
import torch

from . import loops as ref

F64 = torch.float64


def onehot(N, V, D=None, seed=0):
    D = D or N + 1
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(N, V, D, dtype=F64)
    for i in range(N):
        for a in range(V):
            z[i, a, i] = 0.5 + torch.rand((), generator=g, dtype=F64)
    return z


def rand(N, V, D=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, V, D, generator=g, dtype=F64)


def close(x, y, tol=1e-10):
    x = torch.as_tensor(x, dtype=F64)
    y = torch.as_tensor(y, dtype=F64)
    assert torch.allclose(x, y, rtol=tol, atol=tol), (x, y)


def const(N, value):
    return torch.full((N,), float(value), dtype=F64)


# ------------------------------------------------------------------ closed forms (onehot)
@pytest.mark.parametrize("V", [2, 3])
def test_info_nce_onehot(V):
    N, tau = 4, 0.2
    z = onehot(N, V)
    # same-view negatives: 1 positive at 1/tau + (2N-2) zeros among the 2N-1 candidates
    close(
        ref.ref_info_nce(z, temperature=tau, reduction="none"),
        const(N, -1 / tau + math.log(math.exp(1 / tau) + 2 * N - 2)),
    )
    # cross-view only: N candidates, positive + (N-1) zeros
    close(
        ref.ref_info_nce(z, temperature=tau, same_view_negatives=False),
        -1 / tau + math.log(math.exp(1 / tau) + N - 1),
    )


@pytest.mark.parametrize("V", [2, 3, 4])
def test_mv_infonce_onehot(V):
    N, tau = 3, 0.25
    z = onehot(N, V)
    e = math.exp(1 / tau)
    pos = 1 / tau + math.log(V * (V - 1))
    # neg (True): per view l: V-1 positives at 1/tau, V(N-1) zeros; V views pooled
    close(
        ref.ref_mv_infonce(z, temperature=tau, reduction="none"),
        const(N, math.log(V * (V - 1) * e + V * V * (N - 1)) - pos),
    )
    # neg (False): per view l: V-1 positives, (V-1)(N-1) zeros
    close(
        ref.ref_mv_infonce(z, temperature=tau, same_view_negatives=False),
        math.log(V * (V - 1) * (e + N - 1)) - pos,
    )


@pytest.mark.parametrize("V", [2, 3])
def test_mv_dhel_onehot(V):
    N, tau = 4, 0.3
    z = onehot(N, V)
    close(
        ref.ref_mv_dhel(z, temperature=tau),
        V * math.log(N - 1) - 1 / tau - math.log(V * (V - 1) / 2),
    )


def test_dhel_onehot_and_equals_mv_dhel():
    N, tau = 4, 0.3
    z = onehot(N, 2)
    close(ref.ref_dhel(z), -1 / tau + 2 * math.log(N - 1))
    close(ref.ref_dhel(z, include_augs=False), -1 / tau + math.log(N - 1))
    zr = rand(5, 2)
    close(
        ref.ref_dhel(zr, temperature=0.4, reduction="none"),
        ref.ref_mv_dhel(zr, temperature=0.4, reduction="none"),
    )


def test_dcl_onehot():
    N, tau = 4, 0.1
    close(
        ref.ref_dcl(onehot(N, 2), temperature=tau, reduction="none"),
        const(N, -1 / tau + math.log(2 * N - 2)),
    )


def test_dclw_hand_example():
    # N=2: instance 0 has identical views (c0 = 1), instance 1 orthogonal views (c1 = 0);
    # every cross-instance dot product is 0.
    z = torch.zeros(2, 2, 4, dtype=F64)
    z[0, 0, 0] = z[0, 1, 0] = 1.0
    z[1, 0, 1] = 1.0
    z[1, 1, 2] = 1.0
    tau, sigma = 0.1, 0.5
    p0 = math.exp(1 / sigma) / (math.exp(1 / sigma) + 1)
    w0 = 2 - 2 * p0
    # negatives of every anchor: the 2 rows of the other instance, both at 0 -> log 2
    close(
        ref.ref_dclw(z, temperature=tau, sigma=sigma, reduction="none"),
        torch.tensor([-w0 / tau + math.log(2), math.log(2)], dtype=F64),
    )


def test_dclw_equals_dcl_when_positives_equal():
    z = rand(4, 1).repeat(1, 2, 1).clone().requires_grad_(True)  # identical views -> w = 1
    a = ref.ref_dclw(z)
    b = ref.ref_dcl(z)
    close(a, b)
    (ga,) = torch.autograd.grad(a, z)
    (gb,) = torch.autograd.grad(b, z)
    close(ga, gb)


def test_supcon_closed_forms():
    # V=1, labels [0,0,1]: instance 2 has no positive
    z = onehot(3, 1)
    close(
        ref.ref_supcon(z, torch.tensor([0, 0, 1]), reduction="none"),
        torch.tensor([math.log(2), math.log(2), 0.0], dtype=F64),
    )
    close(ref.ref_supcon(z, torch.tensor([0, 0, 1])), math.log(2))
    with pytest.raises(ValueError):
        ref.ref_supcon(z, torch.tensor([0, 1, 2]))
    # V=2 onehot, all labels equal: A = own other view (1/tau) + 2N-2 zeros; P = A
    N, tau = 3, 0.2
    val = math.log(math.exp(1 / tau) + 2 * N - 2) - (1 / tau) / (2 * N - 1)
    close(ref.ref_supcon(onehot(N, 2), torch.zeros(N, dtype=torch.long), temperature=tau), val)
    close(
        ref.ref_supcon(
            onehot(N, 2), torch.zeros(N, dtype=torch.long), temperature=tau, base_temperature=0.5
        ),
        val * tau / 0.5,
    )


def test_supcon_distinct_labels_is_ntxent():
    # V=2, distinct labels: P(i,a) = {(i,1-a)}, A(i,a) = all 2N-1 other rows = D(i,a) of NT-Xent
    z = rand(5, 2)
    close(
        ref.ref_supcon(z, torch.arange(5), temperature=0.3, reduction="none"),
        ref.ref_info_nce(z, temperature=0.3, reduction="none"),
    )


def test_soft_supcon_with_label_indicator_is_supcon():
    z = rand(5, 3)
    labels = torch.tensor([0, 1, 0, 2, 1])
    scores = (labels[:, None] == labels[None, :]).to(F64)
    close(
        ref.ref_soft_supcon(z, scores, temperature=0.2, reduction="none"),
        ref.ref_supcon(z, labels, temperature=0.2, reduction="none"),
    )
    # V=1 with a singleton label: excluded from the mean
    z1 = rand(4, 1)
    lab1 = torch.tensor([0, 0, 1, 2])
    sc1 = (lab1[:, None] == lab1[None, :]).to(F64)
    close(ref.ref_soft_supcon(z1, sc1, temperature=0.2), ref.ref_supcon(z1, lab1, temperature=0.2))
    with pytest.raises(ValueError):
        ref.ref_soft_supcon(z1, torch.eye(4, dtype=F64))


@pytest.mark.parametrize("agg", ["geometric", "arithmetic"])
def test_pvc(agg):
    # V=2: CE candidates {(i,1)} ∪ {(j,m): j != i} = all rows but the anchor = NT-Xent
    z = rand(4, 2)
    close(
        ref.ref_pvc(z, temperature=0.3, aggregation=agg, reduction="none"),
        ref.ref_info_nce(z, temperature=0.3, reduction="none"),
    )
    # onehot V=3: every CE = -1/tau + log(e^{1/tau} + (N-1)V); both aggregations give that
    N, V, tau = 3, 3, 0.2
    close(
        ref.ref_pvc(onehot(N, V), temperature=tau, aggregation=agg),
        -1 / tau + math.log(math.exp(1 / tau) + (N - 1) * V),
    )


def test_avg_infonce():
    z = rand(4, 2)  # V=2: c = the other view, NT-Xent is symmetric in the two views
    close(
        ref.ref_avg_infonce(z, temperature=0.3, reduction="none"),
        ref.ref_info_nce(z, temperature=0.3, reduction="none"),
    )
    N, tau = 4, 0.2  # onehot V=3: c[i] = zh[i,v], so the pair is identical rows
    close(
        ref.ref_avg_infonce(onehot(N, 3), temperature=tau),
        -1 / tau + math.log(math.exp(1 / tau) + 2 * N - 2),
    )


def test_kcl_onehot():
    t, gamma = 2.0, 16.0
    close(ref.ref_kcl(onehot(4, 2), reduction="none"), const(4, -2 + gamma * 2 * math.exp(-2 * t)))


def test_hard_info_nce():
    z = rand(4, 3)
    close(
        ref.ref_hard_info_nce(z, temperature=0.3, top_k=100, reduction="none"),
        ref.ref_info_nce(z, temperature=0.3, reduction="none"),
    )
    N, tau = 4, 0.2
    close(
        ref.ref_hard_info_nce(onehot(N, 2), temperature=tau, top_k=1),
        -1 / tau + math.log(math.exp(1 / tau) + 1),
    )
    # top_k only removes candidates -> value can only decrease
    assert (
        ref.ref_hard_info_nce(z, top_k=2, reduction="none")
        <= ref.ref_info_nce(z, reduction="none") + 1e-12
    ).all()


def test_cacr_closed_forms():
    N = 3
    # identical views: attraction 0; all cross-instance d^2 = 2, uniform weights -> -2 beta
    close(ref.ref_cacr(onehot(N, 3), beta=0.7, reduction="none"), const(N, -2 * 0.7))
    # V=2, view 1 of i is e_{N+i}: every d^2 = 2; attraction = 2 alpha (single k, weight 1)
    z = torch.zeros(N, 2, 2 * N, dtype=F64)
    for i in range(N):
        z[i, 0, i] = 1.0
        z[i, 1, N + i] = 1.0
    close(ref.ref_cacr(z, alpha=1.5, beta=0.7, tau_neg=2.0), 2 * 1.5 - 2 * 0.7)


def test_cwcl():
    # orthogonal frozen p: w = 1 on diag, 1/2 off -> w~ = 2/(N+1) diag, 1/(N+1) off
    N, tau = 4, 0.1
    val = math.log(math.exp(1 / tau) + N - 1) - (2 / (N + 1)) / tau
    close(ref.ref_cwcl(onehot(N, 2), temperature=tau, reduction="none"), const(N, val))
    close(ref.ref_cwcl(onehot(N, 2), temperature=tau, symmetric=False), val)
    # N=2 with antipodal frozen embeddings: w = I -> CLIP (cross-view-only InfoNCE)
    z = rand(2, 2)
    z[1, 0] = -3.0 * z[0, 0]
    close(
        ref.ref_cwcl(z, temperature=0.2, reduction="none"),
        ref.ref_info_nce(z, temperature=0.2, same_view_negatives=False, reduction="none"),
    )


@pytest.mark.parametrize("V", [2, 3])
def test_siglip_onehot(V):
    N, tau, b = 4, 0.1, -10.0

    def ls(x):  # log sigmoid
        return -math.log1p(math.exp(-x))

    val = -ls(1 / tau + b) - (N - 1) * ls(-b)
    close(ref.ref_siglip(onehot(N, V), temperature=tau, bias=b, reduction="none"), const(N, val))


def test_soft_contrastive():
    # raw kernel at distance 0, nu = 100: C(100)^2 * 2 * 3.14 ~= 0.99451 (background doc)
    assert abs(ref.t_kernel(0.0, 10.0, 100.0) - 0.99451) < 1e-5
    # matrix form straight from the contract, vs the loops
    N = 3
    z = rand(N, 2, 4, seed=1)
    h = torch.randn(N, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    D = ((h[:, None] - h[None]) ** 2).sum(-1)
    nn = (D + torch.diag(torch.full((N,), float("inf"), dtype=F64))).min(0).values / 1e4
    Dx = torch.cat(
        [
            torch.cat([D, D + nn[None, :]], 1),
            torch.cat([D + nn[:, None], D + nn[None, :] + nn[:, None]], 1),
        ],
        0,
    )
    u = torch.cat([z[:, 0], z[:, 1]])
    Dz = ((u[:, None] - u[None]) ** 2).sum(-1)

    def sym(K):
        return K + K.T - K * K.T

    P, Q = sym(ref.t_kernel(Dx, 10.0, 100.0)), sym(ref.t_kernel(Dz, 1.0, 10.0))
    E = -(P * torch.log(Q + 1e-12) + (1 - P) * torch.log(1 - Q + 1e-12))
    E = E * (1 - torch.eye(2 * N, dtype=F64))
    close(ref.ref_soft_contrastive(z, h), E.mean())
    close(ref.ref_soft_contrastive(z, h, reduction="none"), (E[:N].mean(1) + E[N:].mean(1)) / 2)


def test_alignment_uniformity():
    N = 4
    close(ref.ref_alignment(onehot(N, 3), reduction="none"), torch.zeros(N, dtype=F64))
    z = torch.zeros(N, 2, 2 * N, dtype=F64)  # orthogonal views: d^2 = 2
    for i in range(N):
        z[i, 0, i] = 2.0
        z[i, 1, N + i] = 0.5
    close(ref.ref_alignment(z), 2.0)
    close(ref.ref_alignment(z, alpha=1.0), math.sqrt(2))
    # onehot: all cross-instance d^2 = 2 -> log mean exp(-2t) = -2t
    close(ref.ref_uniformity(onehot(N, 2), t=2.0), -4.0)
    close(ref.ref_uniformity(onehot(N, 2), t=1.5, reduction="none"), const(N, -3.0))


# ------------------------------------------------------------------ generic properties
def test_mean_is_mean_of_none_and_grad_flows():
    z = rand(3, 2, 4, seed=3).to(torch.float32).requires_grad_(True)
    labels = torch.tensor([0, 1, 0])
    scores = torch.rand(3, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    calls = [
        lambda **k: ref.ref_info_nce(z, **k),
        lambda **k: ref.ref_mv_infonce(z, **k),
        lambda **k: ref.ref_mv_dhel(z, **k),
        lambda **k: ref.ref_dhel(z, **k),
        lambda **k: ref.ref_dcl(z, **k),
        lambda **k: ref.ref_dclw(z, **k),
        lambda **k: ref.ref_supcon(z, labels, **k),
        lambda **k: ref.ref_pvc(z, **k),
        lambda **k: ref.ref_avg_infonce(z, **k),
        lambda **k: ref.ref_kcl(z, **k),
        lambda **k: ref.ref_hard_info_nce(z, **k),
        lambda **k: ref.ref_cacr(z, **k),
        lambda **k: ref.ref_cwcl(z, **k),
        lambda **k: ref.ref_soft_supcon(z, scores, **k),
        lambda **k: ref.ref_siglip(z, **k),
        lambda **k: ref.ref_alignment(z, **k),
        lambda **k: ref.ref_soft_contrastive(z, z[:, 0].detach(), **k),
    ]
    for f in calls:
        none, m = f(reduction="none"), f()
        assert none.shape == (3,) and none.dtype == F64 and m.dim() == 0
        close(none.mean(), m)
        (g,) = torch.autograd.grad(m, z)
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    # uniformity: "mean" is mean_v U_v (not the mean of l_i), so only check shapes / gradient
    assert ref.ref_uniformity(z, reduction="none").shape == (3,)
    (g,) = torch.autograd.grad(ref.ref_uniformity(z), z)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_gradcheck_small():
    z = rand(3, 2, 3, seed=4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: ref.ref_info_nce(x, temperature=0.5), (z,))
    assert torch.autograd.gradcheck(lambda x: ref.ref_cacr(x, tau_neg=2.0), (z,))
    assert torch.autograd.gradcheck(lambda x: ref.ref_dclw(x, detach_weight=False), (z,))
