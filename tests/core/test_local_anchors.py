"""Local anchors (the local half of the distributed local loss): the loss over every split of
the batch into equal anchor shares averages to the full loss, values and gradients, for every
loss whose mean is a mean of per-instance terms, on the dense and the tiled path."""

import pytest
import torch

from contrastkit.core import core_backend, local_anchor_range, local_anchors
from tests.losses.cases import CASES, random_batch

DECOMPOSABLE = [case for case in CASES if case.name != "uniformity"]


@pytest.mark.parametrize("impl", ["dense", "tiled"])
@pytest.mark.parametrize("case", DECOMPOSABLE, ids=lambda c: c.name)
def test_equal_shares_average_to_the_full_loss(case, impl):
    n, shares = 6, 3
    v = max(case.min_views, min(3, case.max_views or 3))
    z = random_batch(n, v, 5, seed=11).requires_grad_(True)
    extras = case.extras(z, torch.Generator().manual_seed(3))
    for setting in case.settings:
        with core_backend(impl, tile_size=4):
            full = case.fn(z, *extras, **setting)
            (full_grad,) = torch.autograd.grad(full, z)
            parts = []
            for k in range(shares):
                with local_anchors(k * n // shares, (k + 1) * n // shares):
                    parts.append(case.fn(z, *extras, **setting))
                    local_none = case.fn(z, *extras, **setting, reduction="none")
                assert local_none.shape == (n // shares,)
            assert local_anchor_range() is None
            combined = torch.stack(parts).mean()
            (combined_grad,) = torch.autograd.grad(combined, z)
        torch.testing.assert_close(combined, full, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(combined_grad, full_grad, rtol=1e-9, atol=1e-12)


def test_local_none_matches_the_full_rows():
    z = random_batch(6, 2, 4, seed=1)
    full = CASES[0].fn(z, reduction="none")
    with local_anchors(2, 4):
        local = CASES[0].fn(z, reduction="none")
    torch.testing.assert_close(local, full[2:4])


def test_uniformity_refuses_local_anchors():
    z = random_batch(6, 2, 4, seed=1)
    import contrastkit.losses as L

    with local_anchors(0, 3), pytest.raises(ValueError, match="local-anchor"):
        L.uniformity(z)


@pytest.mark.parametrize("start, stop", [(-1, 2), (3, 3), (4, 2)])
def test_bad_ranges(start, stop):
    with pytest.raises(ValueError, match="0 <= start < stop"), local_anchors(start, stop):
        pass


def test_range_beyond_the_batch():
    z = random_batch(4, 2, 3, seed=0)
    import contrastkit.losses as L

    with local_anchors(2, 6), pytest.raises(ValueError, match="outside the batch"):
        L.info_nce(z)


@pytest.mark.parametrize("impl", ["dense", "tiled"])
def test_only_local_anchor_rows_are_computed(monkeypatch, impl):
    """The saving is real: logit blocks have the local rows only (1/shares of the work)."""
    import sys

    pr = sys.modules["contrastkit.core.pair_reduce"]  # the package re-exports the function
    tiled = sys.modules["contrastkit.core.tiled"]
    import contrastkit.losses as L

    rows_seen = []
    if impl == "dense":
        original = pr.reduce_block

        def spy(logits, *args, **kwargs):
            rows_seen.append(logits.shape)
            return original(logits, *args, **kwargs)

        monkeypatch.setattr(pr, "reduce_block", spy)
    else:
        original = tiled.tiled_pair_reduce

        def spy(anchors, candidates, *args, **kwargs):
            rows_seen.append((anchors.shape[0], candidates.shape[0]))
            return original(anchors, candidates, *args, **kwargs)

        monkeypatch.setattr(tiled, "tiled_pair_reduce", spy)
    z = random_batch(8, 2, 4, seed=0)
    with core_backend(impl), local_anchors(2, 4):
        L.info_nce(z)
    assert rows_seen and all(
        shape == (2 if impl == "dense" else 4, 8 if impl == "dense" else 16) for shape in rows_seen
    )


def test_out_of_memory_in_the_dense_core_suggests_the_tiled_path(monkeypatch):
    import sys

    import contrastkit.losses as L

    pr = sys.modules["contrastkit.core.pair_reduce"]

    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")

    monkeypatch.setattr(pr, "reduce_block", no_memory)
    z = random_batch(8, 2, 4, seed=0)
    with pytest.raises(RuntimeError, match=r"can't allocate(.|\n)*core_backend\('tiled'\)"):
        L.info_nce(z)
    with core_backend("tiled"):  # the tiled path does not use the dense block at all
        assert torch.isfinite(L.info_nce(z))

    def other_error(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(pr, "reduce_block", other_error)
    with pytest.raises(RuntimeError, match=r"^shape mismatch$"):
        L.info_nce(z)
