"""Is a difference between two models larger than the test set's sampling noise?

:func:`paired_bootstrap` compares two models scored on the same test users (per-user metric
vectors, e.g. ``full_ranking_metrics(..., per_user=True)["HR@20"]`` of each model): it
resamples users with replacement and reports the mean difference with a percentile interval.
It measures the noise of a finite test set only; the spread between training seeds is another,
often larger, source that it does not see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

__all__ = ["PairedDifference", "paired_bootstrap"]


@dataclass(frozen=True)
class PairedDifference:
    """``mean_a - mean_b`` over the users, with a ``confidence`` percentile interval
    ``[low, high]`` from ``samples`` bootstrap resamples of the users; ``relative`` is
    ``difference / mean_b`` with its interval ``[relative_low, relative_high]`` (NaN when
    ``mean_b`` is 0; the interval also when a resample's mean of ``b`` is 0)."""

    mean_a: float
    mean_b: float
    difference: float
    low: float
    high: float
    relative: float
    relative_low: float
    relative_high: float
    confidence: float
    samples: int

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 (the sign of the difference is resolved)."""
        return self.low > 0 or self.high < 0


def _vector(values: Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    if not isinstance(values, np.ndarray):
        raise TypeError(f"paired_bootstrap: {name} must be a tensor or array [users]")
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"paired_bootstrap: {name} must be 1-D [users], non-empty; got shape {values.shape}"
        )
    if values.dtype.kind not in "biuf":
        raise TypeError(f"paired_bootstrap: {name} must hold numbers; got dtype {values.dtype}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"paired_bootstrap: {name} holds NaN or infinite values")
    return values


def paired_bootstrap(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    *,
    samples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 250,
) -> PairedDifference:
    """Paired bootstrap of ``mean(a) - mean(b)``.

    Args:
        a, b: per-user metric values ``[users]`` of two models on the same users, in the same
            order (``a[u]`` and ``b[u]`` belong to user ``u``).
        samples: bootstrap resamples (each draws ``users`` users with replacement).
        confidence: the interval's coverage, in (0, 1): percentiles ``(1 - c) / 2`` and
            ``(1 + c) / 2`` of the resampled differences.
        seed: the resampling generator's seed (the result is a function of the inputs and it).
        chunk: resamples drawn at once (memory ``chunk x users`` indices).

    Returns:
        :class:`PairedDifference`.
    """
    x, y = _vector(a, "a"), _vector(b, "b")
    if x.shape != y.shape:
        raise ValueError(
            f"paired_bootstrap: a and b must hold the same users; got shapes {x.shape}, {y.shape}"
        )
    for name, value in (("samples", samples), ("chunk", chunk)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"paired_bootstrap: {name} must be an int >= 1; got {value!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"paired_bootstrap: confidence must lie in (0, 1); got {confidence}")
    rng = np.random.default_rng(seed)
    n = x.size
    means_a, means_b = [], []
    for start in range(0, samples, chunk):
        rows = rng.integers(0, n, size=(min(chunk, samples - start), n))
        means_a.append(x[rows].mean(axis=1))
        means_b.append(y[rows].mean(axis=1))
    ma, mb = np.concatenate(means_a), np.concatenate(means_b)
    tails = [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)]
    low, high = np.percentile(ma - mb, tails)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (ma - mb) / mb
    rel_low, rel_high = np.percentile(ratio, tails) if np.isfinite(ratio).all() else (np.nan,) * 2
    mean_a, mean_b = float(x.mean()), float(y.mean())
    return PairedDifference(
        mean_a=mean_a,
        mean_b=mean_b,
        difference=mean_a - mean_b,
        low=float(low),
        high=float(high),
        relative=(mean_a - mean_b) / mean_b if mean_b else float("nan"),
        relative_low=float(rel_low),
        relative_high=float(rel_high),
        confidence=float(confidence),
        samples=samples,
    )
