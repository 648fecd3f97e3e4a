"""The tiled path equals the dense path for every loss (values and gradients), and its custom
backward passes gradcheck for every term type."""

import importlib

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
    core_backend,
    dense_pair_reduce,
    pair_reduce,
    tiled_pair_reduce,
)
from tests.losses.cases import CASES, random_batch

pair_reduce_module = importlib.import_module("contrastkit.core.pair_reduce")


@pytest.mark.parametrize("tile", [1, 3, 5, 64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_loss_tiled_equals_dense(case, tile):
    v = 3 if case.max_views is None else case.max_views
    z = random_batch(7, v, 4, seed=tile)
    extras = case.extras(z, torch.Generator().manual_seed(1))
    results = []
    for impl in ("dense", "tiled"):
        zz = z.clone().requires_grad_(True)
        with core_backend(impl, tile_size=tile):
            out = case.fn(zz, *extras, reduction="none")
        (grad,) = torch.autograd.grad(
            (out * torch.linspace(0.5, 1.5, 7, dtype=out.dtype)).sum(), zz
        )
        results.append((out, grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-10, atol=1e-12)


def test_learnable_temperature_gradient_matches():
    z = random_batch(6, 3, 4, seed=0)
    grads = []
    for impl in ("dense", "tiled"):
        tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        with core_backend(impl, tile_size=4):
            from contrastkit.losses import mv_infonce

            (g,) = torch.autograd.grad(mv_infonce(z, temperature=tau), tau)
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


def _rows(n, v, labels=None):
    return RowIds.for_batch(n, v, labels=labels)


@pytest.mark.parametrize("detach", [False, True])
def test_gradcheck_of_the_tiled_function_for_every_term(detach):
    g = torch.Generator().manual_seed(0)
    n, v, d = 4, 2, 3
    ids = _rows(n, v, torch.tensor([0, 1, 0, 1]))
    weights = InstanceWeights(torch.rand(n, n, dtype=torch.float64, generator=g))
    cosine = CosineWeights(torch.randn(n, 2, dtype=torch.float64, generator=g))
    terms = [
        LogSumExp(PairMask.NOT_SELF),
        LogSumExp(PairMask.NEGATIVES, top_k=3),
        WeightedSum(PairMask.where(label="same") - PairMask.SELF, weights),
        WeightedSum(PairMask.OTHER_VIEW, cosine),
        SoftmaxMean(PairMask.NEGATIVES, detach_weights=detach),
    ]

    def fn(a, c, bias, scale):
        out = tiled_pair_reduce(
            a, c, ids, ids, terms, scale=scale, candidate_bias=bias, tile_size=3
        )
        flat = [o for r in out for o in (r if isinstance(r, tuple) else (r,))]
        return torch.stack(flat).sum(0) if detach else torch.cat(flat)

    a = torch.randn(n * v, d, dtype=torch.float64, generator=g, requires_grad=True)
    c = torch.randn(n * v, d, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(n * v, dtype=torch.float64, generator=g, requires_grad=True)
    scale = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    if detach:  # detached softmax weights are not the derivative: compare with dense instead
        dense = dense_pair_reduce(a, c, ids, ids, terms, scale=scale, candidate_bias=bias)
        tiled = tiled_pair_reduce(
            a, c, ids, ids, terms, scale=scale, candidate_bias=bias, tile_size=3
        )
        for x, y in zip(dense, tiled, strict=True):
            for p, q in zip(
                x if isinstance(x, tuple) else (x,),
                y if isinstance(y, tuple) else (y,),
                strict=True,
            ):
                torch.testing.assert_close(q, p)
        loss_d = dense[4][0].sum() + dense[0].sum()
        loss_t = tiled[4][0].sum() + tiled[0].sum()
        gd = torch.autograd.grad(loss_d, (a, c, bias, scale))
        gt = torch.autograd.grad(loss_t, (a, c, bias, scale))
        for x, y in zip(gd, gt, strict=True):
            torch.testing.assert_close(y, x)
        return
    assert torch.autograd.gradcheck(fn, (a, c, bias, scale), eps=1e-6, atol=1e-6)


def test_auto_goes_tiled_above_the_threshold(monkeypatch):
    calls = []
    import contrastkit.core.tiled as tiled_module

    original = tiled_module.tiled_pair_reduce

    def spy(*args, **kwargs):
        calls.append(kwargs["tile_size"])
        return original(*args, **kwargs)

    monkeypatch.setattr(tiled_module, "tiled_pair_reduce", spy)
    z = random_batch(6, 2, 3, seed=0)
    pair_reduce(z, [LogSumExp(PairMask.NOT_SELF)], scale=1.0)
    assert calls == []
    monkeypatch.setattr(pair_reduce_module._BACKEND, "auto_rows", 4)
    pair_reduce(z, [LogSumExp(PairMask.NOT_SELF)], scale=1.0)
    assert calls == [1024]


def test_core_backend_validates_and_restores():
    with (
        pytest.raises(ValueError, match="impl must be 'dense', 'tiled', 'triton' or 'auto'"),
        core_backend("fast"),
    ):
        pass
    with (
        pytest.raises(ValueError, match="tile_size must be an int >= 1"),
        core_backend("tiled", tile_size=0),
    ):
        pass
    with core_backend("tiled", tile_size=7):
        assert pair_reduce_module._BACKEND.impl == "tiled"
    assert pair_reduce_module._BACKEND.impl == "auto"


def test_top_k_with_tied_logits_routes_the_gradient_to_k_columns():
    """64 identical rows: every logit ties. Each row's softmax weights must sum to 1 (the
    gradient w.r.t. the candidate bias sums to the number of rows), as on the dense path."""
    z = torch.ones(32, 2, 4, dtype=torch.float64)
    bias_grads = []
    for impl in ("dense", "tiled"):
        bias = torch.zeros(32, 2, dtype=torch.float64, requires_grad=True)
        with core_backend(impl, tile_size=16):
            (lse,) = pair_reduce(
                z, [LogSumExp(PairMask.NEGATIVES, top_k=8)], scale=1.0, candidate_bias=bias
            )
        (grad,) = torch.autograd.grad(lse.sum(), bias)
        bias_grads.append(grad)
        expected = 4.0 + torch.log(torch.tensor(8.0, dtype=torch.float64))  # <1,1> over 4 dims
        torch.testing.assert_close(lse, torch.full_like(lse, expected.item()))
    for grad in bias_grads:
        assert grad.sum().item() == pytest.approx(64.0)
        assert int((grad > 0).sum()) <= 64 * 8


@pytest.mark.parametrize("impl", ["dense", "tiled"])
def test_autocast_does_not_lower_the_loss_precision(impl):
    from contrastkit.losses import hard_info_nce

    z = random_batch(16, 2, 8, seed=3, dtype=torch.float32)
    with core_backend(impl, tile_size=8):
        plain = hard_info_nce(z, top_k=4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = hard_info_nce(z, top_k=4)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, plain, rtol=1e-6, atol=1e-6)


def test_tiled_refuses_pair_weights_that_require_gradient():
    from contrastkit.losses import soft_supcon

    z = random_batch(5, 2, 3, seed=0)
    scores = torch.rand(5, 5, dtype=torch.float64, requires_grad=True)
    soft_supcon(z, scores).backward()  # dense: gradient reaches the scores
    assert scores.grad is not None
    with core_backend("tiled", tile_size=4), pytest.raises(ValueError, match="dense path only"):
        soft_supcon(z, scores)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("impl", ["tiled", "triton"])
@pytest.mark.parametrize("name", ["info_nce", "mv_dhel", "supcon", "dcl"])
def test_half_precision_inputs_match_dense_on_every_path(name, impl, dtype):
    """bf16/fp16 embeddings are computed in fp32 by every path: the tiled and Triton
    (interpreted) paths give the dense path's value and, rounded to the input dtype, its
    gradient; the value is the float64 value of the rounded inputs to fp32 accuracy."""
    import importlib.util

    if impl == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (pip install 'contrastkit[triton]')")
    case = next(c for c in CASES if c.name == name)
    z = random_batch(10, 3 if case.max_views is None else 2, 24, seed=7).to(dtype)
    extras = case.extras(z.double(), torch.Generator().manual_seed(2))
    results = {}
    for path in ("dense", impl):
        leaf = z.clone().requires_grad_(True)
        with core_backend(path, tile_size=4):
            value = case.fn(leaf, *extras)
        (grad,) = torch.autograd.grad(value, leaf)
        assert value.dtype == torch.float32 and grad.dtype == dtype
        results[path] = (value, grad.float())
    torch.testing.assert_close(results[impl][0], results["dense"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[impl][1], results["dense"][1], rtol=1e-2, atol=1e-3)
    exact = case.fn(z.double(), *extras)
    torch.testing.assert_close(results["dense"][0].double(), exact, rtol=1e-5, atol=1e-6)


def test_tile_views_names_the_view_of_single_view_tiles_only():
    from contrastkit.core.tiled import _tile_views

    view = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2])
    ids = RowIds(torch.arange(8), view)
    assert _tile_views(ids, 3) == [0, 1, None]  # rows 0-2, 3-5, 6-7 (views 1 and 2)
    assert _tile_views(ids, 4) == [None, None]
    assert _tile_views(ids, 1) == view.tolist()
    assert _tile_views(ids, 100) == [None]
    assert _tile_views(RowIds(torch.arange(0), torch.arange(0)), 4) == []


def test_one_view_against_another_builds_no_mask(monkeypatch):
    """simcse (view-0 anchors, view-1 candidates): every tile holds only other-view pairs, so
    the tiled core builds no mask, and still equals the dense path."""
    from contrastkit.losses import simcse

    built = []
    original = PairMask.block

    def counting(self, *args, **kwargs):
        built.append(self)
        return original(self, *args, **kwargs)

    z = random_batch(9, 2, 4, seed=3)
    outs = []
    for impl in ("dense", "tiled"):
        zz = z.clone().requires_grad_(True)
        if impl == "tiled":
            monkeypatch.setattr(PairMask, "block", counting)
        with core_backend(impl, tile_size=4):
            out = simcse(zz, reduction="none")
        outs.append((out, torch.autograd.grad(out.sum(), zz)[0]))
    assert built == []
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layout", ["view_major", "shuffled"])
@pytest.mark.parametrize("labelled_side", ["anchors", "candidates", "both"])
def test_tiles_with_labels_on_one_or_both_sides_equal_dense(labelled_side, layout):
    """View-major rows (single-view tiles: the constant-tile shortcut) or shuffled rows (tiles
    mix views), labels on one side, or both: every term equals the dense path."""
    g = torch.Generator().manual_seed(5)
    n, v = 7, 3
    ids = RowIds.for_batch(n, v, labels=torch.randint(0, 3, (n,), generator=g))
    if layout == "shuffled":
        order = torch.randperm(n * v, generator=g)
    else:
        order = torch.arange(n * v).reshape(n, v).T.flatten()
    ids = ids.select(order)
    bare = RowIds(ids.instance, ids.view)
    anchor_ids, candidate_ids = {
        "anchors": (ids, bare),
        "candidates": (bare, ids),
        "both": (ids, ids),
    }[labelled_side]
    a = torch.randn(n * v, 4, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(n * v, 4, generator=g, dtype=torch.float64, requires_grad=True)
    terms = [
        LogSumExp(PairMask.OTHER_VIEW),
        LogSumExp(PairMask.NOT_SELF),
        WeightedSum(PairMask.where(label="same") - PairMask.SELF),
        SoftmaxMean(PairMask.NEGATIVES),
        # constant on other-view tiles only when another instance never shares the label
        LogSumExp(PairMask.of([Relation.POSITIVE, Relation.OTHER_LABEL_OTHER_VIEW])),
    ]
    results = []
    for tile in (3, 4, 100):
        out = tiled_pair_reduce(a, c, anchor_ids, candidate_ids, terms, scale=2.0, tile_size=tile)
        flat = torch.cat([t.reshape(-1) if torch.is_tensor(t) else torch.cat(t) for t in out])
        results.append((flat, torch.autograd.grad(flat.sum(), (a, c))))
    dense = dense_pair_reduce(a, c, anchor_ids, candidate_ids, terms, scale=2.0)
    dense_flat = torch.cat([t.reshape(-1) if torch.is_tensor(t) else torch.cat(t) for t in dense])
    expected = torch.autograd.grad(dense_flat.sum(), (a, c))
    for flat, grads in results:
        torch.testing.assert_close(flat, dense_flat, rtol=1e-10, atol=1e-12)
        for got, want in zip(grads, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
