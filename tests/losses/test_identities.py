"""Identities, invariances, closed forms and gradcheck for every loss (library code only)."""

from __future__ import annotations

import math

import pytest
import torch

import contrastkit.losses as L
from tests.losses.cases import CASES, LossCase, random_batch


def _views_for(case: LossCase, wanted: int) -> int:
    hi = case.max_views if case.max_views is not None else wanted
    return max(case.min_views, min(wanted, hi))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_gradcheck_float64(case):
    """Analytic gradients equal finite differences. Detached weights (DCLW's default, CWCL's
    frozen-modality weights) are by design not the derivative of the value, so DCLW is checked
    with ``detach_weight=False`` and CWCL only with respect to the trained modality."""
    z = random_batch(4, _views_for(case, 3), 3, seed=11)
    extras = case.extras(z, torch.Generator().manual_seed(12))
    hp = {"detach_weight": False} if case.name == "dclw" else {}
    if case.name == "cwcl":
        frozen = z[:, :1]
        trained = z[:, 1:].clone().requires_grad_(True)
        assert torch.autograd.gradcheck(
            lambda x: case.fn(torch.cat([frozen, x], dim=1), reduction="none"), (trained,)
        )
        return
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: case.fn(x, *extras, reduction="none", **hp), (z,), eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "uniformity"], ids=lambda c: c.name)
def test_mean_is_mean_of_none(case):
    """(uniformity's mean is log of a mean over all pairs, not a mean of per-instance logs.)"""
    z = random_batch(6, _views_for(case, 4), 5, seed=2)
    extras = case.extras(z, torch.Generator().manual_seed(3))
    per_instance = case.fn(z, *extras, reduction="none")
    assert per_instance.shape == (6,)
    torch.testing.assert_close(case.fn(z, *extras), per_instance.mean())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_permuting_instances_permutes_per_instance_losses(case):
    z = random_batch(7, _views_for(case, 3), 4, seed=5)
    extras = case.extras(z, torch.Generator().manual_seed(6))
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(9))
    permuted_extras = tuple(
        e[perm][:, perm] if e.dim() == 2 and e.shape == (7, 7) else e[perm] for e in extras
    )
    torch.testing.assert_close(
        case.fn(z[perm], *permuted_extras, reduction="none"),
        case.fn(z, *extras, reduction="none")[perm],
    )


SYMMETRIC_IN_VIEWS = [
    "info_nce",
    "mv_infonce",
    "mv_dhel",
    "dhel",
    "dcl",
    "dclw",
    "supcon",
    "pvc",
    "avg_infonce",
    "kcl",
    "hard_info_nce",
    "alignment",
    "uniformity",
]  # cacr and siglip contrast view a against view b only for a < b, so per instance they are not


@pytest.mark.parametrize("name", SYMMETRIC_IN_VIEWS)
def test_invariant_to_permuting_views(name):
    case = next(c for c in CASES if c.name == name)
    v = _views_for(case, 4)
    z = random_batch(5, v, 6, seed=21)
    extras = case.extras(z, torch.Generator().manual_seed(22))
    view_perm = torch.arange(v).flip(0)
    torch.testing.assert_close(
        case.fn(z[:, view_perm], *extras, reduction="none"),
        case.fn(z, *extras, reduction="none"),
    )


def test_mv_dhel_equals_dhel_at_two_views():
    z = random_batch(9, 2, 7, seed=1)
    for tau in (0.05, 0.3, 1.0):
        torch.testing.assert_close(
            L.mv_dhel(z, temperature=tau, reduction="none"),
            L.dhel(z, temperature=tau, reduction="none"),
        )


def test_mv_dhel_does_not_overflow_where_the_official_product_does():
    # fp32, tau = 0.1, V = 8, a nearly collapsed batch (as at the start of training):
    # prod_l sum_j exp(s/tau) ~ (N e^10)^8 ~ 1e54 overflows float32.
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.normalize(torch.randn(1, 1, 32, generator=g), dim=-1)
    z = (base + 0.05 * torch.randn(256, 8, 32, generator=g)).float()
    value = L.mv_dhel(z, temperature=0.1)
    assert torch.isfinite(value)
    zf = torch.nn.functional.normalize(z, dim=-1)
    energies = torch.exp(torch.einsum("ivd,jvd->vij", zf, zf) / 0.1).sum(-1)  # [V, N]
    assert not torch.isfinite(energies.prod(dim=0)).all()  # the official form would be inf


