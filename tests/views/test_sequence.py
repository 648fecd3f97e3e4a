import math
from collections import Counter

import numpy as np
import pytest
import torch

from contrastkit.views import (
    SequenceAugmenter,
    crop,
    mask,
    nearest_neighbours,
    reorder,
    substitute,
)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _items(n, offset=100):
    return np.arange(offset, offset + n, dtype=np.int64)  # distinct, non-zero


# ---------------------------------------------------------------- crop


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 50])
@pytest.mark.parametrize("keep", [0.0, 0.2, 0.5, 0.6, 1.0])
def test_crop_length_and_contiguity(n, keep):
    seq = _items(n)
    rng = _rng(n)
    m = max(1, math.floor(keep * n))
    for _ in range(20):
        out = crop(seq, keep, rng)
        assert out.dtype == np.int64 and out.shape == (m,)
        start = int(out[0] - seq[0])
        np.testing.assert_array_equal(out, seq[start : start + m])


def test_crop_start_is_uniform_over_every_window():
    seq = _items(10)
    rng = _rng(1)
    starts = Counter(int(crop(seq, 0.5, rng)[0] - seq[0]) for _ in range(3000))
    assert sorted(starts) == list(range(6))  # 0..n-m, the last item included
    assert min(starts.values()) > 3000 / 6 * 0.8


def test_ops_do_not_modify_their_input():
    seq = _items(10)
    kept = seq.copy()
    rng = _rng(2)
    crop(seq, 0.5, rng), mask(seq, 0.5, rng), reorder(seq, 1.0, rng)
    substitute(seq, np.ones((200, 3), dtype=np.int64), 1.0, rng)
    np.testing.assert_array_equal(seq, kept)


# ---------------------------------------------------------------- mask


@pytest.mark.parametrize("n", [1, 2, 3, 9, 10, 50])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_mask_exact_count(n, ratio):
    seq = _items(n)
    rng = _rng(n)
    for _ in range(10):
        out = mask(seq, ratio, rng)
        hit = out != seq
        assert hit.sum() == math.floor(ratio * n)
        assert np.all(out[hit] == 0)
        np.testing.assert_array_equal(out[~hit], seq[~hit])


def test_mask_custom_id_and_position_spread():
    seq = _items(8)
    rng = _rng(3)
    counts = np.zeros(8)
    for _ in range(2000):
        out = mask(seq, 0.25, rng, mask_id=999)
        assert set(out[out != seq].tolist()) == {999}
        counts += out == 999
    np.testing.assert_allclose(counts / 2000, 0.25, atol=0.05)


# ---------------------------------------------------------------- reorder


@pytest.mark.parametrize("n", [1, 2, 3, 10, 50])
@pytest.mark.parametrize("ratio", [0.2, 0.6, 0.8, 1.0])
def test_reorder_preserves_the_multiset_within_one_window(n, ratio):
    seq = _items(n)
    rng = _rng(n)
    w = math.floor(ratio * n)
    for _ in range(20):
        out = reorder(seq, ratio, rng)
        assert out.shape == seq.shape
        np.testing.assert_array_equal(np.sort(out), seq)
        moved = np.flatnonzero(out != seq)
        if w <= 1:
            assert moved.size == 0
        elif moved.size:
            assert moved[-1] - moved[0] + 1 <= w


def test_reorder_actually_shuffles():
    seq = _items(20)
    rng = _rng(4)
    assert any(not np.array_equal(reorder(seq, 0.8, rng), seq) for _ in range(5))


# ---------------------------------------------------------------- substitute


def _neighbour_table(num_items, k, seed=0):
    gen = np.random.default_rng(seed)
    table = np.zeros((num_items + 1, k), dtype=np.int64)
    for item in range(1, num_items + 1):
        others = np.setdiff1d(np.arange(1, num_items + 1), [item])
        table[item] = gen.choice(others, size=k, replace=False)
    return table


