"""FastDropout: nn.Dropout's distribution with a mask drawn as ``rand >= p``."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.encoders.dropout import FastDropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keeps_each_element_with_probability_one_minus_p_and_rescales(p):
    torch.manual_seed(0)
    drop = FastDropout(p).train()
    x = torch.full((1_000_000,), 2.0)
    y = drop(x)
    kept = y != 0
    assert torch.all((y[kept] - 2.0 / (1.0 - p)).abs() < 1e-5)  # kept ones scaled, others 0
    n, rate = x.numel(), kept.float().mean().item()
    assert abs(rate - (1.0 - p)) < 5 * math.sqrt(p * (1 - p) / n)  # 5 sigma
    assert abs(y.mean().item() - 2.0) < 0.01 * 2.0 / (1.0 - p)  # unbiased


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 50, requires_grad=True)
    y = FastDropout(0.5).train()(x)
    y.sum().backward()
    expected = (y.detach() != 0).float() * 2.0
    assert torch.equal(x.grad, expected)


def test_eval_and_p_zero_are_the_identity_and_draws_follow_the_seed():
    x = torch.randn(8, 8)
    assert FastDropout(0.5).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    drop = FastDropout(0.3).train()
    torch.manual_seed(5)
    first = drop(x)
    torch.manual_seed(5)
    assert torch.equal(first, drop(x))
    assert not torch.equal(first, drop(x))


def test_low_precision_inputs_keep_their_dtype_and_rate():
    torch.manual_seed(2)
    x = torch.ones(400_000, dtype=torch.bfloat16)
    y = FastDropout(0.3).train()(x)
    assert y.dtype == torch.bfloat16
    assert abs((y != 0).float().mean().item() - 0.7) < 0.005  # threshold drawn in float32


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_p_is_refused(p):
    with pytest.raises(ValueError, match=r"dropout probability p must be in \[0, 1\)"):
        FastDropout(p)
