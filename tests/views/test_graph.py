"""GRACE's graph views: edge dropping (directed, as the official code, or per undirected pair)
and feature-column masking."""

import pytest
import torch

from contrastkit.views import drop_edges, mask_features


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread (on a loaded 2-core machine a second OpenMP thread
    turns each small matmul into a ~16 ms wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ring(n: int) -> torch.Tensor:
    """Undirected ring stored in both directions: columns i and i + n are mirror images."""
    src = torch.arange(n)
    dst = (src + 1) % n
    return torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])


def test_drop_edges_rate_and_independence_of_directions():
    edge_index = _ring(100)  # 200 directed edges
    p, draws = 0.3, 200
    gen = torch.Generator().manual_seed(0)
    kept_fraction, both_kept = [], []
    key = edge_index[0] * 1000 + edge_index[1]
    for _ in range(draws):
        view = drop_edges(edge_index, p, gen)
        kept = torch.isin(key, view[0] * 1000 + view[1])
        kept_fraction.append(kept.float().mean())
        both_kept.append((kept[:100] & kept[100:]).float().mean())
    # 40,000 Bernoulli draws: std of the mean ~0.0023
    assert abs(torch.stack(kept_fraction).mean() - (1 - p)) < 0.01
    # GRACE's dropout_adj drops the two directions independently: both survive w.p. (1-p)^2
    assert abs(torch.stack(both_kept).mean() - (1 - p) ** 2) < 0.015


def test_drop_edges_undirected_drops_pairs_together():
    edge_index = _ring(100)
    gen = torch.Generator().manual_seed(1)
    rates = []
    for _ in range(100):
        view = drop_edges(edge_index, 0.4, gen, undirected=True)
        forward = set(map(tuple, view.T.tolist()))
        assert forward == {(b, a) for a, b in forward}  # symmetric view
        rates.append(view.shape[1] / edge_index.shape[1])
    assert abs(sum(rates) / len(rates) - 0.6) < 0.02


def test_drop_edges_keeps_order_and_extremes():
    edge_index = _ring(10)
    assert torch.equal(drop_edges(edge_index, 0.0), edge_index)
    assert drop_edges(edge_index, 1.0).shape == (2, 0)
    gen = torch.Generator().manual_seed(2)
    view = drop_edges(edge_index, 0.5, gen)
    positions = [edge_index.T.tolist().index(e) for e in view.T.tolist()]
    assert positions == sorted(positions)  # a subsequence of the input columns
    with pytest.raises(ValueError, match="probability"):
        drop_edges(edge_index, 1.5)


def test_views_are_deterministic_with_a_seeded_generator():
    edge_index = _ring(50)
    x = torch.randn(50, 40)
    a = drop_edges(edge_index, 0.3, torch.Generator().manual_seed(7))
    b = drop_edges(edge_index, 0.3, torch.Generator().manual_seed(7))
    c = drop_edges(edge_index, 0.3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    m1 = mask_features(x, 0.5, torch.Generator().manual_seed(7))
    m2 = mask_features(x, 0.5, torch.Generator().manual_seed(7))
    m3 = mask_features(x, 0.5, torch.Generator().manual_seed(8))
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)


def test_mask_features_masks_whole_columns_at_rate_p():
    x = torch.rand(30, 200) + 0.1  # no zeros, so zero columns are the masked ones
    x_before = x.clone()
    gen = torch.Generator().manual_seed(3)
    p, fractions = 0.3, []
    for _ in range(100):
        out = mask_features(x, p, gen)
        zero = out == 0
        masked_columns = zero.all(0)
        assert torch.equal(zero.any(0), masked_columns)  # per column, same for all nodes
        assert torch.equal(out[:, ~masked_columns], x[:, ~masked_columns])  # no rescaling
        fractions.append(masked_columns.float().mean())
    assert torch.equal(x, x_before)
    assert abs(torch.stack(fractions).mean() - p) < 0.015  # 20,000 draws
    assert torch.equal(mask_features(x, 0.0), x)
    assert bool((mask_features(x, 1.0) == 0).all())
