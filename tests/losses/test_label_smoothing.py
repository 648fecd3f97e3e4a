"""Label smoothing of the CLIP form of ``info_nce`` (Fini et al. 2023) and ``cwcl_multimodal``
(CWCL with one frozen modality and several trainable ones): float64 loop references, parity
with ``torch.nn.functional.cross_entropy(label_smoothing=...)``, the tiled core, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import contrastkit.losses as L
from contrastkit.core import core_backend
from tests.losses.cases import random_batch
from tests.reference import loops

pytestmark = pytest.mark.usefixtures("one_thread")


def ref_clip_smoothed(z: torch.Tensor, *, temperature: float, eps: float) -> torch.Tensor:
    """Explicit loops, float64: per instance the mean over ordered modality pairs (a, b) of
    ``(1-ε)(LSE_j s(ia, jb) - s(ia, ib)) + ε(LSE_j s(ia, jb) - mean_j s(ia, jb))``."""
    zh = F.normalize(z.to(torch.float64), dim=-1)
    n, v, _ = zh.shape
    out = []
    for i in range(n):
        terms = []
        for a in range(v):
            for b in range(v):
                if a == b:
                    continue
                logits = [float(zh[i, a] @ zh[j, b]) / temperature for j in range(n)]
                top = max(logits)
                lse = top + math.log(sum(math.exp(x - top) for x in logits))
                mean = sum(logits) / n
                terms.append((1 - eps) * (lse - logits[i]) + eps * (lse - mean))
        out.append(sum(terms) / len(terms))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("v", [2, 3, 4])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_matches_the_loop_reference(v, eps):
    z = random_batch(7, v, 5, seed=v)
    got = L.info_nce(
        z, temperature=0.2, same_view_negatives=False, label_smoothing=eps, reduction="none"
    )
    torch.testing.assert_close(
        got, ref_clip_smoothed(z, temperature=0.2, eps=eps), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_two_modalities_equal_torch_cross_entropy_with_label_smoothing(eps, dtype):
    """CLIP: (CE(image->text) + CE(text->image)) / 2, torch's label smoothing over N classes."""
    z = random_batch(9, 2, 6, seed=3, dtype=dtype).requires_grad_(True)
    tau = 0.07
    got = L.info_nce(z, temperature=tau, same_view_negatives=False, label_smoothing=eps)
    x = F.normalize(z, dim=-1)
    logits = x[:, 0] @ x[:, 1].T / tau
    targets = torch.arange(9)
    expected = (
        F.cross_entropy(logits, targets, label_smoothing=eps)
        + F.cross_entropy(logits.T, targets, label_smoothing=eps)
    ) / 2
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    torch.testing.assert_close(got, expected, **tol)
    (grad_got,) = torch.autograd.grad(got, z)
    (grad_expected,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(grad_got, grad_expected, **tol)
    per_instance = L.info_nce(
        z, temperature=tau, same_view_negatives=False, label_smoothing=eps, reduction="none"
    )
    per_ce = (
        F.cross_entropy(logits, targets, label_smoothing=eps, reduction="none")
        + F.cross_entropy(logits.T, targets, label_smoothing=eps, reduction="none")
    ) / 2
    torch.testing.assert_close(per_instance, per_ce, **tol)


def test_zero_smoothing_is_plain_clip_and_gradients_match_the_reference():
    z = random_batch(6, 3, 4, seed=11)
    torch.testing.assert_close(
        L.info_nce(z, same_view_negatives=False, label_smoothing=0.0),
        L.info_nce(z, same_view_negatives=False),
        rtol=0,
        atol=0,
    )
    z.requires_grad_(True)
    value = L.info_nce(z, temperature=0.3, same_view_negatives=False, label_smoothing=0.2)
    (grad,) = torch.autograd.grad(value, z)
    z_ref = z.detach().clone().requires_grad_(True)
    zh = F.normalize(z_ref, dim=-1)
    # the same quantity written with dense tensors (differentiable), float64
    v = 3
    total = 0
    for a in range(v):
        for b in range(v):
            if a != b:
                logits = zh[:, a] @ zh[:, b].T / 0.3
                lse = logits.logsumexp(dim=1)
                total = total + 0.8 * (lse - logits.diagonal()) + 0.2 * (lse - logits.mean(1))
    expected = (total / (v * (v - 1))).mean()
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    (grad_expected,) = torch.autograd.grad(expected, z_ref)
    torch.testing.assert_close(grad, grad_expected, rtol=1e-10, atol=1e-12)


def test_the_tiled_core_gives_the_same_values_and_gradients():
    z = random_batch(11, 3, 5, seed=5).requires_grad_(True)
    dense = L.info_nce(z, same_view_negatives=False, label_smoothing=0.1, reduction="none")
    (grad_dense,) = torch.autograd.grad(dense.sum(), z)
    with core_backend("tiled", tile_size=4):
        tiled = L.info_nce(z, same_view_negatives=False, label_smoothing=0.1, reduction="none")
        (grad_tiled,) = torch.autograd.grad(tiled.sum(), z)
    torch.testing.assert_close(tiled, dense, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad_tiled, grad_dense, rtol=1e-10, atol=1e-12)


def test_the_registry_module_takes_label_smoothing():
    z = random_batch(5, 2, 4, seed=2)
    module = L.get("info_nce", same_view_negatives=False, label_smoothing=0.1, temperature=0.5)
    torch.testing.assert_close(
        module(z),
        L.info_nce(z, same_view_negatives=False, label_smoothing=0.1, temperature=0.5),
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label_smoothing": 0.1}, "CLIP form only"),  # NT-Xent denominator
        ({"label_smoothing": 1.0, "same_view_negatives": False}, r"\[0, 1\)"),
        ({"label_smoothing": -0.1, "same_view_negatives": False}, r"\[0, 1\)"),
        ({"label_smoothing": float("nan"), "same_view_negatives": False}, r"\[0, 1\)"),
        ({"label_smoothing": True, "same_view_negatives": False}, r"\[0, 1\)"),
        ({"label_smoothing": "0.1", "same_view_negatives": False}, r"\[0, 1\)"),
    ],
)
def test_bad_label_smoothing_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.info_nce(random_batch(4, 2, 3, seed=0), **kwargs)


