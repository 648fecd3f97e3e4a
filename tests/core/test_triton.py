"""The Triton kernels (run by Triton's CPU interpreter when there is no GPU) against the dense
path: values and gradients of every loss whose log-sum-exps they compute."""

import importlib.util

import pytest
import torch

from contrastkit.core import core_backend
from tests.losses.cases import CASES, random_batch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None,
    reason="triton is not installed (pip install 'contrastkit[triton]')",
)

# losses whose every softmax-type term is a plain log-sum-exp (others mix kernel and tiled terms)
NAMES = [
    "info_nce",
    "mv_infonce",
    "mv_dhel",
    "dhel",
    "dcl",
    "pvc",
    "avg_infonce",
    "uniformity",
    "kcl",
    "supcon",
    "cwcl",
    "hard_info_nce",
    "cacr",
]


@pytest.mark.parametrize("dim", [3, 16, 40, 1024])
@pytest.mark.parametrize("name", NAMES)
def test_triton_path_matches_dense(name, dim):
    case = next(c for c in CASES if c.name == name)
    v = 3 if case.max_views is None else case.max_views
    z = random_batch(9, v, dim, seed=dim, dtype=torch.float32)
    extras = case.extras(z.double(), torch.Generator().manual_seed(1))
    extras = tuple(e.float() if e.is_floating_point() else e for e in extras)
    results = []
    for impl in ("dense", "triton"):
        zz = z.clone().requires_grad_(True)
        with core_backend(impl):
            out = case.fn(zz, *extras, reduction="none")
        weights = torch.linspace(0.5, 1.5, out.numel()).reshape(out.shape)
        (grad,) = torch.autograd.grad((out * weights).sum(), zz)
        results.append((out, grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=2e-4, atol=2e-5)


def test_learnable_temperature_and_bias_gradients():
    from contrastkit.core import LogSumExp, PairMask, RowIds, dense_pair_reduce
    from contrastkit.core.triton_lse import triton_logsumexp

    g = torch.Generator().manual_seed(0)
    ids = RowIds.for_batch(6, 2, labels=torch.tensor([0, 1, 0, 1, 2, 2]))
    masks = [PairMask.NOT_SELF, PairMask.where(label="other"), PairMask.SAME_VIEW_NEGATIVES]
    grads = []
    for fn in ("dense", "triton"):
        x = torch.randn(12, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
        bias = torch.randn(12, generator=g).requires_grad_(True) if fn == "dense" else None
        bias = torch.randn(12, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        scale = torch.tensor(2.5, requires_grad=True)
        if fn == "dense":
            out = dense_pair_reduce(
                x, x, ids, ids, [LogSumExp(m) for m in masks], scale=scale, candidate_bias=bias
            )
        else:
            out = triton_logsumexp(x, x, ids, ids, masks, scale=scale, candidate_bias=bias)
        total = sum((o * torch.arange(12.0)).sum() for o in out)
        grads.append((out, torch.autograd.grad(total, (x, bias, scale))))
    for a, b in zip(grads[0][0], grads[1][0], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_float64_is_refused():
    with core_backend("triton"), pytest.raises(ValueError, match="computes in float32"):
        from contrastkit.losses import info_nce

        info_nce(torch.randn(4, 2, 3, dtype=torch.float64))
