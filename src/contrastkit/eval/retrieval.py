"""Cross-modal retrieval and zero-shot classification on embeddings.

- :func:`retrieval_ranks` / :func:`cross_modal_recall`: query ``i`` of one modality retrieves
  its own item ``targets[i]`` (default ``i``) among every gallery row of another modality, by
  cosine similarity; Recall@k is the share of queries whose item is within the top ``k``.
- :func:`random_ranking_recall`: the expected Recall@k of a random scorer (chance level) under
  the same pessimistic tie rule, from the gallery's groups of identical rows.
- :func:`zero_shot_predict` / :func:`zero_shot_accuracy`: CLIP-style zero-shot classification,
  the class whose embedding (e.g. the mean text embedding of its descriptions) is the most
  similar to the input's embedding.

Ties are **pessimistic**: every other gallery row that scores at least as high as the true one
(within ``atol``) is ranked above it, so duplicate gallery vectors (e.g. two movies with the
same genres) count against the query, never for it. Scores are computed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cross_modal_recall",
    "random_ranking_recall",
    "retrieval_ranks",
    "zero_shot_accuracy",
    "zero_shot_predict",
]


def _matrix(x: object, *, name: str, fn: str) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor of shape [n, D]")
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(
            f"{fn}: {name} must have shape [n, D] with n, D >= 1; got {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{fn}: {name} contains NaN or Inf values")
    return x


def _check_ks(ks: Sequence[int], fn: str) -> list[int]:
    out = list(ks)
    if not out or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in out):
        raise ValueError(f"{fn}: ks must be a non-empty sequence of ints >= 1; got {ks!r}")
    return out


def retrieval_ranks(
    query: Tensor,
    gallery: Tensor,
    *,
    targets: Tensor | None = None,
    normalize: bool = True,
    atol: float = 1e-6,
    chunk: int = 1024,
) -> Tensor:
    """1-based rank of each query's target in the gallery (pessimistic ties).

        s_ij = <q_i, g_j>       (cosine when ``normalize``; float64)
        rank_i = 1 + #{j != t_i : s_ij >= s_{i t_i} - atol}

    Args:
        query: ``[n, D]`` query embeddings.
        gallery: ``[m, D]`` gallery embeddings (same ``D``).
        targets: ``[n]`` index of each query's item in the gallery (default ``arange(n)``,
            which needs ``m == n``: row ``i`` of both is item ``i``).
        normalize: L2-normalise both first (cosine similarity; default True).
        atol: scores within ``atol`` of the target's count as ties, i.e. against the query
            (default 1e-6: float32 embeddings of identical inputs may differ in the last bits).
        chunk: queries scored at a time.

    Returns ``int64 [n]`` ranks in ``1..m``.
    """
    fn = "retrieval_ranks"
    query = _matrix(query, name="query", fn=fn)
    gallery = _matrix(gallery, name="gallery", fn=fn)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"{fn}: query and gallery must have the same D; got {tuple(query.shape)} and "
            f"{tuple(gallery.shape)}"
        )
    n, m = query.shape[0], gallery.shape[0]
    if targets is None:
        if n != m:
            raise ValueError(
                f"{fn}: without targets, query row i must match gallery row i (n == m); "
                f"got n={n}, m={m}"
            )
        targets = torch.arange(n, device=query.device)
    if not isinstance(targets, Tensor) or targets.shape != (n,) or targets.is_floating_point():
        raise ValueError(f"{fn}: targets must be an integer tensor of shape [{n}]")
    if bool((targets < 0).any()) or bool((targets >= m).any()):
        raise ValueError(f"{fn}: targets must index the gallery (0 <= t < {m})")
    if not atol >= 0:
        raise ValueError(f"{fn}: atol must be >= 0; got {atol}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"{fn}: chunk must be an int >= 1; got {chunk!r}")
    q, g = query.to(torch.float64), gallery.to(torch.float64)
    if normalize:
        q, g = F.normalize(q, dim=-1), F.normalize(g, dim=-1)
    targets = targets.to(device=q.device, dtype=torch.long)
    ranks = []
    for start in range(0, n, chunk):
        scores = q[start : start + chunk] @ g.T  # [c, m]
        t = targets[start : start + chunk]
        own = scores.gather(1, t[:, None])
        at_least = scores >= own - atol
        # the target itself always satisfies it: rank = 1 + the others that do
        ranks.append(at_least.sum(dim=1))
    return torch.cat(ranks).to(torch.long)


def cross_modal_recall(
    query: Tensor,
    gallery: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    *,
    targets: Tensor | None = None,
    normalize: bool = True,
    atol: float = 1e-6,
) -> dict[str, float]:
    """Recall@k of cross-modal retrieval: ``{"R@k": mean_i [rank_i <= k]}`` for each ``k``.

    Query ``i`` (one modality) retrieves its item among all ``m`` gallery rows (another
    modality); with one relevant item per query, Recall@k = HitRate@k. Ranks by
    :func:`retrieval_ranks` (cosine, float64, pessimistic ties: duplicates of the target in the
    gallery count against the query). Chance level: ``k / m`` only when the gallery has no
    duplicate rows; in general :func:`random_ranking_recall`.
    """
    ks = _check_ks(ks, "cross_modal_recall")
    ranks = retrieval_ranks(query, gallery, targets=targets, normalize=normalize, atol=atol)
    return {f"R@{k}": float((ranks <= k).to(torch.float64).mean()) for k in ks}


def random_ranking_recall(
    gallery: Tensor, ks: Sequence[int] = (1, 5, 10), *, targets: Tensor | None = None
) -> dict[str, float]:
    """Chance level of :func:`cross_modal_recall`: the exact expected Recall@k of a scorer that
    ranks the gallery uniformly at random, under the pessimistic tie rule.

    A scorer (a model, or a random one) gives identical gallery rows identical scores, so the
    gallery falls into ``G`` groups of identical rows; a random scorer orders the groups
    uniformly at random and the target's rank is the total size of the groups above its own
    plus its own group's size ``s`` (the duplicates tie against it). With the target's group at
    position ``j + 1`` (probability ``1/G``) the ``j`` groups above are a uniform ``j``-subset
    of the other ``G - 1``, so

        P(rank <= k) = 1/G * sum_j #{j-subsets of the other groups of total size <= k - s}
                             / C(G - 1, j)

    (subsets counted exactly by dynamic programming over the group sizes). Recall@k is the mean
    over the queries' targets (``targets``: ``[n]`` gallery indices, default every row once).
    Without duplicates it is ``min(k, m) / m``.
    """
    fn = "random_ranking_recall"
    ks = _check_ks(ks, fn)
    gallery = _matrix(gallery, name="gallery", fn=fn)
    m = gallery.shape[0]
    _, group = torch.unique(gallery.detach().cpu(), dim=0, return_inverse=True)
    sizes = torch.bincount(group).tolist()
    if targets is None:
        targets = torch.arange(m)
    if not isinstance(targets, Tensor) or targets.dim() != 1 or targets.is_floating_point():
        raise ValueError(f"{fn}: targets must be an integer tensor of shape [n]")
    if targets.dtype == torch.bool or bool((targets < 0).any()) or bool((targets >= m).any()):
        raise ValueError(f"{fn}: targets must index the gallery (0 <= t < {m})")
    top = max(ks)
    num_groups = len(sizes)
    cache: dict[int, list[float]] = {}

    def hit(s: int) -> list[float]:
        # [P(rank <= k) for k in 0..top] for a target in a group of size s
        if s not in cache:
            others = list(sizes)
            others.remove(s)
            # count[j][w]: j-subsets of the other groups with total size w (w <= top)
            count = [[0] * (top + 1) for _ in range(num_groups)]
            count[0][0] = 1
            for size in others:
                if size > top:
                    continue
                for j in range(num_groups - 1, 0, -1):
                    row, prev = count[j], count[j - 1]
                    for w in range(top, size - 1, -1):
                        row[w] += prev[w - size]
            probs = []
            for k in range(top + 1):
                total = 0.0
                for j in range(num_groups):
                    within = sum(count[j][: max(k - s, -1) + 1])
                    if within:
                        total += within / math.comb(num_groups - 1, j)
                probs.append(total / num_groups)
            cache[s] = probs
        return cache[s]

    per_target = [hit(sizes[g]) for g in group[targets.cpu()].tolist()]
    return {f"R@{k}": sum(p[min(k, top)] for p in per_target) / len(per_target) for k in ks}


def zero_shot_predict(
    embeddings: Tensor, class_embeddings: Tensor, *, normalize: bool = True
) -> Tensor:
    """``argmax_c <x_i, e_c>`` (cosine when ``normalize``): ``[n, D], [C, D] -> int64 [n]``.
    Ties go to the lowest class id (``torch.argmax``)."""
    fn = "zero_shot_predict"
    x = _matrix(embeddings, name="embeddings", fn=fn).to(torch.float64)
    e = _matrix(class_embeddings, name="class_embeddings", fn=fn).to(torch.float64)
    if x.shape[1] != e.shape[1]:
        raise ValueError(
            f"{fn}: embeddings and class_embeddings must have the same D; got "
            f"{tuple(x.shape)} and {tuple(e.shape)}"
        )
    if normalize:
        x, e = F.normalize(x, dim=-1), F.normalize(e, dim=-1)
    return (x @ e.T).argmax(dim=1)


def zero_shot_accuracy(
    embeddings: Tensor, class_embeddings: Tensor, labels: Tensor, *, normalize: bool = True
) -> float:
    """Share of rows whose :func:`zero_shot_predict` class is ``labels`` (``[n]`` ints)."""
    predictions = zero_shot_predict(embeddings, class_embeddings, normalize=normalize)
    if not isinstance(labels, Tensor) or labels.shape != predictions.shape:
        raise ValueError(
            f"zero_shot_accuracy: labels must have shape [{predictions.shape[0]}]; got "
            f"{getattr(labels, 'shape', type(labels).__name__)}"
        )
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"zero_shot_accuracy: labels must be an integer tensor; got {labels.dtype}")
    num_classes = class_embeddings.shape[0]
    if bool((labels < 0).any()) or bool((labels >= num_classes).any()):
        raise ValueError(
            f"zero_shot_accuracy: labels must be class ids in [0, {num_classes}); got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return float((predictions == labels.to(predictions.device)).to(torch.float64).mean())