def _orthogonal_identical_views(n: int, v: int) -> torch.Tensor:
    """Instances are one-hot (mutually orthogonal); all views of an instance are identical."""
    return torch.eye(n, dtype=torch.float64)[:, None, :].expand(n, v, n).clone()


@pytest.mark.parametrize("v", [2, 3, 5])
def test_closed_forms_identical_views_orthogonal_instances(v):
    n, tau = 6, 0.2
    z = _orthogonal_identical_views(n, v)
    e = math.exp(1 / tau)
    # NT-Xent: denominator has the positive (e) and self excluded: (2N-2) zeros -> exp(0) = 1
    expected_info_nce = -1 / tau + math.log(e + 2 * n - 2)
    assert L.info_nce(z, temperature=tau).item() == pytest.approx(expected_info_nce, rel=1e-12)
    # CLIP form: N candidates of the other view: one positive, N-1 orthogonal
    assert L.info_nce(z, temperature=tau, same_view_negatives=False).item() == pytest.approx(
        -1 / tau + math.log(e + n - 1), rel=1e-12
    )
    # MV-InfoNCE: pos = log(V(V-1) e); neg = log(V ((V-1) e + (N-1) V))
    expected_mv = math.log(v * ((v - 1) * e + (n - 1) * v)) - math.log(v * (v - 1) * e)
    assert L.mv_infonce(z, temperature=tau).item() == pytest.approx(expected_mv, rel=1e-12)
    # MV-DHEL: unif = V log(N-1); pos = log(V(V-1)/2 e)
    expected_dhel = v * math.log(n - 1) - math.log(v * (v - 1) / 2 * e)
    assert L.mv_dhel(z, temperature=tau).item() == pytest.approx(expected_dhel, rel=1e-12)
    assert L.alignment(z).item() == pytest.approx(0.0, abs=1e-12)
    # uniformity: every pair of distinct instances at squared distance 2
    assert L.uniformity(z, t=2.0).item() == pytest.approx(-4.0, rel=1e-12)


def test_dcl_closed_form_and_difference_from_info_nce():
    n, tau = 5, 0.1
    z = _orthogonal_identical_views(n, 2)
    expected = -1 / tau + math.log(2 * (n - 1))
    assert L.dcl(z, temperature=tau).item() == pytest.approx(expected, rel=1e-12)
    # DCL removes exactly the positive from the NT-Xent denominator
    nt = L.info_nce(z, temperature=tau).item()
    assert nt - L.dcl(z, temperature=tau).item() == pytest.approx(
        math.log(math.exp(1 / tau) + 2 * n - 2) - math.log(2 * n - 2), rel=1e-12
    )


def test_supcon_with_unique_labels_is_nt_xent_and_soft_supcon_with_label_scores_is_supcon():
    z = random_batch(8, 2, 6, seed=4)
    labels = torch.arange(8)
    torch.testing.assert_close(L.supcon(z, labels), L.info_nce(z))
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    scores = (labels[:, None] == labels[None, :]).double()
    torch.testing.assert_close(L.soft_supcon(z, scores, temperature=0.1), L.supcon(z, labels))


def test_supcon_excludes_anchors_without_positive_and_never_returns_nan():
    z = random_batch(4, 1, 3, seed=8)
    labels = torch.tensor([0, 0, 1, 2])  # instances 2 and 3 have no positive
    per_instance = L.supcon(z, labels, reduction="none")
    assert torch.isfinite(per_instance).all()
    assert per_instance[2] == 0 and per_instance[3] == 0
    torch.testing.assert_close(L.supcon(z, labels), per_instance[:2].mean())
    z.requires_grad_(True)
    L.supcon(z, labels).backward()
    assert torch.isfinite(z.grad).all()