def test_substitute_only_to_neighbours_at_the_right_rate():
    table = _neighbour_table(40, 5)
    seq = np.random.default_rng(5).integers(1, 41, size=50)
    rng = _rng(6)
    replaced = 0
    draws = 400
    chosen = Counter()
    for _ in range(draws):
        out = substitute(seq, torch.from_numpy(table), 0.2, rng)
        hit = out != seq  # neighbours never contain the item itself
        replaced += hit.sum()
        for pos in np.flatnonzero(hit):
            row = table[seq[pos]]
            assert out[pos] in row
            chosen[int(np.flatnonzero(row == out[pos])[0])] += 1
    rate = replaced / (draws * seq.size)
    assert abs(rate - 0.2) < 0.015  # std ~ 0.003
    freq = np.array([chosen[c] for c in range(5)]) / sum(chosen.values())
    np.testing.assert_allclose(freq, 0.2, atol=0.03)  # uniform over the k neighbours


def test_substitute_extremes_and_padding():
    table = _neighbour_table(10, 3)
    seq = np.array([0, 3, 0, 7, 10])
    assert np.array_equal(substitute(seq, table, 0.0, _rng()), seq)
    out = substitute(seq, table, 1.0, _rng())
    assert out[0] == 0 and out[2] == 0  # padding / masked ids stay
    assert all(out[i] in table[seq[i]] for i in (1, 3, 4))


# ---------------------------------------------------------------- determinism, presets, views


def test_fixed_seed_gives_the_same_views():
    seq = _items(17)
    table = _neighbour_table(200, 4)
    for aug in (SequenceAugmenter.cl4srec(), SequenceAugmenter.mclrec()):
        a = [aug.two_views(seq, _rng(7)) for _ in range(2)]
        for x, y in zip(a[0], a[1], strict=True):
            np.testing.assert_array_equal(x, y)
    for op in (
        lambda r: crop(seq, 0.5, r),
        lambda r: mask(seq, 0.5, r),
        lambda r: reorder(seq, 0.8, r),
        lambda r: substitute(seq, table, 0.5, r),
    ):
        np.testing.assert_array_equal(op(_rng(8)), op(_rng(8)))


def test_presets():
    assert SequenceAugmenter.cl4srec() == SequenceAugmenter(0.2, 0.7, 0.2, 0)
    assert SequenceAugmenter.mclrec() == SequenceAugmenter(0.5, 0.5, 0.8, 0)


def _which_op(view, seq, aug):
    n = seq.size
    if view.size != n:
        assert view.size == max(1, math.floor(aug.crop_keep * n))
        return "crop"
    if np.any(view == aug.mask_id):
        return "mask"
    np.testing.assert_array_equal(np.sort(view), np.sort(seq))
    return "reorder"


@pytest.mark.parametrize("aug", [SequenceAugmenter.mclrec(), SequenceAugmenter(0.6, 0.3, 0.6)])
def test_two_views_use_two_different_ops(aug):
    seq = _items(20)
    rng = _rng(9)
    pairs = Counter()
    for _ in range(600):
        v1, v2 = aug.two_views(seq, rng)
        ops = (_which_op(v1, seq, aug), _which_op(v2, seq, aug))
        assert ops[0] != ops[1]
        pairs[ops] += 1
    assert len(pairs) == 6  # every ordered pair of distinct ops occurs
    assert min(pairs.values()) > 600 / 6 * 0.7


def test_two_views_edge_cases():
    for aug in (SequenceAugmenter.cl4srec(), SequenceAugmenter.mclrec()):
        v1, v2 = aug.two_views(np.array([5]), _rng())
        assert v1.tolist() == [5] and v2.tolist() == [5]
        v1[0] = 1
        assert v2.tolist() == [5]  # independent copies
    seq = np.array([4, 9])
    for aug in (SequenceAugmenter.cl4srec(), SequenceAugmenter.mclrec()):
        seen = set()
        rng = _rng(10)
        for _ in range(200):
            for view in aug.two_views(seq, rng):
                seen.add(tuple(view.tolist()))
        # crop keeps one item, mask hides one of two, reorder's window is 1 item (no change)
        assert seen == {(4,), (9,), (0, 9), (4, 0), (4, 9)}
    # n = 3 with MCLRec: the reorder window has 2 items
    rng = _rng(11)
    views = {tuple(reorder(np.array([1, 2, 3]), 0.8, rng).tolist()) for _ in range(200)}
    assert views == {(1, 2, 3), (2, 1, 3), (1, 3, 2)}


