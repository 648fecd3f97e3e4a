"""Float64 loop references for every loss in docs/loss_contract.md.

Written from the contract alone (not from the library code). Deliberately slow: explicit Python
loops over instances / views / candidates, scalar dot products, and a hand-written log-sum-exp.
Each function returns a float64 tensor of shape [N] for reduction="none" and a scalar for "mean".
"""

import math

import torch
from torch.nn.functional import logsigmoid

F64 = torch.float64


# ----------------------------------------------------------------------------- helpers
def lse(xs):
    """log(sum(exp(x))) of a list of scalar tensors (max-shifted)."""
    x = torch.stack(list(xs))
    m = x.max().detach()
    return m + torch.log(torch.exp(x - m).sum())


def softmax(xs):
    """Softmax of a list of scalar tensors, returned as a list."""
    norm = lse(xs)
    return [torch.exp(x - norm) for x in xs]


def mean(xs):
    xs = list(xs)
    return torch.stack(xs).sum() / len(xs)


def dot(u, v):
    return torch.dot(u, v)


def sqdist(u, v):
    """||u - v||^2 (written as a sum of squares so the gradient at u == v is 0, not NaN)."""
    return ((u - v) ** 2).sum()


def rows(z, normalize):
    """zh[i][a] = z[i,a] / ||z[i,a]|| (or z[i,a] when normalize=False), z cast to float64."""
    z = z.to(F64)
    N, V, _ = z.shape
    return [
        [(z[i, a] / z[i, a].norm()) if normalize else z[i, a] for a in range(V)] for i in range(N)
    ]


def reduce(losses, reduction):
    t = torch.stack(losses)
    return t if reduction == "none" else t.mean()


def reduce_valid(losses, valid, reduction):
    """supcon-style: invalid instances are 0 in 'none' and excluded from 'mean'."""
    zero = torch.zeros((), dtype=F64)
    full = [l if ok else zero for l, ok in zip(losses, valid, strict=True)]
    if reduction == "none":
        return torch.stack(full)
    kept = [l for l, ok in zip(losses, valid, strict=True) if ok]
    if not kept:
        raise ValueError("no instance has a positive")
    return torch.stack(kept).sum() / len(kept)


def pairs(V):
    return [(a, b) for a in range(V) for b in range(a + 1, V)]


# ----------------------------------------------------------------------------- losses
def ref_info_nce(z, *, temperature=0.1, same_view_negatives=True, normalize=True, reduction="mean"):
    """Contract: info_nce."""
    zh, tau = rows(z, normalize), temperature
    N, V = len(zh), len(zh[0])
    out = []
    for i in range(N):
        terms = []
        for p, q in pairs(V):
            for a, b in ((p, q), (q, p)):  # anchor view a, positive view b
                x = zh[i][a]
                cands = []
                for j in range(N):
                    for m in range(V):
                        if same_view_negatives:
                            if m in (a, b) and (j, m) != (i, a):
                                cands.append(dot(x, zh[j][m]) / tau)
                        elif m == b:
                            cands.append(dot(x, zh[j][m]) / tau)
                terms.append(-dot(x, zh[i][b]) / tau + lse(cands))
        out.append(mean(terms))
    return reduce(out, reduction)


def ref_mv_infonce(
    z, *, temperature=0.1, same_view_negatives=True, normalize=True, reduction="mean"
):
    """Contract: mv_infonce."""
    zh, tau = rows(z, normalize), temperature
    N, V = len(zh), len(zh[0])
    out = []
    for i in range(N):
        pos = [dot(zh[i][l], zh[i][l2]) / tau for l in range(V) for l2 in range(V) if l != l2]
        neg = []
        for l in range(V):
            for j in range(N):
                for m in range(V):
                    keep = (j, m) != (i, l) if same_view_negatives else m != l
                    if keep:
                        neg.append(dot(zh[i][l], zh[j][m]) / tau)
        out.append(lse(neg) - lse(pos))
    return reduce(out, reduction)