def test_cwcl_with_identity_weights_is_clip():
    # antipodal frozen embeddings give w = I exactly (cos = -1 -> w = 0)
    frozen = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    trained = torch.randn(2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = torch.stack([frozen, trained], dim=1)
    torch.testing.assert_close(
        L.cwcl(z, temperature=0.1), L.info_nce(z, temperature=0.1, same_view_negatives=False)
    )


def test_pvc_and_avg_and_hard_reduce_to_info_nce_at_two_views():
    z = random_batch(6, 2, 5, seed=13)
    torch.testing.assert_close(L.pvc(z), L.info_nce(z))
    torch.testing.assert_close(L.pvc(z, aggregation="arithmetic"), L.info_nce(z))
    torch.testing.assert_close(L.avg_infonce(z), L.info_nce(z))
    torch.testing.assert_close(L.hard_info_nce(z, top_k=10), L.info_nce(z))
    assert L.hard_info_nce(z, top_k=2) < L.info_nce(z)


def test_dclw_with_equal_positive_similarities_equals_dcl():
    z = _orthogonal_identical_views(5, 2)
    torch.testing.assert_close(L.dclw(z), L.dcl(z))


def test_low_temperature_info_nce_is_finite_where_raw_exp_overflows():
    z = random_batch(16, 2, 8, seed=1).float()
    for tau in (0.01, 0.005, 1e-3):
        value = L.info_nce(z, temperature=tau)
        assert torch.isfinite(value)
        zn = torch.nn.functional.normalize(z[:, 0], dim=-1)
        assert not torch.isfinite(torch.exp(zn @ zn.T / tau)).all()  # what raw exp would do


def test_registry_and_modules():
    names = L.available()
    assert {"info_nce", "mv_infonce", "mv_dhel", "dhel", "dcl", "dclw", "supcon"} <= set(names)
    z = random_batch(6, 3, 4, seed=0)
    module = L.get("mv_dhel", temperature=0.2)
    torch.testing.assert_close(module(z), L.mv_dhel(z, temperature=0.2))
    assert "temperature=0.2" in repr(module)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    torch.testing.assert_close(L.SupCon()(z, labels), L.supcon(z, labels))
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        L.get("nope")
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        L.get("info_nce", temprature=0.1)


def test_learnable_siglip_module_trains_its_temperature_and_bias():
    module = L.get("siglip")
    assert isinstance(module, L.SigLIP)
    z = random_batch(6, 2, 4, seed=0).float()
    torch.testing.assert_close(module(z), L.siglip(z), rtol=1e-5, atol=1e-6)
    module(z).backward()
    assert module.bias_parameter.grad is not None
    assert module.temperature_module.log_scale.grad is not None
    assert len(list(module.parameters())) == 2
    fixed = L.SigLIP(learnable=False, bias=-5.0)
    assert len(list(fixed.parameters())) == 0
    torch.testing.assert_close(fixed(z), L.siglip(z, bias=-5.0))


def test_tensor_hyperparameters_are_registered():
    temperature = torch.nn.Parameter(torch.tensor(0.2))
    module = L.InfoNCE(temperature=temperature)
    assert list(module.parameters()) == [temperature]
    z = random_batch(4, 2, 3, seed=0)
    module(z).backward()
    assert temperature.grad is not None and torch.isfinite(temperature.grad)
    buffered = L.MVDHEL(temperature=torch.tensor(0.3))
    assert "temperature" in dict(buffered.named_buffers())
    torch.testing.assert_close(buffered(z), L.mv_dhel(z, temperature=0.3))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
def test_alignment_gradient_is_finite_for_identical_views(alpha):
    z = _orthogonal_identical_views(4, 2).requires_grad_(True)
    L.alignment(z, alpha=alpha).backward()
    assert torch.isfinite(z.grad).all()


def test_soft_supcon_all_zero_scores_error_names_the_cause():
    with pytest.raises(ValueError, match="every score between different rows is 0"):
        L.soft_supcon(random_batch(4, 2, 3, seed=0), torch.zeros(4, 4, dtype=torch.float64))
