"""Diagnostics of learned embeddings: effective rank, alignment, uniformity, tolerance, and the
positive/negative cosine-score histograms over training.

All functions take detached copies and return Python floats (or CPU-side summaries), so they
can be called from a training loop without touching the autograd graph. Plotting imports
matplotlib lazily and draws on an Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.core import compute_dtype
from contrastkit.losses import alignment, uniformity

__all__ = [
    "ScoreHistory",
    "alignment_metric",
    "effective_rank",
    "plot_metric_curves",
    "plot_overlaid_curves",
    "score_samples",
    "tolerance",
    "uniformity_metric",
]


def _check_embeddings(z: object, *, dims: tuple[int, ...], shape: str, fn: str) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"{fn}: z must be a torch.Tensor of shape {shape}; got {type(z).__name__}")
    if z.dim() not in dims:
        raise ValueError(f"{fn}: z must have shape {shape}; got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"{fn}: z must be a floating-point tensor; got dtype {z.dtype}")
    if z.numel() == 0:
        raise ValueError(f"{fn}: z must not be empty; got shape {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{fn}: z contains NaN or Inf values")
    z = z.detach()
    return z.to(compute_dtype(z.dtype))


def _check_int(value: object, *, name: str, fn: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{fn}: {name} must be an int >= {minimum}; got {value!r}")
    return value


# --------------------------------------------------------------------------- scalar metrics


def effective_rank(z: Tensor, *, eps: float = 1e-7, center: bool = False) -> float:
    """Effective rank (RankMe; Roy & Vetterli 2007, Garrido et al. 2023) of ``z [n, D]``::

        s = singular values of z          (of z - mean_rows(z) if center=True)
        p = s / ||s||_1 + eps
        erank = exp(-Σ_k p_k log p_k)

    As in the official ``pakoromilas/DHEL-KCL`` ``metrics.py``: ``eps = 1e-7`` is added to
    every ``p_k`` and the matrix is not centred by default. Between ~1 (rank one) and
    ``min(n, D)`` (all singular values equal). Computed in float64. A zero matrix (no nonzero
    singular value, e.g. fully collapsed embeddings with ``center=True``) returns ``0.0``.
    """
    fn = "effective_rank"
    z = _check_embeddings(z, dims=(2,), shape="[n, D]", fn=fn)
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"{fn}: eps must be a finite number >= 0; got {eps!r}")
    z = z.double()
    if center:
        z = z - z.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(z)
    total = s.sum()
    if float(total) == 0.0:
        return 0.0
    p = s / total + eps
    return float(torch.exp(-torch.special.xlogy(p, p).sum()))  # 0 log 0 = 0 when eps = 0


def alignment_metric(z: Tensor, *, alpha: float = 2.0) -> float:
    """Alignment (Wang & Isola 2020) of ``z [N, V, D]``, V >= 2: the mean over instances and
    view pairs ``a < b`` of ``||ẑ[i,a] - ẑ[i,b]||^alpha`` on L2-normalised rows (lower = better
    aligned; in ``[0, 4]`` for ``alpha = 2``). Thin wrapper of
    :func:`contrastkit.losses.alignment`."""
    z = _check_embeddings(z, dims=(3,), shape="[N, V, D]", fn="alignment_metric")
    with torch.no_grad():
        return float(alignment(z, alpha=alpha))


def uniformity_metric(
    z: Tensor, *, t: float = 2.0, max_samples: int | None = None, seed: int = 0
) -> float:
    """Uniformity (Wang & Isola 2020) of ``z [N, D]`` or ``z [N, V, D]``::

        U_v = log mean_{i != j} exp(-t ||ẑ[i,v] - ẑ[j,v]||²)     (L2-normalised rows)

    averaged over views (lower = more uniform; ``-4`` is the minimum approached by a uniform
    distribution on a high-dimensional sphere for ``t = 2``). Thin wrapper of
    :func:`contrastkit.losses.uniformity`, which forms ``[N, N]`` logit blocks, so cost and
    memory grow as ``N²``. With ``max_samples`` set and ``N > max_samples``, a random subset of
    ``max_samples`` instances (the same rows in every view; drawn with a CPU generator seeded by
    ``seed``) is used: an unbiased-per-pair estimate whose spread shrinks like
    ``1 / max_samples``. Needs at least 2 instances.
    """
    fn = "uniformity_metric"
    z = _check_embeddings(z, dims=(2, 3), shape="[N, D] or [N, V, D]", fn=fn)
    if z.dim() == 2:
        z = z.unsqueeze(1)
    if z.shape[0] < 2:
        raise ValueError(f"{fn}: z must hold at least 2 instances; got shape {tuple(z.shape)}")
    if max_samples is not None:
        max_samples = _check_int(max_samples, name="max_samples", fn=fn, minimum=2)
        if z.shape[0] > max_samples:
            generator = torch.Generator().manual_seed(seed)
            rows = torch.randperm(z.shape[0], generator=generator)[:max_samples]
            z = z[rows.to(z.device)]
    with torch.no_grad():
        return float(uniformity(z, t=t))


def tolerance(z: Tensor, labels: Tensor) -> float:
    """Tolerance (Wang & Liu, CVPR 2021) of ``z [N, D]`` with class ``labels [N]``: the mean
    cosine similarity over all pairs ``i != j`` with ``labels[i] == labels[j]`` (higher = samples
    of a class kept closer). Each unordered pair counts once (ordered and unordered means are
    equal). Computed in float64 from per-class sums, ``O(N D)`` memory:
    ``Σ_{i != j in c} <ẑ_i, ẑ_j> = ||Σ_{i in c} ẑ_i||² - Σ_{i in c} ||ẑ_i||²``.
    Raises ``ValueError`` if no class has two samples.
    """
    fn = "tolerance"
    z = _check_embeddings(z, dims=(2,), shape="[N, D]", fn=fn)
    if not isinstance(labels, Tensor):
        raise TypeError(
            f"{fn}: labels must be an integer torch.Tensor of shape [N]; "
            f"got {type(labels).__name__}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{fn}: labels must be an integer tensor; got dtype {labels.dtype}")
    if labels.shape != (z.shape[0],):
        raise ValueError(
            f"{fn}: labels must have shape [N] = [{z.shape[0]}] (one per row of z); "
            f"got shape {tuple(labels.shape)}"
        )
    z = F.normalize(z.double(), dim=1)
    _, classes = torch.unique(labels.to(z.device), return_inverse=True)
    num_classes = int(classes.max()) + 1
    sums = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device)
    sums.index_add_(0, classes, z)
    self_terms = torch.zeros(num_classes, dtype=z.dtype, device=z.device)
    self_terms.index_add_(0, classes, z.pow(2).sum(dim=1))
    counts = torch.bincount(classes, minlength=num_classes).double()
    pairs = float((counts * (counts - 1)).sum())
    if pairs == 0:
        raise ValueError(
            f"{fn}: no pair i != j shares a label (every class in labels has one sample); "
            "tolerance is undefined"
        )
    return float((sums.pow(2).sum(dim=1) - self_terms).sum()) / pairs


# --------------------------------------------------------------------------- score histograms


def score_samples(z: Tensor, *, max_negatives: int = 10000, seed: int = 0) -> dict[str, Tensor]:
    """Cosine scores of positive and negative pairs of a multi-view batch ``z [N, V, D]``.

    Returns ``{"positive": [N * V(V-1)/2], "negative": [M]}`` (float, on ``z``'s device):

    - ``positive``: ``cos(z[i,a], z[i,b])`` for every instance and view pair ``a < b``, all of
      them, ordered pair-major (pairs ``(0,1), (0,2), ..., (1,2), ...``; ``N`` instances each).
    - ``negative``: ``cos(z[i,a], z[j,b])`` with ``i != j`` (any views, same or different). If
      the number of distinct negative pairs ``N(N-1)/2 * V²`` is at most ``max_negatives``,
      all of them (``M`` = that number); otherwise ``M = max_negatives`` pairs drawn uniformly
      with replacement (``i`` uniform, ``j`` uniform among the other instances, ``a``, ``b``
      uniform) from a CPU generator seeded by ``seed`` — the same indices for the same
      ``(N, V, max_negatives, seed)``, so successive epochs score the same pairs.

    Needs ``N >= 2`` and ``V >= 2``.
    """
    fn = "score_samples"
    z = _check_embeddings(z, dims=(3,), shape="[N, V, D]", fn=fn)
    n, v, _ = z.shape
    if n < 2:
        raise ValueError(f"{fn}: z must hold N >= 2 instances (for negatives); got N={n}")
    if v < 2:
        raise ValueError(f"{fn}: z must hold V >= 2 views (for positives); got V={v}")
    max_negatives = _check_int(max_negatives, name="max_negatives", fn=fn, minimum=1)
    z = F.normalize(z, dim=-1)
    with torch.no_grad():
        a, b = torch.triu_indices(v, v, offset=1, device=z.device)
        positive = (z[:, a] * z[:, b]).sum(dim=-1).T.reshape(-1)  # pair-major
        if n * (n - 1) // 2 * v * v <= max_negatives:
            i, j = torch.triu_indices(n, n, offset=1)
            i = i.repeat_interleave(v * v)
            j = j.repeat_interleave(v * v)
            va = torch.arange(v).repeat_interleave(v).repeat(len(i) // (v * v))
            vb = torch.arange(v).repeat(v).repeat(len(i) // (v * v))
        else:
            generator = torch.Generator().manual_seed(seed)
            i = torch.randint(0, n, (max_negatives,), generator=generator)
            j = (i + torch.randint(1, n, (max_negatives,), generator=generator)) % n
            va = torch.randint(0, v, (max_negatives,), generator=generator)
            vb = torch.randint(0, v, (max_negatives,), generator=generator)
        i, j, va, vb = (t.to(z.device) for t in (i, j, va, vb))
        negative = (z[i, va] * z[j, vb]).sum(dim=-1)
    return {"positive": positive, "negative": negative}


class ScoreHistory:
    """Positive/negative cosine-score distributions over training (as in Zhu et al., ICCV 2021,
    "Improving Contrastive Learning by Visualizing Feature Transformation").

    ``record(epoch, z)`` stores :func:`score_samples` of ``z [N, V, D]`` (on the CPU, float32);
    ``plot(path)`` draws them as step histograms coloured by epoch (left: positives, right:
    negatives); ``to_dict()`` gives JSON-ready per-epoch summaries.

    Args:
        max_negatives, seed: passed to :func:`score_samples` (the same seed every epoch, so the
            same negative pairs are scored when the eval batch is fixed).
        bins: histogram bins over ``[-1, 1]``.
    """

    def __init__(self, *, max_negatives: int = 10000, seed: int = 0, bins: int = 50) -> None:
        self.max_negatives = _check_int(
            max_negatives, name="max_negatives", fn="ScoreHistory", minimum=1
        )
        self.bins = _check_int(bins, name="bins", fn="ScoreHistory", minimum=1)
        self.seed = seed
        self.epochs: list[int] = []
        self.positive: list[Tensor] = []
        self.negative: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.epochs)

    def record(self, epoch: int, z: Tensor) -> None:
        """Score ``z [N, V, D]`` and store the samples under ``epoch`` (each epoch once)."""
        epoch = _check_int(epoch, name="epoch", fn="ScoreHistory.record", minimum=0)
        if epoch in self.epochs:
            raise ValueError(f"ScoreHistory.record: epoch {epoch} is already recorded")
        scores = score_samples(z, max_negatives=self.max_negatives, seed=self.seed)
        self.epochs.append(epoch)
        self.positive.append(scores["positive"].float().cpu())
        self.negative.append(scores["negative"].float().cpu())

    def truncate(self, last_epoch: int) -> None:
        """Forget the epochs after ``last_epoch`` (used when a run resumes from a checkpoint)."""
        keep = [i for i, epoch in enumerate(self.epochs) if epoch <= last_epoch]
        self.epochs = [self.epochs[i] for i in keep]
        self.positive = [self.positive[i] for i in keep]
        self.negative = [self.negative[i] for i in keep]

    def save(self, path: str | Path) -> None:
        """Write the score samples to a safetensors file (atomically)."""
        from safetensors.torch import save_file

        tensors = {}
        for epoch, pos, neg in zip(self.epochs, self.positive, self.negative, strict=True):
            tensors[f"positive.{epoch}"] = pos.contiguous()
            tensors[f"negative.{epoch}"] = neg.contiguous()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp))
        tmp.replace(path)

    def load(self, path: str | Path) -> None:
        """Replace the history with the samples saved by :meth:`save`."""
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        epochs = sorted({int(key.split(".", 1)[1]) for key in tensors})
        self.epochs = epochs
        self.positive = [tensors[f"positive.{e}"] for e in epochs]
        self.negative = [tensors[f"negative.{e}"] for e in epochs]

    def to_dict(self) -> dict[str, list[dict[str, float | int]]]:
        """``{"records": [{"epoch", "positive_mean", "positive_std", "negative_mean",
        "negative_std", "num_positive", "num_negative"}, ...]}`` in recording order (std is the
        population std, ``correction=0``). The records can go to :func:`plot_metric_curves`."""
        records: list[dict[str, float | int]] = []
        for epoch, pos, neg in zip(self.epochs, self.positive, self.negative, strict=True):
            records.append(
                {
                    "epoch": epoch,
                    "positive_mean": float(pos.mean()),
                    "positive_std": float(pos.std(correction=0)),
                    "negative_mean": float(neg.mean()),
                    "negative_std": float(neg.std(correction=0)),
                    "num_positive": pos.numel(),
                    "num_negative": neg.numel(),
                }
            )
        return {"records": records}

    def plot(self, path: str | Path, *, title: str | None = None) -> None:
        """Write a PNG at ``path`` (parent folders are created). Needs at least one record."""
        if not self.epochs:
            raise ValueError("ScoreHistory.plot: nothing recorded yet (call record first)")
        from matplotlib import cm, colormaps, colors

        figure = _figure(figsize=(10, 4))
        axes = figure.subplots(1, 2, sharey=False)
        norm = colors.Normalize(
            vmin=min(self.epochs), vmax=max(max(self.epochs), min(self.epochs) + 1)
        )
        cmap = colormaps["viridis"]
        edges = torch.linspace(-1.0, 1.0, self.bins + 1).numpy()
        for ax, samples, name in (
            (axes[0], self.positive, "positive pairs"),
            (axes[1], self.negative, "negative pairs"),
        ):
            for epoch, values in zip(self.epochs, samples, strict=True):
                ax.hist(
                    values.clamp(-1, 1).numpy(),
                    bins=edges,
                    density=True,
                    histtype="step",
                    color=cmap(norm(epoch)),
                    label=f"epoch {epoch}",
                )
            ax.set_xlim(-1, 1)
            ax.set_xlabel("cosine similarity")
            ax.set_ylabel("density")
            ax.set_title(name)
        if len(self.epochs) <= 8:
            axes[1].legend(fontsize="small")
        else:
            mappable = cm.ScalarMappable(norm=norm, cmap=cmap)
            figure.colorbar(mappable, ax=list(axes), label="epoch")
        if title:
            figure.suptitle(title)
        _save(figure, path)


# --------------------------------------------------------------------------- metric curves


def plot_metric_curves(
    records: Sequence[Mapping[str, Any]],
    keys: str | Sequence[str],
    path: str | Path,
    *,
    x_key: str = "epoch",
    title: str | None = None,
) -> None:
    """Line plots of ``metrics.jsonl``-style records: one panel per key, ``record[key]``
    against ``record[x_key]``, written as a PNG at ``path`` (parent folders are created).

    Records lacking ``x_key`` or the key, or whose value is ``None`` or not a finite number, are
    skipped for that key (train and eval records can be mixed). ``ValueError`` if ``records`` or
    ``keys`` is empty or a key has no plottable value.
    """
    fn = "plot_metric_curves"
    if isinstance(keys, str):
        keys = [keys]
    keys = list(keys)
    if not keys:
        raise ValueError(f"{fn}: keys must name at least one metric")
    records = list(records)
    if not records:
        raise ValueError(f"{fn}: records is empty")
    series: dict[str, tuple[list[float], list[float]]] = {}
    for key in keys:
        xs, ys = [], []
        for record in records:
            x, y = record.get(x_key), record.get(key)
            if _is_number(x) and _is_number(y):
                xs.append(float(x))
                ys.append(float(y))
        if not xs:
            raise ValueError(f"{fn}: no record has finite numbers for both {x_key!r} and {key!r}")
        series[key] = (xs, ys)

    figure = _figure(figsize=(6, 2.5 * len(keys)))
    axes = figure.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys, strict=True):
        xs, ys = series[key]
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(x_key)
    if title:
        figure.suptitle(title)
    _save(figure, path)


def plot_overlaid_curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> None:
    """Several curves on one axis (e.g. one method per line), written as a PNG at ``path``.

    ``series`` maps a legend label to ``(xs, ys)`` of equal length. Points that are not finite
    numbers are dropped. ``ValueError`` if ``series`` is empty, the lengths differ, or a label
    has no finite point.
    """
    fn = "plot_overlaid_curves"
    if not series:
        raise ValueError(f"{fn}: series is empty")
    lines = {}
    for label, (xs, ys) in series.items():
        xs, ys = list(xs), list(ys)
        if len(xs) != len(ys):
            raise ValueError(
                f"{fn}: series {label!r} has {len(xs)} x values and {len(ys)} y values"
            )
        pairs = zip(xs, ys, strict=True)
        points = [(float(x), float(y)) for x, y in pairs if _is_number(x) and _is_number(y)]
        if not points:
            raise ValueError(f"{fn}: series {label!r} has no finite (x, y) point")
        lines[label] = points
    figure = _figure(figsize=(6.5, 4))
    ax = figure.subplots()
    for label, points in lines.items():
        xs = [x for x, _ in points]
        ys = [y for _, y in points]
        ax.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    _save(figure, path)


def _is_number(value: object) -> bool:
    """A finite real number (Python or numpy ints and floats); bools are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(float(value))


def _figure(figsize: tuple[float, float]) -> Any:
    """A figure on its own Agg canvas: no pyplot state, works under any global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas
    return figure


def _save(figure: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