def ref_mv_dhel(z, *, temperature=0.1, normalize=True, reduction="mean"):
    """Contract: mv_dhel."""
    zh, tau = rows(z, normalize), temperature
    N, V = len(zh), len(zh[0])
    out = []
    for i in range(N):
        pos = lse([dot(zh[i][a], zh[i][b]) / tau for (a, b) in pairs(V)])
        unif = 0
        for l in range(V):
            unif = unif + lse([dot(zh[i][l], zh[j][l]) / tau for j in range(N) if j != i])
        out.append(unif - pos)
    return reduce(out, reduction)


def ref_dhel(z, *, temperature=0.3, include_augs=True, normalize=True, reduction="mean"):
    """Contract: dhel."""
    zh, tau = rows(z, normalize), temperature
    N = len(zh)
    out = []
    for i in range(N):
        l = -dot(zh[i][0], zh[i][1]) / tau
        l = l + lse([dot(zh[i][0], zh[j][0]) / tau for j in range(N) if j != i])
        if include_augs:
            l = l + lse([dot(zh[i][1], zh[j][1]) / tau for j in range(N) if j != i])
        out.append(l)
    return reduce(out, reduction)


def _dcl_terms(zh, tau, weights):
    """Per-instance DCL value with positive-logit weights w_i (1 for plain dcl)."""
    N = len(zh)
    out = []
    for i in range(N):
        terms = []
        for k in (0, 1):
            o = 1 - k
            negs = [dot(zh[i][k], zh[j][m]) / tau for j in range(N) if j != i for m in (0, 1)]
            terms.append(-weights[i] * dot(zh[i][k], zh[i][o]) / tau + lse(negs))
        out.append((terms[0] + terms[1]) / 2)
    return out


def ref_dcl(z, *, temperature=0.1, normalize=True, reduction="mean"):
    """Contract: dcl."""
    zh = rows(z, normalize)
    return reduce(_dcl_terms(zh, temperature, [1.0] * len(zh)), reduction)


def ref_dclw(
    z, *, temperature=0.1, sigma=0.5, detach_weight=True, normalize=True, reduction="mean"
):
    """Contract: dclw."""
    zh = rows(z, normalize)
    N = len(zh)
    sm = softmax([dot(zh[k][0], zh[k][1]) / sigma for k in range(N)])
    w = [2 - N * sm[i] for i in range(N)]
    if detach_weight:
        w = [wi.detach() for wi in w]
    return reduce(_dcl_terms(zh, temperature, w), reduction)


def ref_supcon(
    z, labels, *, temperature=0.1, base_temperature=None, normalize=True, reduction="mean"
):
    """Contract: supcon (Khosla L_out)."""
    zh, tau = rows(z, normalize), temperature
    N, V = len(zh), len(zh[0])
    lab = [int(x) for x in labels]
    out, valid = [], []
    for i in range(N):
        terms = []
        for a in range(V):
            x = zh[i][a]
            A = [(j, b) for j in range(N) for b in range(V) if (j, b) != (i, a)]
            P = [(j, b) for (j, b) in A if lab[j] == lab[i]]
            if not P:
                continue
            terms.append(
                lse([dot(x, zh[j][b]) / tau for (j, b) in A])
                - mean(dot(x, zh[j][b]) / tau for (j, b) in P)
            )
        if terms:
            l = mean(terms)
            if base_temperature is not None:
                l = l * (temperature / base_temperature)
            out.append(l)
            valid.append(True)
        else:
            out.append(torch.zeros((), dtype=F64))
            valid.append(False)
    return reduce_valid(out, valid, reduction)


