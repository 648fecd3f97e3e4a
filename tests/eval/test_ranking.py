"""Tests for ``contrastkit.eval.ranking``: a hand-computed example, a brute-force reference,
chunked vs one-shot evaluation, dense vs sparse exclusion, and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.data.sequences import history_mask
from contrastkit.eval.ranking import evaluate_in_chunks, full_ranking_metrics, metric_names

# torch warns once per process that CSR / CSC support is "beta"; it is not what is tested here
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CS. tensor support is in beta:UserWarning")

# --------------------------------------------------------------------------------------------
# The hand-computed example: 4 users x 6 items, ks = (1, 2, 3)
#
# user 0: scores [0.1, 0.9, 0.5, 0.3, 0.7, 0.2], target col 2 (0.5), excluded cols {1, 0}
#         strictly greater and not excluded: col 4 (0.7) -> rank 1   (col 1 = 0.9 is excluded)
# user 1: scores [0.4, 0.4, 0.8, 0.4, 0.9, 0.0], target col 0 (0.4), nothing excluded
#         strictly greater: cols 2, 4 -> rank 2 (the ties at cols 1 and 3 do not count)
#         pessimistic ties: cols 1, 2, 3, 4 -> rank 4
# user 2: scores [0.6, 0.1, 0.2, 0.3, 0.4, 0.9], target col 5, excluded cols {5, 0}
#         the target itself is excluded -> miss (0 for every metric)
# user 3: scores [0.0, 0.0, 0.0, 0.0, 0.0, 1.0], target col 5, nothing excluded -> rank 0
#
# ranks (optimistic) = [1, 2, miss, 0]
#   HR@1   = [0, 0, 0, 1]                         -> 1/4
#   HR@2   = [1, 0, 0, 1]                         -> 2/4
#   HR@3   = [1, 1, 0, 1]                         -> 3/4
#   NDCG@1 = [0, 0, 0, 1]                         -> 1/4
#   NDCG@2 = [1/log2(3), 0, 0, 1]                 -> (1/log2(3) + 1) / 4
#   NDCG@3 = [1/log2(3), 1/log2(4) = 1/2, 0, 1]   -> (1/log2(3) + 1/2 + 1) / 4
#   MRR    = [1/2, 1/3, 0, 1]                     -> (1/2 + 1/3 + 1) / 4
# ranks (pessimistic) = [1, 4, miss, 0]: HR@3 = [1, 0, 0, 1], MRR = [1/2, 1/5, 0, 1]
# --------------------------------------------------------------------------------------------

SCORES = torch.tensor(
    [
        [0.1, 0.9, 0.5, 0.3, 0.7, 0.2],
        [0.4, 0.4, 0.8, 0.4, 0.9, 0.0],
        [0.6, 0.1, 0.2, 0.3, 0.4, 0.9],
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    ]
)
TARGETS = torch.tensor([2, 0, 5, 5])
EXCLUDED = [(0, 1), (0, 0), (2, 5), (2, 0)]
KS = (1, 2, 3)
L3 = 1 / math.log2(3)
EXPECTED = {
    "HR@1": 1 / 4,
    "NDCG@1": 1 / 4,
    "HR@2": 2 / 4,
    "NDCG@2": (L3 + 1) / 4,
    "HR@3": 3 / 4,
    "NDCG@3": (L3 + 0.5 + 1) / 4,
    "MRR": (1 / 2 + 1 / 3 + 1) / 4,
}
EXPECTED_PER_USER = {
    "HR@1": [0, 0, 0, 1],
    "NDCG@1": [0, 0, 0, 1],
    "HR@2": [1, 0, 0, 1],
    "NDCG@2": [L3, 0, 0, 1],
    "HR@3": [1, 1, 0, 1],
    "NDCG@3": [L3, 0.5, 0, 1],
    "MRR": [1 / 2, 1 / 3, 0, 1],
}


def _dense_exclude(pairs=EXCLUDED, shape=(4, 6)) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    for r, c in pairs:
        mask[r, c] = True
    return mask


def _coo_exclude(pairs=EXCLUDED, shape=(4, 6)) -> torch.Tensor:
    idx = torch.tensor(pairs, dtype=torch.long).T
    values = torch.ones(len(pairs), dtype=torch.bool)
    return torch.sparse_coo_tensor(idx, values, shape, check_invariants=True)


def _close(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def test_hand_computed_example() -> None:
    got = full_ranking_metrics(SCORES, TARGETS, _dense_exclude(), ks=KS)
    _close(got, EXPECTED)
    assert all(isinstance(v, float) for v in got.values())


def test_hand_computed_per_user() -> None:
    got = full_ranking_metrics(SCORES, TARGETS, _dense_exclude(), ks=KS, per_user=True)
    for key, values in EXPECTED_PER_USER.items():
        assert got[key].dtype == torch.float64 and got[key].shape == (4,)
        assert got[key].tolist() == pytest.approx(values, rel=1e-12, abs=1e-15), key


def test_hand_computed_pessimistic_ties() -> None:
    got = full_ranking_metrics(
        SCORES, TARGETS, _dense_exclude(), ks=KS, per_user=True, ties="pessimistic"
    )
    assert got["HR@3"].tolist() == [1, 0, 0, 1]
    assert got["MRR"].tolist() == pytest.approx([1 / 2, 1 / 5, 0, 1])


def test_without_exclude_target_and_higher_items_count() -> None:
    # user 0: cols 1 and 4 beat the target -> rank 2; user 2: target 0.9 is the max -> rank 0
    got = full_ranking_metrics(SCORES, TARGETS, ks=KS, per_user=True)
    assert got["MRR"].tolist() == pytest.approx([1 / 3, 1 / 3, 1, 1])


@pytest.mark.parametrize("layout", ["coo", "coo_uncoalesced", "csr", "history_mask"])
def test_sparse_exclude_equals_dense(layout: str) -> None:
    dense = _dense_exclude()
    if layout == "coo":
        exclude = _coo_exclude().coalesce()
    elif layout == "coo_uncoalesced":  # repeats and an explicit False entry, which excludes nothing
        pairs = [*EXCLUDED, (0, 1), (2, 5), (1, 2)]
        idx = torch.tensor(pairs).T
        vals = torch.tensor([True] * 6 + [False])
        exclude = torch.sparse_coo_tensor(idx, vals, (4, 6), check_invariants=True)
    elif layout == "csr":
        exclude = dense.to_sparse_csr()
    else:  # the column 0 of history_mask is the padding column, here cols 0 are excluded too
        exclude = history_mask([[1], [], [5], []], 5)
        exclude_dense = exclude.to_dense()
        exclude_dense[1, 0] = exclude_dense[3, 0] = False
        assert torch.equal(exclude_dense, dense)
        dense = exclude.to_dense()
    one = full_ranking_metrics(SCORES, TARGETS, dense, ks=KS, per_user=True)
    two = full_ranking_metrics(SCORES, TARGETS, exclude, ks=KS, per_user=True)
    for key in one:
        assert torch.equal(one[key], two[key]), key
    if layout != "history_mask":
        _close(full_ranking_metrics(SCORES, TARGETS, exclude, ks=KS), EXPECTED)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_score_dtypes(dtype: torch.dtype) -> None:
    got = full_ranking_metrics(SCORES.to(dtype), TARGETS, _dense_exclude(), ks=KS)
    _close(got, EXPECTED)


def test_infinite_scores_and_large_k() -> None:
    scores = torch.tensor([[-math.inf, 0.0, 1.0], [math.inf, 0.0, math.inf]])
    got = full_ranking_metrics(scores, torch.tensor([0, 0]), ks=(1, 10), per_user=True)
    # user 0: both others beat -inf -> rank 2; user 1: the tie at +inf is optimistic -> rank 0
    assert got["MRR"].tolist() == [1 / 3, 1.0]
    assert got["HR@10"].tolist() == [1.0, 1.0]  # k larger than the number of items
    assert got["HR@1"].tolist() == [0.0, 1.0]


def test_gradients_are_not_tracked() -> None:
    scores = SCORES.clone().requires_grad_(True)
    got = full_ranking_metrics(scores, TARGETS, ks=KS, per_user=True)
    assert not got["MRR"].requires_grad


def test_metric_names_and_default_ks() -> None:
    names = ["HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR"]
    assert metric_names() == names
    got = full_ranking_metrics(SCORES, TARGETS, _dense_exclude())
    assert list(got) == names
    # 6 items: every non-missed user is within the top 5
    assert got["HR@5"] == got["HR@20"] == 0.75
    assert metric_names((10, 5, 10)) == ["HR@10", "NDCG@10", "HR@5", "NDCG@5", "MRR"]


# --------------------------------------------------------------------------------------------
# Against a brute-force loop, chunked vs one-shot
# --------------------------------------------------------------------------------------------


def _reference(scores, targets, exclude, ks):
    out = {name: [] for name in metric_names(ks)}
    for u in range(scores.shape[0]):
        t = int(targets[u])
        if exclude[u, t]:
            rank = None
        else:
            rank = sum(
                1
                for i in range(scores.shape[1])
                if not exclude[u, i] and float(scores[u, i]) > float(scores[u, t])
            )
        for k in ks:
            hit = rank is not None and rank < k
            out[f"HR@{k}"].append(1.0 if hit else 0.0)
            out[f"NDCG@{k}"].append(1 / math.log2(rank + 2) if hit else 0.0)
        out["MRR"].append(0.0 if rank is None else 1 / (rank + 1))
    return out


def _random_case(users=37, items=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 8, (users, items), generator=g).float()  # many ties
    targets = torch.randint(0, items, (users,), generator=g)
    exclude = torch.rand(users, items, generator=g) < 0.2
    return scores, targets, exclude


def test_matches_brute_force_reference() -> None:
    scores, targets, exclude = _random_case()
    ks = (1, 3, 10)
    want = _reference(scores, targets, exclude, ks)
    assert 0 < sum(want["HR@3"]) < len(want["HR@3"])  # the case is not degenerate
    assert any(exclude[u, targets[u]] for u in range(len(targets)))
    got = full_ranking_metrics(scores, targets, exclude, ks=ks, per_user=True)
    for key in want:
        assert got[key].tolist() == pytest.approx(want[key], rel=1e-12, abs=1e-15), key


@pytest.mark.parametrize("chunk_size", [1, 5, 37, 100])
@pytest.mark.parametrize("kind", ["none", "dense", "coo", "csr"])
def test_chunked_equals_unchunked(chunk_size: int, kind: str) -> None:
    scores, targets, dense = _random_case()
    exclude = {
        "none": None,
        "dense": dense,
        "coo": dense.to_sparse(),
        "csr": dense.to_sparse_csr(),
    }[kind]
    ks = (1, 5, 10)
    whole = full_ranking_metrics(scores, targets, exclude, ks=ks, per_user=True)
    calls = []

    def score_fn(start: int, stop: int) -> torch.Tensor:
        calls.append((start, stop))
        return scores[start:stop]

    chunked = evaluate_in_chunks(
        score_fn, targets, exclude, ks=ks, chunk_size=chunk_size, per_user=True
    )
    assert calls[0][0] == 0 and calls[-1][1] == 37 and len(calls) == math.ceil(37 / chunk_size)
    for key in whole:
        assert torch.equal(whole[key], chunked[key]), key
    means = evaluate_in_chunks(
        lambda a, b: scores[a:b], targets, exclude, ks=ks, chunk_size=chunk_size
    )
    assert means == full_ranking_metrics(scores, targets, exclude, ks=ks)
    # averaging per-user chunks by hand gives the same means
    parts = [
        full_ranking_metrics(
            scores[a : a + 10],
            targets[a : a + 10],
            None if exclude is None else dense[a : a + 10],
            ks=ks,
            per_user=True,
        )
        for a in range(0, 37, 10)
    ]
    for key, value in means.items():
        assert torch.cat([p[key] for p in parts]).mean().item() == pytest.approx(value, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scores": SCORES.tolist()}, TypeError, r"scores must be a torch\.Tensor"),
        ({"scores": SCORES[0]}, ValueError, r"scores must be 2-D"),
        ({"scores": SCORES.long()}, TypeError, "scores must be floating point"),
        ({"scores": SCORES.to_sparse()}, TypeError, "scores must be a dense tensor"),
        ({"scores": torch.zeros(0, 6)}, ValueError, "no user row"),
        ({"targets": TARGETS.float()}, TypeError, "targets must be an integer tensor"),
        ({"targets": TARGETS.bool()}, TypeError, "targets must be an integer tensor"),
        ({"targets": TARGETS[:3]}, ValueError, r"targets must have shape \[users\] = \[4\]"),
        ({"targets": torch.tensor([2, 0, 6, 5])}, ValueError, r"in \[0, 6\); found 0..6"),
        ({"targets": torch.tensor([2, -1, 5, 5])}, ValueError, r"found -1..5"),
        ({"exclude": torch.zeros(4, 5, dtype=torch.bool)}, ValueError, "exclude must have shape"),
        ({"exclude": torch.zeros(4, 6)}, TypeError, "a dense exclude must be bool"),
        ({"exclude": [[False] * 6] * 4}, TypeError, "exclude must be None, a bool tensor"),
        ({"exclude": "csc"}, TypeError, "sparse_coo or sparse_csr"),
        ({"ks": ()}, TypeError, "ks must be a non-empty sequence"),
        ({"ks": 5}, TypeError, "ks must be a non-empty sequence"),
        ({"ks": (5, 0)}, ValueError, "every k in ks must be >= 1"),
        ({"ks": (5, True)}, TypeError, "ks must hold ints"),
        ({"ks": (5, 2.0)}, TypeError, "ks must hold ints"),
        ({"ties": "average"}, ValueError, "ties must be 'optimistic' or 'pessimistic'"),
    ],
)
def test_bad_inputs(kwargs: dict, error: type[Exception], match: str) -> None:
    args = {"scores": SCORES, "targets": TARGETS, **kwargs}
    if isinstance(args.get("exclude"), str):  # built here, not at collection time
        args["exclude"] = torch.eye(4, 6).to_sparse_csc()
    with pytest.raises(error, match=match):
        full_ranking_metrics(**args)


def test_nan_scores_raise_even_with_infinities() -> None:
    scores = SCORES.clone()
    scores[2, 3] = math.nan
    with pytest.raises(ValueError, match=r"NaN \(1 user rows, first row 2\)"):
        full_ranking_metrics(scores, TARGETS)
    # +inf and -inf together make the cheap sum test NaN; the exact test must not complain
    scores = SCORES.clone()
    scores[0, 0], scores[1, 1] = math.inf, -math.inf
    assert full_ranking_metrics(scores, TARGETS, ks=KS)["MRR"] > 0


def test_evaluate_in_chunks_bad_inputs() -> None:
    fn = lambda a, b: SCORES[a:b]  # noqa: E731
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        evaluate_in_chunks(fn, TARGETS, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size must be an int"):
        evaluate_in_chunks(fn, TARGETS, chunk_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="score_fn must be callable"):
        evaluate_in_chunks(SCORES, TARGETS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"targets must be a torch\.Tensor"):
        evaluate_in_chunks(fn, [2, 0, 5, 5])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="targets is empty"):
        evaluate_in_chunks(fn, torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"score_fn\(0, 2\) returned 1 rows; expected 2"):
        evaluate_in_chunks(lambda a, b: SCORES[a : a + 1], TARGETS, chunk_size=2)
    with pytest.raises(ValueError, match="returned 5 item columns; the first chunk had 6"):
        evaluate_in_chunks(lambda a, b: SCORES[a:b, : 6 - a // 2], TARGETS, chunk_size=2)
    with pytest.raises(ValueError, match=r"score_fn\(2, 4\).*NaN"):
        evaluate_in_chunks(
            lambda a, b: SCORES[a:b] * (math.nan if a else 1.0), TARGETS, chunk_size=2
        )
    with pytest.raises(ValueError, match="exclude must have shape"):
        evaluate_in_chunks(fn, TARGETS, torch.zeros(4, 7, dtype=torch.bool))
    empty = evaluate_in_chunks(fn, torch.zeros(0, dtype=torch.long), per_user=True)
    assert all(v.shape == (0,) for v in empty.values())
