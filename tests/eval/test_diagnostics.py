"""Diagnostics: hand-computed effective ranks and tolerances, metric wrappers, score samples,
score-history plots."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrastkit.eval import (
    ScoreHistory,
    alignment_metric,
    effective_rank,
    plot_metric_curves,
    plot_overlaid_curves,
    score_samples,
    tolerance,
    uniformity_metric,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert len(data) > len(PNG_SIGNATURE)
    assert data[:8] == PNG_SIGNATURE


# --------------------------------------------------------------------------- effective rank


def test_effective_rank_of_orthonormal_rows_is_the_dimension() -> None:
    d = 6
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0)))
    # all singular values 1: p_k = 1/6 + eps, erank = exp(log 6) up to eps
    assert effective_rank(q) == pytest.approx(d, rel=1e-5)
    assert effective_rank(torch.eye(d) * 7.0, eps=0.0) == pytest.approx(d, rel=1e-12)


def test_effective_rank_of_rank_one_matrix_is_one() -> None:
    z = torch.outer(torch.arange(1.0, 7.0), torch.tensor([1.0, -2.0, 0.5, 3.0]))  # [6, 4]
    # p = (1 + eps, eps, eps, eps): entropy = -(1+eps) log(1+eps) - 3 eps log eps ≈ 4.7e-6
    eps = 1e-7
    expected = math.exp(-(1 + eps) * math.log(1 + eps) - 3 * eps * math.log(eps))
    assert effective_rank(z) == pytest.approx(expected, rel=1e-6)
    assert effective_rank(z, eps=0.0) == pytest.approx(1.0, abs=1e-6)


def test_effective_rank_of_two_singular_values_by_hand() -> None:
    z = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # singular values 3 and 1
    # p = (3/4, 1/4): erank = exp(-(3/4 log 3/4 + 1/4 log 1/4)) = (4/3)^(3/4) * 4^(1/4) ≈ 1.75477
    expected = (4 / 3) ** 0.75 * 4**0.25
    assert expected == pytest.approx(1.754765, abs=1e-6)
    assert effective_rank(z, eps=0.0) == pytest.approx(expected, rel=1e-12)
    assert effective_rank(z) == pytest.approx(expected, rel=1e-6)
    # rotating the rows or columns does not change singular values
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))
    assert effective_rank(z @ q, eps=0.0) == pytest.approx(expected, rel=1e-6)


def test_effective_rank_centering() -> None:
    constant = torch.ones(5, 3)  # uncentred rank 1; centred it is the zero matrix
    assert effective_rank(constant) == pytest.approx(1.0, abs=1e-4)
    assert effective_rank(constant, center=True) == 0.0
    z = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    shifted = torch.cat([z, -z]) + torch.tensor([10.0, -4.0, 2.0])  # mean 0 before the shift
    expected = (4 / 3) ** 0.75 * 4**0.25
    assert effective_rank(shifted, center=True, eps=0.0) == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------- tolerance


def test_tolerance_hand_example() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 0.0], [3.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # class 0: cos((1,0), (0,2)) = 0; class 1: cos((5,0), (3,3)) = 1/sqrt(2); mean of 2 pairs
    assert tolerance(z, labels) == pytest.approx((0 + 1 / math.sqrt(2)) / 2, rel=1e-12)
    # pairs across classes are ignored; a singleton class adds no pair
    z3 = torch.cat([z, torch.tensor([[-1.0, 0.0]])])
    assert tolerance(z3, torch.tensor([0, 0, 1, 1, 7])) == pytest.approx(1 / (2 * math.sqrt(2)))


def test_tolerance_matches_pair_loop_and_is_one_for_identical_classes() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(23, 5, generator=g)
    labels = torch.randint(-2, 3, (23,), generator=g)  # any integer ids
    zn = F.normalize(z.double(), dim=1)
    values = [
        float(zn[i] @ zn[j])
        for i, j in itertools.permutations(range(23), 2)
        if labels[i] == labels[j]
    ]
    assert tolerance(z, labels) == pytest.approx(sum(values) / len(values), rel=1e-10)
    same = torch.tensor([[1.0, 2.0]] * 3 + [[0.0, -1.0]] * 2)
    assert tolerance(same, torch.tensor([4, 4, 4, 9, 9])) == pytest.approx(1.0)


def test_tolerance_bad_inputs() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="no pair i != j shares a label"):
        tolerance(z, torch.arange(4))
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[4\]"):
        tolerance(z, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        tolerance(z, torch.zeros(4))
    with pytest.raises(ValueError, match=r"tolerance: z must have shape \[N, D\]"):
        tolerance(z[None], torch.zeros(4, dtype=torch.long))


# --------------------------------------------------------------------------- alignment, uniformity


def test_alignment_metric_is_the_mean_squared_view_distance() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10, 3, 4, generator=g)
    zn = F.normalize(z, dim=-1)
    distances = [(zn[:, a] - zn[:, b]).pow(2).sum(-1) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert alignment_metric(z) == pytest.approx(float(torch.stack(distances).mean()), rel=1e-5)
    assert alignment_metric(z.requires_grad_()) == pytest.approx(alignment_metric(z.detach()))
    identical = torch.randn(5, 1, 3, generator=g).expand(5, 2, 3)
    assert alignment_metric(identical) == pytest.approx(0.0, abs=1e-7)


def _uniformity_reference(z: torch.Tensor, t: float = 2.0) -> float:
    zn = F.normalize(z.double(), dim=-1)
    d2 = torch.cdist(zn, zn).pow(2)
    off = ~torch.eye(len(z), dtype=torch.bool)
    return float(torch.exp(-t * d2[off]).mean().log())


def test_uniformity_metric_on_rows_and_views() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 6, generator=g)
    assert uniformity_metric(z) == pytest.approx(_uniformity_reference(z), rel=1e-5)
    assert uniformity_metric(z, t=0.5) == pytest.approx(_uniformity_reference(z, 0.5), rel=1e-5)
    zv = torch.randn(40, 2, 6, generator=g)
    per_view = [_uniformity_reference(zv[:, v]) for v in range(2)]
    assert uniformity_metric(zv) == pytest.approx(sum(per_view) / 2, rel=1e-5)
    # collapsed embeddings: every distance 0, uniformity log 1 = 0
    assert uniformity_metric(torch.ones(8, 3)) == pytest.approx(0.0, abs=1e-6)


def test_uniformity_metric_subsampling() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 8, generator=g)
    full = uniformity_metric(z)
    assert uniformity_metric(z, max_samples=2000) == full  # no subsampling needed
    sub = uniformity_metric(z, max_samples=400, seed=3)
    assert sub == uniformity_metric(z, max_samples=400, seed=3)  # deterministic
    assert sub != uniformity_metric(z, max_samples=400, seed=4)
    assert sub == pytest.approx(full, abs=0.05)
    with pytest.raises(ValueError, match="max_samples must be an int >= 2"):
        uniformity_metric(z, max_samples=1)
    with pytest.raises(ValueError, match="at least 2 instances"):
        uniformity_metric(z[:1])


# --------------------------------------------------------------------------- score samples


def test_score_samples_positives_are_the_view_pair_cosines() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 3, 5, generator=g)
    scores = score_samples(z)
    direct = torch.cat(
        [F.cosine_similarity(z[:, a], z[:, b], dim=-1) for a, b in ((0, 1), (0, 2), (1, 2))]
    )
    assert scores["positive"].shape == (7 * 3,)
    assert torch.allclose(scores["positive"], direct, atol=1e-6)


def test_score_samples_exhaustive_negatives_are_all_cross_instance_pairs() -> None:
    g = torch.Generator().manual_seed(1)
    n, v = 6, 2
    z = torch.randn(n, v, 4, generator=g)
    zn = F.normalize(z.double(), dim=-1)
    expected = sorted(
        float(zn[i, a] @ zn[j, b])
        for i, j in itertools.combinations(range(n), 2)
        for a in range(v)
        for b in range(v)
    )
    negative = score_samples(z, max_negatives=10_000)["negative"]
    assert negative.shape == (n * (n - 1) // 2 * v * v,)
    assert sorted(negative.tolist()) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("max_negatives", [10_000, 50])
def test_score_samples_negatives_never_pair_an_instance_with_itself(max_negatives) -> None:
    # instance i sits on the basis vector e_i in all its views (+ a per-view scale), so a
    # same-instance pair has cosine 1 and a cross-instance pair cosine 0.
    n, v = 12, 3
    z = torch.eye(n)[:, None, :] * torch.arange(1.0, v + 1)[None, :, None]
    scores = score_samples(z, max_negatives=max_negatives, seed=5)
    assert torch.equal(scores["positive"], torch.ones(n * 3))
    assert scores["negative"].numel() == min(max_negatives, n * (n - 1) // 2 * v * v)
    assert torch.equal(scores["negative"], torch.zeros_like(scores["negative"]))


def test_score_samples_sampling_is_seeded() -> None:
    z = torch.randn(50, 2, 8, generator=torch.Generator().manual_seed(2))
    first = score_samples(z, max_negatives=100, seed=0)["negative"]
    assert torch.equal(first, score_samples(z, max_negatives=100, seed=0)["negative"])
    assert not torch.equal(first, score_samples(z, max_negatives=100, seed=1)["negative"])
    assert first.shape == (100,)


@pytest.mark.parametrize(
    ("z", "kwargs", "message"),
    [
        (torch.randn(4, 8), {}, r"z must have shape \[N, V, D\]"),
        (torch.randn(4, 1, 8), {}, "V >= 2 views"),
        (torch.randn(1, 2, 8), {}, "N >= 2 instances"),
        (torch.ones(4, 2, 8, dtype=torch.long), {}, "floating-point"),
        (torch.randn(4, 2, 8), {"max_negatives": 0}, "max_negatives must be an int >= 1"),
    ],
)
def test_score_samples_bad_inputs(z, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        score_samples(z, **kwargs)


# --------------------------------------------------------------------------- plots


def test_score_history_records_summarises_and_plots(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    history = ScoreHistory(max_negatives=200, seed=0, bins=20)
    base = torch.randn(30, 1, 8, generator=g)
    for epoch, noise in enumerate([2.0, 1.0, 0.3]):
        history.record(epoch, base + noise * torch.randn(30, 2, 8, generator=g))
    assert len(history) == 3
    summary = history.to_dict()
    json.dumps(summary)  # JSON-ready
    records = summary["records"]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[0]["num_positive"] == 30 and records[0]["num_negative"] == 200
    assert records[0]["positive_mean"] < records[2]["positive_mean"]  # views get aligned
    assert records[2]["positive_mean"] == pytest.approx(float(history.positive[2].mean()))
    assert records[1]["negative_std"] == pytest.approx(float(history.negative[1].std(correction=0)))
    path = tmp_path / "plots" / "scores.png"
    history.plot(path, title="scores")
    _assert_png(path)


def test_score_history_many_epochs_and_errors(tmp_path) -> None:
    history = ScoreHistory(max_negatives=50)
    with pytest.raises(ValueError, match="nothing recorded"):
        history.plot(tmp_path / "empty.png")
    g = torch.Generator().manual_seed(1)
    for epoch in range(0, 20, 2):  # > 8 epochs: a colour bar instead of a legend
        history.record(epoch, torch.randn(10, 2, 4, generator=g))
    with pytest.raises(ValueError, match="epoch 4 is already recorded"):
        history.record(4, torch.randn(10, 2, 4, generator=g))
    history.plot(tmp_path / "many.png")
    _assert_png(tmp_path / "many.png")


def test_plot_metric_curves(tmp_path) -> None:
    records = [
        {"epoch": 0, "loss": 3.0},
        {"epoch": 0, "knn_acc": 0.2, "loss": None},
        {"epoch": 1, "loss": 2.5},
        {"epoch": 1, "knn_acc": 0.35},
        {"step": 7, "loss": 2.4},  # no epoch: skipped
        {"epoch": 2, "loss": float("nan"), "knn_acc": 0.5},
    ]
    path = tmp_path / "curves.png"
    plot_metric_curves(records, ["loss", "knn_acc"], path)
    _assert_png(path)
    plot_metric_curves(records, "loss", tmp_path / "one.png")
    _assert_png(tmp_path / "one.png")
    with pytest.raises(ValueError, match="'missing'"):
        plot_metric_curves(records, ["loss", "missing"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="records is empty"):
        plot_metric_curves([], ["loss"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="keys must name at least one metric"):
        plot_metric_curves(records, [], tmp_path / "bad.png")


def test_plot_overlaid_curves(tmp_path) -> None:
    series = {
        "lightgcn": ([10, 20, 30], [0.1, 0.2, 0.25]),
        "sgl": ([10, 20, 30], [0.05, float("nan"), 0.3]),  # the NaN point is dropped
    }
    path = tmp_path / "overlay.png"
    plot_overlaid_curves(series, path, xlabel="epoch", ylabel="Recall@20", title="t")
    _assert_png(path)
    numpy_series = {"np": (np.arange(3), np.array([0.1, 0.2, 0.3], dtype=np.float32))}
    plot_overlaid_curves(numpy_series, tmp_path / "np.png", xlabel="x", ylabel="y")
    _assert_png(tmp_path / "np.png")
    with pytest.raises(ValueError, match="'b' has no finite"):
        plot_overlaid_curves({"b": ([1, 2], [True, False])}, path, xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="series is empty"):
        plot_overlaid_curves({}, path, xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="'a' has 2 x values and 1 y values"):
        plot_overlaid_curves({"a": ([1, 2], [3])}, path, xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="'b' has no finite"):
        plot_overlaid_curves({"b": ([1], [float("inf")])}, path, xlabel="x", ylabel="y")


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("fn", "z", "message"),
    [
        (effective_rank, torch.randn(2, 3, 4), r"effective_rank: z must have shape \[n, D\]"),
        (effective_rank, torch.ones(3, 4, dtype=torch.int32), "floating-point"),
        (effective_rank, torch.full((3, 4), float("inf")), "NaN or Inf"),
        (alignment_metric, torch.randn(3, 4), r"alignment_metric: z must have shape \[N, V, D\]"),
        (uniformity_metric, torch.randn(3), r"z must have shape \[N, D\] or \[N, V, D\]"),
    ],
)
def test_metric_bad_inputs(fn, z, message) -> None:
    with pytest.raises(ValueError, match=message):
        fn(z)