def ref_pvc(z, *, temperature=0.1, aggregation="geometric", normalize=True, reduction="mean"):
    """Contract: pvc (Poly-View Contrastive)."""
    zh, tau = rows(z, normalize), temperature
    N, V = len(zh), len(zh[0])
    out = []
    for i in range(N):
        per_alpha = []
        for al in range(V):
            x = zh[i][al]
            ces = []
            for be in range(V):
                if be == al:
                    continue
                cands = [dot(x, zh[i][be]) / tau]
                cands += [dot(x, zh[j][m]) / tau for j in range(N) if j != i for m in range(V)]
                ces.append(-dot(x, zh[i][be]) / tau + lse(cands))
            if aggregation == "geometric":
                per_alpha.append(mean(ces))
            else:  # arithmetic
                per_alpha.append(-lse([-c for c in ces]) + math.log(V - 1))
        out.append(mean(per_alpha))
    return reduce(out, reduction)


def _ntxent_two_view(y, tau):
    """Per-instance 2-view NT-Xent on rows y[i][0], y[i][1] (no normalisation)."""
    N = len(y)
    out = []
    for i in range(N):
        terms = []
        for k in (0, 1):
            o = 1 - k
            cands = [
                dot(y[i][k], y[j][m]) / tau for j in range(N) for m in (0, 1) if (j, m) != (i, k)
            ]
            terms.append(-dot(y[i][k], y[i][o]) / tau + lse(cands))
        out.append((terms[0] + terms[1]) / 2)
    return out


def ref_avg_infonce(z, *, temperature=0.1, normalize=True, reduction="mean"):
    """Contract: avg_infonce (AVG baseline)."""
    zh = rows(z, normalize)
    N, V = len(zh), len(zh[0])
    per_view = []
    for v in range(V):
        y = []
        for i in range(N):
            c = sum(zh[i][u] for u in range(V) if u != v) / (V - 1)
            y.append([zh[i][v], c])
        per_view.append(_ntxent_two_view(y, temperature))
    out = [mean(per_view[v][i] for v in range(V)) for i in range(N)]
    return reduce(out, reduction)


def ref_kcl(z, *, t=2.0, gamma=16.0, normalize=True, reduction="mean"):
    """Contract: kcl (Gaussian kernel)."""
    zh = rows(z, normalize)
    N = len(zh)
    out = []
    for i in range(N):
        l = -2 * torch.exp(-t * sqdist(zh[i][0], zh[i][1]))
        for v in (0, 1):
            l = l + gamma * mean(
                torch.exp(-t * sqdist(zh[i][v], zh[j][v])) for j in range(N) if j != i
            )
        out.append(l)
    return reduce(out, reduction)


def ref_hard_info_nce(z, *, temperature=0.1, top_k=16, normalize=True, reduction="mean"):
    """Contract: hard_info_nce (positive + top-k hardest negatives)."""
    zh, tau = rows(z, normalize), temperature
    N, V = len(zh), len(zh[0])
    k = min(top_k, 2 * N - 2)
    out = []
    for i in range(N):
        terms = []
        for p, q in pairs(V):
            for a, b in ((p, q), (q, p)):
                x = zh[i][a]
                pos = dot(x, zh[i][b]) / tau
                negs = [
                    dot(x, zh[j][m]) / tau
                    for j in range(N)
                    for m in (a, b)
                    if (j, m) != (i, a) and (j, m) != (i, b)
                ]
                hard = sorted(negs, key=lambda s: s.item(), reverse=True)[:k]
                terms.append(-pos + lse([pos, *hard]))
        out.append(mean(terms))
    return reduce(out, reduction)


