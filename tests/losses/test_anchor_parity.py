"""Parity with two independent implementations: pytorch-metric-learning and lightly.

pytorch-metric-learning (PML, a dev dependency):

* ``NTXentLoss(temperature=t)`` on ``cat([z[:, 0], z[:, 1]])`` with labels
  ``cat([arange(N), arange(N)])`` equals ``info_nce(z, temperature=t)`` (V = 2). PML's default
  reducer is ``MeanReducer`` and NT-Xent's losses are of ``reduction_type="pos_pair"``: one loss
  per (anchor, positive) pair. With these labels each of the 2N rows is the anchor of exactly one
  positive pair, and its denominator is the positive plus every row of another label (2N - 1
  candidates), so PML's mean over the 2N positive pairs is our mean over the 2N anchors (= the
  mean over instances of the mean of their two anchors). Checked per instance as well.
  (PML computes ``-log(num / den + finfo.tiny)``; ``tiny`` is far below anything that matters.)
* ``SupConLoss(temperature=t)`` on ``z.reshape(N * V, D)`` with labels repeated per view equals
  ``supcon(z, labels, temperature=t)`` for V = 1 and V = 2. PML returns one loss per row
  (``reduction_type="element"``): ``-mean_{p in P} log_softmax`` over all other rows, which is 0 for
  a row without positives, and reduces with ``AvgNonZeroReducer``, the mean of the losses that are
  ``> 0``. Whether a row has a positive depends only on its instance (V >= 2: always; V = 1: its
  label occurs twice), so every valid instance contributes exactly V anchors and "mean over rows
  with a positive" equals our "mean over valid instances of the mean over their anchors". The two
  agree as long as every row that has a positive has a loss that is *computed* as ``> 0``. They
  differ, by design of PML, in two cases (each pinned by a test below, not hidden by tolerances):

  1. A batch whose rows all share one label: PML has no negative pair and returns 0
     (``if pos_mask.any() and neg_mask.any()`` guard); we (and Khosla et al.'s L_out) return
     ``LSE_A - mean_P > 0``.
  2. A row whose true loss ``log(1 + sum_neg exp(s_neg - s_pos))`` is positive but rounds to
     exactly 0 (positives far more similar than all negatives, e.g. t = 0.05 in float32): PML's
     ``AvgNonZeroReducer`` drops that row from the mean *count* as well, so its mean is taken over
     fewer rows; we keep it (it has a positive). Example below: float32 PML gives 20.69, we and
     float64 PML give 10.35. The random-data tests therefore assert, as an explicit precondition,
     that PML's per-row loss of every row with a positive is well above 0.

lightly (``pip install --no-deps lightly==1.6.0``): ``import lightly.loss`` needs torchvision,
which cannot be installed beside our torch, so ``ntx_ent_loss.py`` and ``dcl_loss.py`` are loaded
from their files with the torchvision-dragging packages stubbed in ``sys.modules`` (only
``lightly.models.modules.memory_bank.MemoryBankModule`` is used, and with ``memory_bank_size=0``
it only returns ``(out1, None)``; ``lightly.utils.dist`` imports for real). Skipped if lightly is
not installed.

* ``NTXentLoss(temperature=t)(out0, out1)`` equals ``info_nce(z, temperature=t)`` (lightly's
  default temperature is 0.5, so it is always passed).
* ``DCLLoss(temperature=t)`` equals ``dcl``; ``DCLWLoss(temperature=t, sigma=s)`` equals
  ``dclw(temperature=t, sigma=s)`` (lightly detaches the weight, as ``detach_weight=True``).

Values and gradients w.r.t. z, float64 and float32 (every implementation computes in the input
dtype). Tolerances: float64 rtol 1e-9, atol 1e-11 (observed differences <= ~4e-14); float32
rtol 1e-5, atol 2e-5 (logits up to 1/t = 20 carry a float32 rounding error of ~20 * 2^-23 each;
observed differences <= ~4e-6).
"""