# -- CWCL with M >= 2 modalities -----------------------------------------------------------------
def test_cwcl_multimodal_with_two_modalities_is_cwcl():
    z = random_batch(6, 2, 5, seed=4)
    for symmetric in (True, False):
        torch.testing.assert_close(
            L.cwcl_multimodal(z, symmetric=symmetric, reduction="none"),
            L.cwcl(z, symmetric=symmetric, reduction="none"),
            rtol=0,
            atol=0,
        )


@pytest.mark.parametrize("frozen", [0, 1, 2])
def test_cwcl_multimodal_three_modalities_matches_the_loop_reference(frozen):
    """Mean over the two trainable modalities of the float64 loop reference of CWCL between the
    frozen modality and that one (weights always from the frozen modality)."""
    z = random_batch(6, 3, 4, seed=7)
    others = [m for m in range(3) if m != frozen]
    expected = (
        sum(loops.ref_cwcl(z[:, [frozen, m]], temperature=0.1, reduction="none") for m in others)
        / 2
    )
    got = L.cwcl_multimodal(z, frozen=frozen, temperature=0.1, reduction="none")
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        L.cwcl_multimodal(z, frozen=frozen, temperature=0.1), expected.mean(), rtol=1e-10, atol=0
    )


def test_cwcl_multimodal_hand_case_identity_weights_is_clip_against_the_frozen_modality():
    """Antipodal frozen rows give w = I (cos = -1 -> w = 0): each term is CLIP between the
    frozen modality and one trainable modality, so the loss is the mean of two 2-modality CLIP
    losses; the trainable-trainable pair does not enter."""
    frozen = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(2, 2, generator=g, dtype=torch.float64), torch.randn(2, 2, generator=g)
    z = torch.stack([frozen, q, r.double()], dim=1)
    clip = [L.info_nce(z[:, [0, m]], temperature=0.1, same_view_negatives=False) for m in (1, 2)]
    torch.testing.assert_close(L.cwcl_multimodal(z, temperature=0.1), (clip[0] + clip[1]) / 2)
    # by hand for modality 1 (tau 0.1, frozen p0 = e1, p1 = -e1): direction p->q of instance 0
    qn = F.normalize(q, dim=-1)
    s = torch.stack([frozen[0] @ qn[0], frozen[0] @ qn[1]]) / 0.1
    assert torch.isclose(
        torch.logsumexp(s, 0) - s[0],
        L.cwcl(z[:, [0, 1]], temperature=0.1, symmetric=False, reduction="none")[0],
    )


def _cwcl_multimodal_reference(z, *, frozen, temperature, detach):
    """cwcl_multimodal by hand (float64), the weights from ``p`` detached or not."""
    p = F.normalize(z[:, frozen], dim=-1)
    w = (p.detach() if detach else p) @ (p.detach() if detach else p).T / 2 + 0.5
    w = w / w.sum(dim=1, keepdim=True)
    losses = []
    for m in range(z.shape[1]):
        if m == frozen:
            continue
        q = F.normalize(z[:, m], dim=-1)
        s_pq = p @ q.T / temperature  # row i: p_i against every q_j
        s_qp = q @ p.T / temperature
        u2v = torch.logsumexp(s_pq, dim=1) - (w * s_pq).sum(dim=1)
        v2u = torch.logsumexp(s_qp, dim=1) - (w * s_qp).sum(dim=1)
        losses.append(((u2v + v2u) / 2).mean())
    return torch.stack(losses).mean()


def test_cwcl_multimodal_gives_no_gradient_through_the_weights():
    # the frozen modality is not the first one, so a wrong index would show too
    base = random_batch(5, 3, 4, seed=9).to(torch.float64)
    z = base.clone().requires_grad_(True)
    L.cwcl_multimodal(z, frozen=1, temperature=0.5).backward()
    grads = {}
    for detach in (True, False):
        ref = base.clone().requires_grad_(True)
        _cwcl_multimodal_reference(ref, frozen=1, temperature=0.5, detach=detach).backward()
        grads[detach] = ref.grad
    # the loss's gradient is the detached reference's ...
    torch.testing.assert_close(z.grad, grads[True], rtol=1e-9, atol=1e-12)
    # ... and that is a real check: with the weights' gradient the frozen rows' differ
    assert (grads[False][:, 1] - grads[True][:, 1]).abs().max() > 1e-3
    torch.testing.assert_close(grads[False][:, [0, 2]], grads[True][:, [0, 2]])


@pytest.mark.parametrize(
    ("z", "kwargs", "match"),
    [
        (random_batch(4, 1, 3, seed=0), {}, "M >= 2"),
        (random_batch(4, 3, 3, seed=0), {"frozen": 3}, "frozen must be"),
        (random_batch(4, 3, 3, seed=0), {"frozen": -1}, "frozen must be"),
        (random_batch(4, 3, 3, seed=0)[0], {}, r"\[N, M, D\]"),
        (random_batch(4, 3, 3, seed=0), {"reduction": "sum"}, "reduction"),
    ],
)
def test_cwcl_multimodal_bad_inputs(z, kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.cwcl_multimodal(z, **kwargs)