def ref_cacr(
    z,
    *,
    alpha=1.0,
    beta=1.0,
    tau_pos=1.0,
    tau_neg=1.0,
    detach_weights=False,
    normalize=True,
    reduction="mean",
):
    """Contract: cacr (attraction + repulsion, Euclidean cost)."""
    zh = rows(z, normalize)
    N, V = len(zh), len(zh[0])
    out = []
    for i in range(N):
        attr = []
        for x in range(V):
            d2 = [sqdist(zh[i][x], zh[i][k]) for k in range(V) if k != x]
            pi = softmax([tau_pos * d for d in d2])
            if detach_weights:
                pi = [p.detach() for p in pi]
            attr.append(sum(p * alpha * d for p, d in zip(pi, d2, strict=True)))
        rep = []
        for x, y in pairs(V):
            d2 = [sqdist(zh[i][x], zh[j][y]) for j in range(N) if j != i]
            pi = softmax([-tau_neg * d for d in d2])
            if detach_weights:
                pi = [p.detach() for p in pi]
            rep.append(sum(p * (-beta * d) for p, d in zip(pi, d2, strict=True)))
        out.append(mean(attr) + mean(rep))
    return reduce(out, reduction)


def ref_cwcl(z, *, temperature=0.07, symmetric=True, normalize=True, reduction="mean"):
    """Contract: cwcl (view 0 frozen p, view 1 trained q)."""
    zh, tau = rows(z, normalize), temperature
    z64 = z.to(F64).detach()
    N = len(zh)
    pbar = [z64[i, 0] / z64[i, 0].norm() for i in range(N)]
    w = [[dot(pbar[i], pbar[j]) / 2 + 0.5 for j in range(N)] for i in range(N)]
    wt = [[w[i][j] / sum(w[i]) for j in range(N)] for i in range(N)]
    out = []
    for i in range(N):
        s_uv = [dot(zh[i][0], zh[j][1]) / tau for j in range(N)]
        s_vu = [dot(zh[i][1], zh[j][0]) / tau for j in range(N)]
        u2v = lse(s_uv) - sum(wt[i][j] * s_uv[j] for j in range(N))
        v2u = lse(s_vu) - sum(wt[i][j] * s_vu[j] for j in range(N))
        out.append((u2v + v2u) / 2 if symmetric else u2v)
    return reduce(out, reduction)


def ref_soft_supcon(z, scores, *, temperature=0.07, normalize=True, reduction="mean"):
    """Contract: soft_supcon (SPACE-2 soft-positive SupCon)."""
    zh, tau = rows(z, normalize), temperature
    N, V = len(zh), len(zh[0])
    sc = scores.to(F64)
    out, valid = [], []
    for i in range(N):
        terms = []
        for a in range(V):
            x = zh[i][a]
            C = [(j, b) for j in range(N) for b in range(V) if (j, b) != (i, a)]
            msum = sum(sc[i, j] for (j, b) in C)
            if not msum > 0:
                continue
            weighted = sum(sc[i, j] * dot(x, zh[j][b]) / tau for (j, b) in C)
            terms.append(lse([dot(x, zh[j][b]) / tau for (j, b) in C]) - weighted / msum)
        if terms:
            out.append(mean(terms))
            valid.append(True)
        else:
            out.append(torch.zeros((), dtype=F64))
            valid.append(False)
    return reduce_valid(out, valid, reduction)


def ref_siglip(z, *, temperature=0.1, bias=-10.0, normalize=True, reduction="mean"):
    """Contract: siglip (pairwise sigmoid loss)."""
    zh = rows(z, normalize)
    N, V = len(zh), len(zh[0])
    out = []
    for i in range(N):
        per_pair = []
        for a, b in pairs(V):
            row = 0
            for j in range(N):
                logit = dot(zh[i][a], zh[j][b]) / temperature + bias
                sign = 1.0 if i == j else -1.0
                row = row - logsigmoid(sign * logit)
            per_pair.append(row)
        out.append(mean(per_pair))
    return reduce(out, reduction)


def ref_simcse(z, *, temperature=0.05, normalize=True, reduction="mean"):
    """Contract: simcse (anchors view 0, positive view 1, hard negatives views 2..)."""
    zh = rows(z, normalize)
    N, V = len(zh), len(zh[0])
    out = []
    for i in range(N):
        candidates = [dot(zh[i][0], zh[j][v]) / temperature for v in range(1, V) for j in range(N)]
        out.append(lse(candidates) - dot(zh[i][0], zh[i][1]) / temperature)
    return reduce(out, reduction)