from __future__ import annotations

import types

import pytest
import torch
from benchmarks.anchors import INSTALL, StubMemoryBankModule, load_lightly_losses
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers

from contrastkit.losses import dcl, dclw, info_nce, supcon

DTYPES = [torch.float64, torch.float32]
TOLERANCES = {
    torch.float64: {"rtol": 1e-9, "atol": 1e-11},
    torch.float32: {"rtol": 1e-5, "atol": 2e-5},
}
TEMPERATURES = [0.05, 0.1, 0.5, 1.0]
# (seed, N, D): N from 3 to 16, D from 2 to 32
SHAPES = [(0, 3, 2), (1, 4, 3), (2, 7, 8), (3, 12, 16), (4, 16, 32)]
SHAPE_IDS = [f"s{s}-N{n}-D{d}" for s, n, d in SHAPES]


def _batch(seed: int, n: int, v: int, d: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * seed + 10 * n + d)
    return torch.randn(n, v, d, generator=g, dtype=torch.float64).to(dtype)


def _labels(seed: int, n: int) -> torch.Tensor:
    """At least two classes (see case 1 in the module docstring) and, by pigeonhole (fewer
    classes than instances), at least one class with two members, so V = 1 has a positive."""
    g = torch.Generator().manual_seed(7 + seed)
    k = max(2, n // 2)
    labels = torch.randint(0, k, (n,), generator=g)
    if labels.unique().numel() < 2:
        labels[0] = (labels[0] + 1) % k
    return labels


def _value_and_grad(fn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.clone().requires_grad_(True)
    out = fn(z)
    (grad,) = torch.autograd.grad(out, z)
    return out.detach(), grad


def _assert_parity(ours, theirs, z: torch.Tensor) -> None:
    """Values and gradients w.r.t. z of two scalar losses of z, in z's dtype."""
    tol = TOLERANCES[z.dtype]
    value, grad = _value_and_grad(ours, z)
    value_ref, grad_ref = _value_and_grad(theirs, z)
    assert value.shape == value_ref.shape == torch.Size([])
    assert value.dtype == value_ref.dtype == z.dtype
    torch.testing.assert_close(value, value_ref, **tol)
    torch.testing.assert_close(grad, grad_ref, **tol)


# ----------------------------------------------------------------------------- PML NT-Xent
def _pml_ntxent_input(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = z.shape[0]
    return torch.cat([z[:, 0], z[:, 1]]), torch.arange(n).repeat(2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("t", TEMPERATURES)
@pytest.mark.parametrize(("seed", "n", "d"), SHAPES, ids=SHAPE_IDS)
def test_pml_ntxent_matches_info_nce(seed, n, d, t, dtype):
    z = _batch(seed, n, 2, d, dtype)
    loss = pml_losses.NTXentLoss(temperature=t)

    def theirs(x):
        return loss(*_pml_ntxent_input(x))

    _assert_parity(lambda x: info_nce(x, temperature=t), theirs, z)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("seed", "n", "d"), SHAPES, ids=SHAPE_IDS)
def test_pml_ntxent_per_instance(seed, n, d, dtype):
    """One PML loss per positive pair (= per anchor row); instance i owns rows i and N + i."""
    t = 0.1
    z = _batch(seed, n, 2, d, dtype)
    out = pml_losses.NTXentLoss(temperature=t, reducer=pml_reducers.DoNothingReducer())(
        *_pml_ntxent_input(z)
    )["loss"]
    anchors, positives = out["indices"]
    assert sorted(anchors.tolist()) == list(range(2 * n))
    assert torch.equal(positives, (anchors + n) % (2 * n))
    per_row = torch.zeros(2 * n, dtype=dtype).index_put_((anchors,), out["losses"])
    expected = per_row.reshape(2, n).mean(dim=0)
    ours = info_nce(z, temperature=t, reduction="none")
    torch.testing.assert_close(ours, expected, **TOLERANCES[dtype])


# ----------------------------------------------------------------------------- PML SupCon
def _rows_with_positive(labels: torch.Tensor, v: int) -> torch.Tensor:
    """[N, V] bool: row (i, a) has another row with its label."""
    counts = torch.bincount(labels)[labels]
    return (counts * v > 1)[:, None].expand(-1, v)


def _pml_supcon_rows(z: torch.Tensor, labels: torch.Tensor, t: float) -> torch.Tensor:
    """PML's per-row SupCon losses, [N, V] (row (i, a) is embedding i * V + a)."""
    n, v, d = z.shape
    out = pml_losses.SupConLoss(temperature=t, reducer=pml_reducers.DoNothingReducer())(
        z.reshape(n * v, d), labels.repeat_interleave(v)
    )["loss"]
    assert torch.equal(out["indices"], torch.arange(n * v))
    return out["losses"].reshape(n, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("t", TEMPERATURES)
@pytest.mark.parametrize("v", [1, 2])
@pytest.mark.parametrize(("seed", "n", "d"), SHAPES, ids=SHAPE_IDS)
def test_pml_supcon_matches_supcon(seed, n, d, v, t, dtype):
    z = _batch(seed, n, v, d, dtype)
    labels = _labels(seed, n)

    # Precondition (module docstring, case 2): PML's AvgNonZeroReducer keeps every row that
    # has a positive, i.e. none of their losses is (rounded to) <= 0.
    has_positive = _rows_with_positive(labels, v)
    rows = _pml_supcon_rows(z, labels, t)
    assert has_positive.any()
    assert rows[has_positive].min() > 1e-4, "test data in the rounding-to-zero regime"
    assert torch.all(rows[~has_positive] == 0)

    loss = pml_losses.SupConLoss(temperature=t)

    def theirs(x):
        return loss(x.reshape(n * v, d), labels.repeat_interleave(v))

    _assert_parity(lambda x: supcon(x, labels, temperature=t), theirs, z)

    # per instance: mean over the anchors with a positive, 0 for instances without one
    anchors_used = has_positive.sum(dim=1)
    expected = rows.sum(dim=1) / anchors_used.clamp(min=1).to(dtype)
    ours = supcon(z, labels, temperature=t, reduction="none")
    torch.testing.assert_close(ours, expected, **TOLERANCES[dtype])
    if v == 1:
        assert torch.all(ours[anchors_used == 0] == 0)


def test_pml_supcon_v1_has_instances_without_positive():
    """The V = 1 parity above really exercises the exclusion of instances without positive."""
    excluded = [(~_rows_with_positive(_labels(seed, n), 1)).any().item() for seed, n, _ in SHAPES]
    assert sum(excluded) >= 3


def test_pml_supcon_single_class_batch_is_zero_in_pml():
    """Documented difference 1: with one label for the whole batch PML returns 0 (no negative
    pair); we return L_out with every other row a positive, which is >= log(NV - 1) > 0."""
    z = _batch(0, 5, 2, 4, torch.float64)
    labels = torch.zeros(5, dtype=torch.long)
    theirs = pml_losses.SupConLoss(temperature=0.1)(z.reshape(10, 4), labels.repeat_interleave(2))
    ours = supcon(z, labels, temperature=0.1)
    assert theirs.item() == 0.0
    # all nine other rows are positives: term = LSE_A s - mean_A s >= log 9
    assert ours.item() >= torch.log(torch.tensor(9.0)).item()


def test_pml_supcon_drops_rows_whose_loss_rounds_to_zero():
    """Documented difference 2: rows 0 and 1 (label 0) coincide, and rows 2, 3 (label 1) are
    orthogonal to them, so at t = 0.05 the loss of rows 0 and 1 is log(1 + 2 e^-20) ~ 4.1e-9.
    In float32 that rounds to 0, and PML's AvgNonZeroReducer then averages over rows 2, 3 only
    (20.69); float64 PML keeps them (10.35). We count every row with a positive in both dtypes."""
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    t = 0.05
    # rows 2, 3: LSE(0, 0, -20) + 20 = log(2 + e^-20) + 20
    big = torch.logsumexp(torch.tensor([0.0, 0.0, -20.0], dtype=torch.float64), 0).item() + 20
    small = torch.log1p(torch.tensor(2 * torch.e**-20.0, dtype=torch.float64)).item()

    ours64 = supcon(x[:, None], labels, temperature=t).item()
    ours32 = supcon(x[:, None].float(), labels, temperature=t).item()
    pml64 = pml_losses.SupConLoss(temperature=t)(x, labels).item()
    pml32 = pml_losses.SupConLoss(temperature=t)(x.float(), labels).item()

    assert ours64 == pytest.approx((2 * small + 2 * big) / 4, rel=1e-12)
    assert pml64 == pytest.approx(ours64, rel=1e-12)
    assert ours32 == pytest.approx(ours64, rel=1e-6)
    assert pml32 == pytest.approx(big, rel=1e-6)  # twice ours: rows 0, 1 dropped
    assert _pml_supcon_rows(x[:, None].float(), labels, t)[:2].abs().max().item() == 0.0


# ----------------------------------------------------------------------------- lightly
@pytest.fixture
def lightly_losses(monkeypatch) -> types.SimpleNamespace:
    losses = load_lightly_losses(monkeypatch.setitem)
    if losses is None:
        pytest.skip(f"lightly is not installed; install it without torchvision: {INSTALL}")
    return losses


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("t", TEMPERATURES)
@pytest.mark.parametrize(("seed", "n", "d"), SHAPES, ids=SHAPE_IDS)
def test_lightly_ntxent_matches_info_nce(lightly_losses, seed, n, d, t, dtype):
    loss = lightly_losses.NTXentLoss(temperature=t)
    assert isinstance(loss.memory_bank, StubMemoryBankModule)
    _assert_parity(
        lambda x: info_nce(x, temperature=t),
        lambda x: loss(x[:, 0], x[:, 1]),
        _batch(seed, n, 2, d, dtype),
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("t", TEMPERATURES)
@pytest.mark.parametrize(("seed", "n", "d"), SHAPES, ids=SHAPE_IDS)
def test_lightly_dcl_matches_dcl(lightly_losses, seed, n, d, t, dtype):
    loss = lightly_losses.DCLLoss(temperature=t)
    _assert_parity(
        lambda x: dcl(x, temperature=t),
        lambda x: loss(x[:, 0], x[:, 1]),
        _batch(seed, n, 2, d, dtype),
    )


# lightly builds the DCLW weight with torch.tensor(<tensor>), which warns
@pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("sigma", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("t", [0.05, 0.1, 0.5])
@pytest.mark.parametrize(("seed", "n", "d"), SHAPES, ids=SHAPE_IDS)
def test_lightly_dclw_matches_dclw(lightly_losses, seed, n, d, t, sigma, dtype):
    loss = lightly_losses.DCLWLoss(temperature=t, sigma=sigma)
    _assert_parity(
        lambda x: dclw(x, temperature=t, sigma=sigma),
        lambda x: loss(x[:, 0], x[:, 1]),
        _batch(seed, n, 2, d, dtype),
    )


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")
def test_lightly_dclw_gradient_is_sensitive_to_weight_detach(lightly_losses):
    """Control for the gradient comparison: the undetached weight gives another gradient."""
    z = _batch(5, 8, 2, 6, torch.float64)
    loss = lightly_losses.DCLWLoss(temperature=0.1, sigma=0.5)
    value, grad = _value_and_grad(
        lambda x: dclw(x, temperature=0.1, sigma=0.5, detach_weight=False), z
    )
    value_ref, grad_ref = _value_and_grad(lambda x: loss(x[:, 0], x[:, 1]), z)
    torch.testing.assert_close(value, value_ref, **TOLERANCES[torch.float64])
    assert (grad - grad_ref).abs().max().item() > 1e-3
