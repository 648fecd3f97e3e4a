"""Every loss against its independent float64 loop reference: values and gradients (rtol 1e-6)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.losses.cases import CASES, LossCase, random_batch

RTOL = 1e-6
ATOL = 1e-9


def _compare(case: LossCase, n: int, v: int, d: int, seed: int, hp: dict, reduction: str) -> None:
    z = random_batch(n, v, d, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    extras = case.extras(z, g)

    z_lib = z.clone().requires_grad_(True)
    z_ref = z.clone().requires_grad_(True)
    try:
        expected = case.reference(z_ref, *extras, reduction=reduction, **hp)
    except ValueError as undefined:  # e.g. supcon, V = 1, every label unique: no positive
        assert "no instance has a positive" in str(undefined)
        with pytest.raises(ValueError, match="no anchor in the batch has a positive"):
            case.fn(z_lib, *extras, reduction=reduction, **hp)
        return
    try:
        out = case.fn(z_lib, *extras, reduction=reduction, **hp)
    except ValueError as error:  # the reference gives per-instance zeros for such a batch
        if "no anchor in the batch has a positive" in str(error) and not bool(expected.any()):
            return
        raise
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)

    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=torch.float64).reshape(out.shape)
    (grad_lib,) = torch.autograd.grad((out * weights).sum(), z_lib)
    (grad_ref,) = torch.autograd.grad((expected * weights).sum(), z_ref)
    torch.testing.assert_close(grad_lib, grad_ref, rtol=RTOL, atol=ATOL)


def _views(case: LossCase, draw_v: int) -> int:
    lo = case.min_views
    hi = case.max_views if case.max_views is not None else 6
    return lo + draw_v % (hi - lo + 1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(2, 7),
    v_draw=st.integers(0, 20),
    d=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    setting=st.integers(0, 10),
    reduction=st.sampled_from(["mean", "none"]),
    temperature=st.sampled_from([None, 0.05, 0.2, 0.5, 1.0]),
)
def test_matches_reference(case, n, v_draw, d, seed, setting, reduction, temperature):
    hp = dict(case.settings[setting % len(case.settings)])
    if temperature is not None and case.temperature_name is not None:
        hp[case.temperature_name] = temperature
    _compare(case, n, _views(case, v_draw), d, seed, hp, reduction)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_reference_at_defaults_with_six_views(case):
    v = 6 if case.max_views is None else case.max_views
    _compare(case, 5, v, 4, seed=7, hp={}, reduction="none")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_unnormalized_inputs(case):
    hp = {"normalize": False}
    if case.temperature_name is not None:
        hp[case.temperature_name] = 1.0  # keep raw dot products in a sane range
    z_scale = 0.3
    n, v = 4, (3 if case.max_views is None else case.max_views)
    z = random_batch(n, v, 5, seed=3) * z_scale
    g = torch.Generator().manual_seed(4)
    extras = case.extras(z, g)
    torch.testing.assert_close(
        case.fn(z, *extras, reduction="none", **hp),
        case.reference(z, *extras, reduction="none", **hp),
        rtol=RTOL,
        atol=ATOL,
    )