def test_apply_and_bad_inputs():
    aug = SequenceAugmenter.mclrec()
    assert aug.apply("crop", _items(4), _rng()).size == 2
    with pytest.raises(ValueError, match="op"):
        aug.apply("insert", _items(4), _rng())
    with pytest.raises(ValueError, match="crop_keep"):
        SequenceAugmenter(1.5, 0.5, 0.5)
    with pytest.raises(TypeError, match="rng"):
        crop(_items(4), 0.5, 0)
    with pytest.raises(TypeError, match="integer"):
        mask(np.ones(4), 0.5, _rng())
    with pytest.raises(ValueError, match="1-D"):
        reorder(np.ones((2, 2), dtype=np.int64), 0.5, _rng())
    with pytest.raises(ValueError, match="non-empty"):
        crop(np.array([], dtype=np.int64), 0.5, _rng())
    with pytest.raises(ValueError, match="ratio"):
        mask(_items(4), -0.1, _rng())
    with pytest.raises(ValueError, match=r"0\.\.10"):
        substitute(np.array([11]), _neighbour_table(10, 2), 0.5, _rng())
    with pytest.raises(ValueError, match="neighbours"):
        substitute(np.array([1]), np.zeros(11, dtype=np.int64), 0.5, _rng())


# ---------------------------------------------------------------- nearest neighbours


def _brute_force(emb, k):
    n = emb.shape[0] - 1
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    out = np.zeros((n + 1, k), dtype=np.int64)
    for i in range(1, n + 1):
        sims = [(float(unit[i] @ unit[j]), j) for j in range(1, n + 1) if j != i]
        sims.sort(key=lambda pair: -pair[0])
        out[i] = [j for _, j in sims[:k]]
    return out


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_nearest_neighbours_against_brute_force(chunk):
    gen = np.random.default_rng(12)
    emb = gen.normal(size=(41, 6))
    emb[0] = 0.0  # padding row, excluded anyway
    expected = _brute_force(emb, 5)
    got = nearest_neighbours(torch.from_numpy(emb), 5, chunk=chunk)
    assert got.dtype == torch.long and got.shape == (41, 5)
    np.testing.assert_array_equal(got.numpy(), expected)
    assert torch.all(got[0] == 0)
    assert not torch.any(got[1:] == 0)
    assert not torch.any(got[1:] == torch.arange(1, 41)[:, None])


def test_nearest_neighbours_padding_row_is_never_returned():
    emb = np.random.default_rng(13).normal(size=(20, 4)).astype(np.float32)
    emb[0] = emb[5] * 3  # row 0 would be the best match of 5 if it were not excluded
    got = nearest_neighbours(emb, 3, chunk=4)  # ndarray input
    assert not torch.any(got[1:] == 0)
    np.testing.assert_array_equal(got.numpy(), _brute_force(emb.astype(np.float64), 3))


def test_nearest_neighbours_bad_inputs():
    emb = torch.randn(10, 4)
    with pytest.raises(ValueError, match="k must"):
        nearest_neighbours(emb, 9)
    with pytest.raises(ValueError, match="k must"):
        nearest_neighbours(emb, 0)
    with pytest.raises(TypeError):
        nearest_neighbours(torch.ones(10, 4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"\[n\+1, d\]"):
        nearest_neighbours(torch.randn(10), 2)
    bad = emb.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        nearest_neighbours(bad, 2)
