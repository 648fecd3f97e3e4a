import pytest
import torch
import torch.nn.functional as F

from contrastkit.views.feature import neg_interpolate, pos_extrapolate, score_stats


def _unit(b, d, seed):
    return F.normalize(torch.randn(b, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_identity_at_lambda_one():
    q, k, queue = _unit(4, 8, 0), _unit(4, 8, 1), _unit(16, 8, 2)
    q2, k2 = pos_extrapolate(q, k, lam=1.0)
    torch.testing.assert_close(q2, q)
    torch.testing.assert_close(k2, k)
    torch.testing.assert_close(neg_interpolate(queue, lam=1.0), queue)


def test_extrapolation_lowers_the_positive_score():
    q, k = _unit(64, 16, 3), _unit(64, 16, 4)
    q2, k2 = pos_extrapolate(q, k, generator=torch.Generator().manual_seed(0))
    assert ((q2 * k2).sum(-1) < (q * k).sum(-1)).all()


def test_sampled_lambdas_are_in_range_and_reproducible():
    q, k = _unit(8, 4, 5), _unit(8, 4, 6)
    a = pos_extrapolate(q, k, per_dim=True, generator=torch.Generator().manual_seed(1))
    b = pos_extrapolate(q, k, per_dim=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a[0], b[0])
    lam = (a[0] - k) / (q - k)  # q' = lam q + (1 - lam) k
    assert ((lam >= 1 - 1e-4) & (lam <= 2 + 1e-4)).all()


def test_interpolation_mixes_within_the_queue_and_does_not_touch_it():
    queue = _unit(32, 8, 7)
    stored = queue.clone()
    mixed = neg_interpolate(queue, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(queue, stored)
    assert not torch.allclose(mixed, queue)
    assert (mixed.norm(dim=-1) <= 1 + 1e-6).all()  # convex combination of unit vectors


def test_score_stats_values_and_shape_errors():
    q, k, queue = _unit(4, 8, 0), _unit(4, 8, 1), _unit(16, 8, 2)
    stats = score_stats(q, k, queue, temperature=0.2)
    torch.testing.assert_close(stats["pos"], (q * k).sum(-1))
    torch.testing.assert_close(stats["exp_neg_mean"], torch.exp(q @ queue.T / 0.2).mean(1))
    with pytest.raises(ValueError, match=r"q and k must both have shape \[B, D\]"):
        pos_extrapolate(q, k[:2])
