"""SimCTG loss: explicit float64 loop reference, gradcheck, margin 0, masking, low precision,
the LM objective and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.decoding import simctg_lm_loss, simctg_loss
from tests.decoding.tiny import tiny_gpt2

pytestmark = pytest.mark.usefixtures("one_thread")


def _loop_reference(h: torch.Tensor, mask: torch.Tensor, margin: float) -> float:
    """Σ_{b, i≠j valid} relu(ρ − (cos(h_bi, h_bi) − cos(h_bi, h_bj))) / #pairs, one pair at a
    time in float64 Python arithmetic."""
    h = h.double()
    total, count = 0.0, 0
    B, T, _ = h.shape
    for b in range(B):
        for i in range(T):
            for j in range(T):
                if i == j or not mask[b, i] or not mask[b, j]:
                    continue
                hi, hj = h[b, i], h[b, j]
                s_ii = float(hi @ hi) / float(hi.norm() * hi.norm())
                s_ij = float(hi @ hj) / float(hi.norm() * hj.norm())
                total += max(0.0, margin - (s_ii - s_ij))
                count += 1
    return total / count


def _random_case(seed: int, B: int = 3, T: int = 7, d: int = 5):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, d, generator=g)
    h[:, :, 0] += 1.5  # a common direction: cosines spread over (-1, 1), many above 1 − ρ
    mask = torch.rand(B, T, generator=g) < 0.7
    mask[0] = True  # one full row
    mask[1, 1:] = False  # one row with a single valid position (no pair)
    return h, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0.5, 0.9, 1.7])
def test_matches_float64_loop(seed, margin):
    h, mask = _random_case(seed)
    got = simctg_loss(h.double(), mask, margin)
    assert got.dtype == torch.float64
    assert math.isclose(got.item(), _loop_reference(h, mask, margin), rel_tol=1e-12, abs_tol=1e-14)
    got32 = simctg_loss(h, mask.long(), margin)
    assert got32.dtype == torch.float32
    assert math.isclose(got32.item(), _loop_reference(h, mask, margin), rel_tol=1e-5)


def test_default_margin_is_half_and_no_mask_means_all_valid():
    h, _ = _random_case(4)
    full = torch.ones(h.shape[:2], dtype=torch.bool)
    assert simctg_loss(h).item() == pytest.approx(_loop_reference(h, full, 0.5), rel=1e-5)
    assert simctg_loss(h).item() > 0


def test_gradcheck_float64():
    h, mask = _random_case(5, B=2, T=5, d=4)
    h = h.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: simctg_loss(x, mask, 0.8), (h,))


def test_margin_zero_is_exactly_zero():
    """relu(0 − 1 + s) = 0 for every cosine s ≤ 1: ρ = 0 leaves pure MLE."""
    h, mask = _random_case(6)
    h.requires_grad_(True)
    loss = simctg_loss(h, mask, margin=0.0)
    assert loss.item() == 0.0
    loss.backward()
    assert bool((h.grad == 0).all())


def test_masked_positions_get_zero_gradient_and_do_not_matter():
    h, mask = _random_case(7)
    h.requires_grad_(True)
    loss = simctg_loss(h, mask, 0.9)
    loss.backward()
    assert bool((h.grad[~mask] == 0).all())
    assert h.grad[mask].abs().sum() > 0
    changed = h.detach().clone()
    changed[~mask] = torch.randn(int((~mask).sum()), h.shape[-1]) * 10
    assert simctg_loss(changed, mask, 0.9).item() == pytest.approx(loss.item(), rel=1e-6)


def test_identical_states_give_margin_and_orthogonal_give_margin_minus_one():
    same = torch.ones(2, 4, 3)
    assert simctg_loss(same, margin=0.5).item() == pytest.approx(0.5, abs=1e-6)
    eye = torch.eye(4)[None]  # 4 mutually orthogonal states: relu(ρ − 1 + 0)
    assert simctg_loss(eye, margin=1.5).item() == pytest.approx(0.5, abs=1e-6)
    assert simctg_loss(eye, margin=0.5).item() == 0.0


def test_no_pair_gives_attached_zero():
    h = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[1, 0, 0], [0, 0, 1]])
    loss = simctg_loss(h, mask)
    assert loss.item() == 0.0
    loss.backward()
    assert h.grad is not None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_computed_in_float32(dtype):
    h, mask = _random_case(8, d=64)
    low = h.to(dtype)
    got = simctg_loss(low, mask, 0.9)
    assert got.dtype == torch.float32
    # exactly the float32 loss of the rounded input (no low-precision arithmetic inside)
    assert got.item() == pytest.approx(_loop_reference(low.float(), mask, 0.9), rel=1e-5)
    low.requires_grad_(True)
    simctg_loss(low, mask, 0.9).backward()
    assert low.grad.dtype == dtype


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.randn(3, 4),), ValueError, r"hidden must have shape \[B, T, d\]"),
        ((torch.randn(2, 3, 4), torch.ones(2, 4)), ValueError, r"mask must have shape \[B, T\]"),
        ((torch.randn(2, 3, 4), None, -0.1), ValueError, "margin must be a float >= 0"),
        ((torch.randn(2, 3, 4), torch.full((2, 3), 2)), ValueError, "mask must be bool"),
        ((torch.ones(2, 3, 4, dtype=torch.long),), TypeError, "floating point"),
        (([[1.0]],), TypeError, "hidden must be a torch.Tensor"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        simctg_loss(*args)


# --------------------------------------------------------------------------- LM objective


def test_lm_loss_parts():
    pytest.importorskip("transformers")
    model = tiny_gpt2(seed=2, initializer_range=0.05)
    ids = torch.tensor([[4, 9, 13, 2, 8, 0], [7, 7, 30, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
    total, mle, cl = simctg_lm_loss(model, ids, mask, margin=0.5)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    # MLE over the 4 + 3 valid next-token targets
    logp = F.log_softmax(out.logits.float(), dim=-1)
    targets = [(0, t) for t in range(4)] + [(1, t) for t in range(3)]
    expected = -sum(logp[b, t, ids[b, t + 1]] for b, t in targets) / len(targets)
    assert mle.item() == pytest.approx(expected.item(), rel=1e-5)
    h = out.hidden_states[-1]
    assert cl.item() == pytest.approx(_loop_reference(h.detach(), mask.bool(), 0.5), rel=1e-5)
    assert total.item() == pytest.approx(mle.item() + cl.item(), rel=1e-6)
    assert cl.item() > 0
    total.backward()
    assert model.transformer.wte.weight.grad.abs().sum() > 0
    model.zero_grad()
    total0, _, cl0 = simctg_lm_loss(model, ids, mask, margin=0.0)
    assert cl0.item() == 0.0
    assert total0.item() == pytest.approx(mle.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"attention_mask must have the shape of input_ids"):
        simctg_lm_loss(model, ids, mask[:, :3])
    with pytest.raises(ValueError, match=r"\[B, T\] with T >= 2"):
        simctg_lm_loss(model, ids[:, :1])
