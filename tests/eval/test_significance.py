"""paired_bootstrap: exact cases, agreement with the normal approximation, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastkit.eval import paired_bootstrap


def test_identical_models_differ_by_exactly_nothing():
    hits = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    result = paired_bootstrap(hits, hits.clone(), samples=200)
    assert result.difference == 0.0 and result.low == 0.0 and result.high == 0.0
    assert not result.significant and result.relative == 0.0


def test_a_constant_shift_is_exact_and_significant():
    b = np.linspace(0.0, 1.0, 101)
    result = paired_bootstrap(b + 0.25, b, samples=300)
    # every resample moves both means together: the difference is always 0.25
    assert result.difference == pytest.approx(0.25)
    assert result.low == pytest.approx(0.25) and result.high == pytest.approx(0.25)
    assert result.significant and result.mean_a == pytest.approx(0.75)


def test_interval_matches_the_normal_approximation_and_the_seed_fixes_it():
    rng = np.random.default_rng(1)
    b = (rng.random(5000) < 0.12).astype(float)  # HR@20-like hits
    a = np.where(rng.random(5000) < 0.1, 1.0 - b, b)  # 10 % of the users flipped
    result = paired_bootstrap(a, b, samples=4000, seed=3)
    d = a - b
    half = 1.959964 * d.std(ddof=1) / math.sqrt(d.size)
    assert result.difference == pytest.approx(d.mean())
    assert (result.high - result.low) / 2 == pytest.approx(half, rel=0.1)
    assert result.low < d.mean() < result.high
    assert paired_bootstrap(a, b, samples=4000, seed=3) == result
    assert result.relative == pytest.approx(d.mean() / b.mean())
    assert result.relative_low < result.relative < result.relative_high


def test_wider_confidence_gives_a_wider_interval():
    rng = np.random.default_rng(0)
    a, b = rng.random(400), rng.random(400)
    narrow = paired_bootstrap(a, b, samples=2000, confidence=0.5)
    wide = paired_bootstrap(a, b, samples=2000, confidence=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "error", "match"),
    [
        (np.ones(3), np.ones(4), {}, ValueError, "same users"),
        (np.ones((2, 2)), np.ones((2, 2)), {}, ValueError, "1-D"),
        (np.ones(0), np.ones(0), {}, ValueError, "non-empty"),
        (np.array([1.0, np.nan]), np.ones(2), {}, ValueError, "NaN"),
        ([1.0, 0.0], np.ones(2), {}, TypeError, "tensor or array"),
        (np.ones(3), np.ones(3), {"confidence": 1.0}, ValueError, "confidence"),
        (np.ones(3), np.ones(3), {"samples": 0}, ValueError, "samples"),
    ],
)
def test_bad_input_is_refused(a, b, kwargs, error, match):
    with pytest.raises(error, match=match):
        paired_bootstrap(a, b, **kwargs)
