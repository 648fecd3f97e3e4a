"""PairMask and pair_reduce against brute-force definitions."""

import itertools

import pytest
import torch

from contrastkit.core import (
    CosineWeights,
    InstanceWeights,
    LogSumExp,
    PairMask,
    Relation,
    RowIds,
    SoftmaxMean,
    WeightedSum,
    pair_reduce,
)


def _brute_relation(ia, va, la, ic, vc, lc):
    if ia == ic:
        return Relation.SELF if va == vc else Relation.POSITIVE
    same_label = la == lc
    if same_label:
        return Relation.SAME_LABEL_SAME_VIEW if va == vc else Relation.SAME_LABEL_OTHER_VIEW
    return Relation.OTHER_LABEL_SAME_VIEW if va == vc else Relation.OTHER_LABEL_OTHER_VIEW


@pytest.mark.parametrize("with_labels", [False, True])
def test_block_matches_brute_force_for_every_mask(with_labels):
    n, v = 5, 3
    labels = torch.tensor([0, 1, 0, 2, 1]) if with_labels else None
    ids = RowIds.for_batch(n, v, labels=labels)
    for size in range(7):
        for relations in itertools.combinations(list(Relation), size):
            mask = PairMask.of(relations)
            block = mask.block(ids, ids)
            for a in range(n * v):
                for c in range(n * v):
                    la = labels[a // v].item() if with_labels else a // v
                    lc = labels[c // v].item() if with_labels else c // v
                    rel = _brute_relation(a // v, a % v, la, c // v, c % v, lc)
                    assert bool(block[a, c]) == (rel in relations)


@pytest.mark.parametrize("with_labels", [False, True])
def test_constant_block_agrees_with_the_built_block_for_every_mask(with_labels):
    """``constant_block`` says True / False only where every / no pair of a one-view-against-one-
    view block is in the set, and ``block(same_view=...)`` equals the general block."""
    n = 6
    labels = torch.tensor([0, 1, 0, 2, 1, 0]) if with_labels else None
    instance = torch.arange(n)
    for same_view in (True, False):
        anchors = RowIds(instance, torch.zeros(n, dtype=torch.long), labels)
        view_c = torch.full((n,), 0 if same_view else 1, dtype=torch.long)
        candidates = RowIds(instance, view_c, labels)
        for size in range(7):
            for relations in itertools.combinations(list(Relation), size):
                mask = PairMask.of(relations)
                general = mask.block(anchors, candidates)
                known = mask.block(anchors, candidates, same_view=same_view)
                assert torch.equal(known, general)
                constant = mask.constant_block(same_view=same_view, labelled=with_labels)
                if constant is None:  # then this block has pairs in and out of the set
                    assert bool(general.any()) and not bool(general.all())
                else:
                    assert bool(general.all()) if constant else not bool(general.any())
    assert PairMask.OTHER_VIEW.constant_block(same_view=False, labelled=True) is True
    assert PairMask.OTHER_VIEW.constant_block(same_view=True, labelled=False) is False
    assert PairMask.NOT_SELF.constant_block(same_view=True, labelled=False) is None


def test_where_and_set_algebra():
    assert PairMask.where(instance="same") == PairMask.of([Relation.SELF, Relation.POSITIVE])
    assert PairMask.NOT_SELF == ~PairMask.SELF
    assert PairMask.where(label="same") - PairMask.SELF == PairMask.of(
        [Relation.POSITIVE, Relation.SAME_LABEL_SAME_VIEW, Relation.SAME_LABEL_OTHER_VIEW]
    )
    assert (PairMask.POSITIVES | PairMask.NEGATIVES) == PairMask.NOT_SELF
    assert (PairMask.POSITIVES & PairMask.NEGATIVES).is_empty()
    assert Relation.POSITIVE in PairMask.OTHER_VIEW
    with pytest.raises(ValueError, match="view must be 'same', 'other' or 'any'"):
        PairMask.where(view="different")


def test_instance_offset_keeps_rows_of_other_processes_distinct():
    ids = RowIds.for_batch(3, 2, instance_offset=3)
    assert ids.instance.tolist() == [3, 3, 4, 4, 5, 5]
    assert ids.view.tolist() == [0, 1, 0, 1, 0, 1]


def _brute_terms(z, mask, scale, labels=None, weights=None, bias=None, top_k=None):
    n, v, _ = z.shape
    ids = RowIds.for_batch(n, v, labels=labels)
    block = mask.block(ids, ids)
    flat = z.reshape(n * v, -1)
    out_lse, out_sum, out_w, out_soft = [], [], [], []
    for a in range(n * v):
        logits = []
        ws = []
        for c in range(n * v):
            if block[a, c]:
                value = scale * torch.dot(flat[a], flat[c])
                if bias is not None:
                    value = value + bias.reshape(-1)[c]
                logits.append(value)
                ws.append(1.0 if weights is None else float(weights[a // v, c // v]))
        x = torch.stack(logits)
        kept = x.sort(descending=True).values[:top_k] if top_k else x
        out_lse.append(torch.logsumexp(kept, 0))
        w = torch.tensor(ws, dtype=x.dtype)
        out_sum.append((w * x).sum())
        out_w.append(w.sum())
        out_soft.append((torch.softmax(x, 0) * x).sum())
    shape = (n, v)
    return [torch.stack(t).reshape(shape) for t in (out_lse, out_sum, out_w, out_soft)]


def test_pair_reduce_terms_match_brute_force():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, 4, dtype=torch.float64, generator=g)
    labels = torch.tensor([0, 1, 0, 1, 2])
    weights = torch.rand(5, 5, dtype=torch.float64, generator=g)
    bias = torch.randn(5, 3, dtype=torch.float64, generator=g)
    mask = PairMask.where(label="same") - PairMask.SELF
    lse, (wsum, wtot), (soft, soft_lse) = pair_reduce(
        z,
        [LogSumExp(mask), WeightedSum(mask, InstanceWeights(weights)), SoftmaxMean(mask)],
        scale=2.5,
        labels=labels,
        candidate_bias=bias,
    )
    b_lse, b_sum, b_w, b_soft = _brute_terms(z, mask, 2.5, labels, weights, bias)
    torch.testing.assert_close(lse, b_lse)
    torch.testing.assert_close(soft_lse, b_lse)
    torch.testing.assert_close(wsum, b_sum)
    torch.testing.assert_close(wtot, b_w)
    torch.testing.assert_close(soft, b_soft)


def test_top_k_and_view_selection():
    z = torch.randn(6, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (top,) = pair_reduce(z, [LogSumExp(PairMask.NEGATIVES, top_k=4)], scale=3.0)
    (b_top, *_) = _brute_terms(z, PairMask.NEGATIVES, 3.0, top_k=4)
    torch.testing.assert_close(top, b_top)
    # anchors of view 2 against candidates of views 0 and 2 only
    (sub,) = pair_reduce(
        z, [LogSumExp(PairMask.NOT_SELF)], scale=1.0, anchor_views=(2,), candidate_views=(0, 2)
    )
    (b_sub, *_) = _brute_terms(z[:, [0, 2]], PairMask.NOT_SELF, 1.0)
    torch.testing.assert_close(sub[:, 0], b_sub[:, 1])


def test_cosine_weights_block():
    e = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=-1)
    ids = RowIds.for_batch(4, 2)
    block = CosineWeights(e).block(ids, ids)
    assert block.shape == (8, 8)
    torch.testing.assert_close(block[0, 2], 0.5 * (e[0] @ e[1]) + 0.5)


def test_float16_inputs_computed_in_float32_by_losses():
    from contrastkit.core import compute_dtype

    assert compute_dtype(torch.float16) == torch.float32
    assert compute_dtype(torch.bfloat16) == torch.float32
    assert compute_dtype(torch.float64) == torch.float64
