"""Bad input gets a clear error naming the argument and the expected shape; low precision works."""

from __future__ import annotations

import pytest
import torch

import contrastkit.losses as L
from tests.losses.cases import CASES, LossCase, random_batch


def _extras(case: LossCase, z: torch.Tensor):
    return case.extras(z.double(), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_wrong_rank(case):
    z = torch.randn(8, 16)
    with pytest.raises(ValueError, match=r"z must have shape \[N, V, D\].*got 2 dimensions"):
        case.fn(z, *_extras(case, torch.randn(8, 2, 16)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_not_a_tensor(case):
    with pytest.raises(TypeError, match=r"z must be a torch.Tensor of shape \[N, V, D\]"):
        case.fn([[1.0, 2.0]], *_extras(case, torch.randn(1, 2, 2)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_integer_z(case):
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        case.fn(torch.ones(4, 2, 3, dtype=torch.long), *_extras(case, torch.randn(4, 2, 3)))


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "alignment"], ids=lambda c: c.name)
def test_single_instance(case):
    z = torch.randn(1, 2, 4)
    with pytest.raises(ValueError, match=r"N >= 2 instances.*got N=1"):
        case.fn(z, *_extras(case, z))


@pytest.mark.parametrize("case", [c for c in CASES if c.min_views == 2], ids=lambda c: c.name)
def test_too_few_views(case):
    z = torch.randn(4, 1, 4)
    with pytest.raises(ValueError, match=r"views \(shape \[N, V, D\].*got V=1"):
        case.fn(z, *_extras(case, z))


@pytest.mark.parametrize("case", [c for c in CASES if c.max_views == 2], ids=lambda c: c.name)
def test_too_many_views(case):
    z = torch.randn(4, 3, 4)
    with pytest.raises(ValueError, match=r"z must have V = 2 views.*got V=3"):
        case.fn(z, *_extras(case, z))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_non_finite_z(case, bad):
    z = torch.randn(4, 2, 3)
    z[1, 0, 2] = bad
    with pytest.raises(ValueError, match="z contains NaN or Inf"):
        case.fn(z, *_extras(case, torch.randn(4, 2, 3)))


@pytest.mark.parametrize("tau", [0.0, -0.1, float("nan"), float("inf")])
@pytest.mark.parametrize("case", [c for c in CASES if c.temperature_name], ids=lambda c: c.name)
def test_bad_temperature(case, tau):
    z = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match=r"temperature must be > 0"):
        case.fn(z, *_extras(case, z), temperature=tau)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_reduction(case):
    z = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'none'; got 'sum'"):
        case.fn(z, *_extras(case, z), reduction="sum")


def test_supcon_label_checks():
    z = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[4\].*got shape \(3,\)"):
        L.supcon(z, torch.tensor([0, 1, 0]))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        L.supcon(z, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(TypeError, match=r"labels must be an integer torch\.Tensor"):
        L.supcon(z, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="no anchor in the batch has a positive"):
        L.supcon(torch.randn(4, 1, 3), torch.arange(4))


def test_other_argument_checks():
    z = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match=r"scores must have shape \[N, N\] = \[4, 4\]"):
        L.soft_supcon(z, torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"h must have shape \[N, Dh\] with N = 4"):
        L.soft_contrastive(z, torch.randn(5, 7))
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        L.hard_info_nce(z, top_k=0)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        L.pvc(z, aggregation="harmonic")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        L.dclw(z, sigma=0.0)
    with pytest.raises(ValueError, match="tau_neg must be > 0"):
        L.cacr(z, tau_neg=-1.0)


LOW_PRECISION = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_half_precision_matches_float32(case, dtype):
    """fp16/bf16 inputs at temperature 0.05: finite loss and gradients within 1e-2 of fp32 on
    the same (rounded) inputs."""
    v = 3 if case.max_views is None else case.max_views
    z32 = random_batch(32, v, 16, seed=1, dtype=torch.float32).to(dtype).float()
    extras = case.extras(z32, torch.Generator().manual_seed(0))  # float32 extras
    hp = {case.temperature_name: 0.05} if case.temperature_name else {}

    z_low = z32.to(dtype).requires_grad_(True)
    z_ref = z32.clone().requires_grad_(True)
    low = case.fn(z_low, *extras, **hp)
    ref = case.fn(z_ref, *extras, **hp)
    assert low.dtype == torch.float32  # computed in fp32
    assert torch.isfinite(low)
    torch.testing.assert_close(low, ref, rtol=1e-2, atol=1e-4)
    low.backward()
    ref.backward()
    assert z_low.grad.dtype == dtype and torch.isfinite(z_low.grad).all()
    rel = (z_low.grad.float() - z_ref.grad).norm() / z_ref.grad.norm().clamp(min=1e-12)
    assert rel < 1e-2