def t_kernel(d, sigma, nu):
    """k_nu(d, sigma) = C(nu)^2 * 2 * 3.14 * (1 + (d/sigma)/nu)^(-(nu+1))."""
    C = math.exp(math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)) / math.sqrt(nu * math.pi)
    return C * C * 2 * 3.14 * (1 + (d / sigma) / nu) ** (-(nu + 1))


def ref_soft_contrastive(
    z,
    h,
    *,
    nu_input=100.0,
    nu_latent=10.0,
    sigma_p=10.0,
    sigma_q=1.0,
    aug_near_rate=10000.0,
    detach_input=False,
    normalize=False,
    reduction="mean",
):
    """Contract: soft_contrastive (SAN soft contrastive loss)."""
    zh = rows(z, normalize)
    N = len(zh)
    h = h.to(F64)
    if detach_input:
        h = h.detach()
    D = [[sqdist(h[i], h[j]) for j in range(N)] for i in range(N)]
    nn = [
        torch.stack([D[k][j] for k in range(N) if k != j]).min() / aug_near_rate for j in range(N)
    ]
    M = 2 * N
    u = [zh[a][0] for a in range(N)] + [zh[a][1] for a in range(N)]

    def Dx(a, b):
        i, j = a % N, b % N
        d = D[i][j]
        if b >= N:
            d = d + nn[j]  # "+ nn_row": (D + nn_row)[i, j] = D[i, j] + nn_j
        if a >= N:
            d = d + nn[i]  # "+ nn_col": (D + nn_col)[i, j] = D[i, j] + nn_i
        return d

    Kp = [[t_kernel(Dx(a, b), sigma_p, nu_input) for b in range(M)] for a in range(M)]
    Kq = [[t_kernel(sqdist(u[a], u[b]), sigma_q, nu_latent) for b in range(M)] for a in range(M)]
    E = []
    for a in range(M):
        row = []
        for b in range(M):
            if a == b:
                row.append(torch.zeros((), dtype=F64))
                continue
            P = Kp[a][b] + Kp[b][a] - Kp[a][b] * Kp[b][a]
            Q = Kq[a][b] + Kq[b][a] - Kq[a][b] * Kq[b][a]
            row.append(-(P * torch.log(Q + 1e-12) + (1 - P) * torch.log(1 - Q + 1e-12)))
        E.append(row)
    out = [(mean(E[i]) + mean(E[N + i])) / 2 for i in range(N)]
    return reduce(out, reduction)


def ref_alignment(z, *, alpha=2.0, normalize=True, reduction="mean"):
    """Contract: alignment (Wang & Isola)."""
    zh = rows(z, normalize)
    N, V = len(zh), len(zh[0])
    out = [mean(sqdist(zh[i][a], zh[i][b]) ** (alpha / 2) for (a, b) in pairs(V)) for i in range(N)]
    return reduce(out, reduction)


def ref_uniformity(z, *, t=2.0, normalize=True, reduction="mean"):
    """Contract: uniformity (Wang & Isola); 'mean' is mean_v U_v, not mean of l_i."""
    zh = rows(z, normalize)
    N, V = len(zh), len(zh[0])
    if reduction == "none":
        out = []
        for i in range(N):
            per_view = []
            for v in range(V):
                e = [-t * sqdist(zh[i][v], zh[j][v]) for j in range(N) if j != i]
                per_view.append(lse(e) - math.log(len(e)))  # log mean exp
            out.append(mean(per_view))
        return torch.stack(out)
    U = []
    for v in range(V):
        e = [-t * sqdist(zh[i][v], zh[j][v]) for i in range(N) for j in range(N) if i != j]
        U.append(lse(e) - math.log(len(e)))
    return mean(U)
