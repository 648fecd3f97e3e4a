"""Probes on frozen representations: a linear (logistic-regression) probe and a weighted kNN.

Both take a train split and a test split of features and integer labels:

- ``train_x [n, D]`` and ``test_x [m, D]``: floating-point features (same ``D``), finite;
- ``train_y [n]`` and ``test_y [m]``: integer class ids in ``[0, C)``.

The number of classes ``C`` is ``num_classes`` when given, else ``1 + max`` over both label
tensors. Everything is torch and runs on the device of ``train_x`` (``test_x`` is moved there).
Inputs are detached; no gradient flows back into the encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.core import compute_dtype

__all__ = ["ProbeResult", "knn_classify", "linear_probe"]


@dataclass
class ProbeResult:
    """Outcome of a probe on the test split.

    Attributes:
        accuracy: top-1 accuracy on the test split, in ``[0, 1]``.
        predictions: ``int64 [m]`` predicted class of every test row (on the features' device).
        per_class_accuracy: ``float [C]`` accuracy restricted to the test rows of each class;
            ``NaN`` for a class with no test row.
        num_classes: ``C``.
        train_accuracy: accuracy of the fitted classifier on the train split (linear probe
            only; ``None`` for kNN, where it would be trivially inflated by self-matches).
    """

    accuracy: float
    predictions: Tensor
    per_class_accuracy: Tensor
    num_classes: int
    train_accuracy: float | None = None


# --------------------------------------------------------------------------- input checks


def _check_features(x: object, *, name: str, probe: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{probe}: {name} must be a torch.Tensor of shape [rows, D]; got {type(x).__name__}"
        )
    if x.dim() != 2:
        raise ValueError(f"{probe}: {name} must be 2-D [rows, D]; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{probe}: {name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(
            f"{probe}: {name} must have at least one row and one feature; "
            f"got shape {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{probe}: {name} contains NaN or Inf values")
    return x.detach()


def _check_labels(y: object, rows: int, *, name: str, features: str, probe: str) -> Tensor:
    if not isinstance(y, Tensor):
        raise TypeError(
            f"{probe}: {name} must be an integer torch.Tensor of shape [{rows}]; "
            f"got {type(y).__name__}"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{probe}: {name} must be an integer tensor; got dtype {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"{probe}: {name} must be 1-D [rows]; got shape {tuple(y.shape)}")
    if y.shape[0] != rows:
        raise ValueError(
            f"{probe}: {name} must have one label per row of {features} ({rows}); got {y.shape[0]}"
        )
    if bool((y < 0).any()):
        raise ValueError(f"{probe}: {name} must hold class ids >= 0; got min {int(y.min())}")
    return y.detach().long()


def _check_split(
    train_x: object,
    train_y: object,
    test_x: object,
    test_y: object,
    num_classes: int | None,
    *,
    probe: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    train_x = _check_features(train_x, name="train_x", probe=probe)
    test_x = _check_features(test_x, name="test_x", probe=probe)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"{probe}: train_x and test_x must have the same feature dimension D; "
            f"got {train_x.shape[1]} and {test_x.shape[1]}"
        )
    train_y = _check_labels(
        train_y, train_x.shape[0], name="train_y", features="train_x", probe=probe
    )
    test_y = _check_labels(test_y, test_x.shape[0], name="test_y", features="test_x", probe=probe)
    largest = max(int(train_y.max()), int(test_y.max()))
    if num_classes is None:
        num_classes = largest + 1
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"{probe}: num_classes must be an int >= 1; got {num_classes!r}")
        if largest >= num_classes:
            raise ValueError(
                f"{probe}: labels must lie in [0, num_classes) = [0, {num_classes}); "
                f"got a label {largest} in train_y/test_y"
            )
    device = train_x.device
    dtype = compute_dtype(torch.promote_types(train_x.dtype, test_x.dtype))
    return (
        train_x.to(dtype),
        train_y.to(device),
        test_x.to(device=device, dtype=dtype),
        test_y.to(device),
        num_classes,
    )


def _positive_int(value: object, *, name: str, probe: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{probe}: {name} must be an int >= 1; got {value!r}")
    return value


def _result(
    predictions: Tensor, test_y: Tensor, num_classes: int, train_accuracy: float | None = None
) -> ProbeResult:
    correct = (predictions == test_y).double()
    counts = torch.bincount(test_y, minlength=num_classes).double()
    hits = torch.bincount(test_y, weights=correct, minlength=num_classes)
    per_class = torch.where(counts > 0, hits / counts.clamp_min(1), torch.full_like(hits, math.nan))
    return ProbeResult(
        accuracy=float(correct.mean()),
        predictions=predictions,
        per_class_accuracy=per_class.float(),
        num_classes=num_classes,
        train_accuracy=train_accuracy,
    )


# --------------------------------------------------------------------------- linear probe


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    standardize: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
    num_classes: int | None = None,
) -> ProbeResult:
    """Multinomial logistic regression on frozen features, fitted on train, scored on test.

    Objective (``W [C, D]``, ``b [C]``, ``x`` standardised train rows)::

        mean_i CE(W x_i + b, y_i) + (weight_decay / 2) * ||W||²      (bias not decayed)

    i.e. ``weight_decay`` has the meaning of torch's SGD ``weight_decay`` (it adds
    ``weight_decay * W`` to the gradient).

    Optimizer: **full-batch L-BFGS** (``torch.optim.LBFGS``, strong-Wolfe line search,
    history 20) starting from ``W = 0, b = 0``, for at most ``epochs`` iterations (one
    iteration = one quasi-Newton step on the whole train split; at most ``1.25 * epochs``
    objective evaluations; it stops earlier once the gradient or the change in loss is
    negligible). Why: the objective is smooth and (with ``weight_decay > 0``) strictly convex,
    so a quasi-Newton method with a line search converges in tens of iterations without any
    learning-rate or schedule tuning, whereas Adam/SGD on mini-batches needs a tuned lr and
    many epochs to reach the same optimum. For ``n ~ 10k, D ~ 512`` one objective evaluation is
    a ``[n, D] x [D, C]`` matmul (milliseconds on CPU), so the whole fit takes about a second.
    Starting from zero on a convex problem makes the result deterministic and independent of
    initialisation.

    Args:
        train_x, train_y, test_x, test_y: see the module docstring.
        epochs: maximum number of L-BFGS iterations (>= 1).
        lr: L-BFGS initial step length; 1.0 is the natural quasi-Newton step and the strong-Wolfe
            line search adapts it. Must be > 0.
        weight_decay: L2 strength on ``W`` (>= 0). Keep it > 0 for a unique solution on
            separable data (the unregularised optimum is at infinity).
        standardize: standardise every feature with the train mean and std (features with
            zero train std are only centred). Test features use the train statistics.
        seed: accepted for a uniform probe interface; the fit is deterministic and does not
            use random numbers (zero initialisation, full batch), so it does not change results.
        batch_size: rows per chunk when evaluating the full-batch objective and gradient (the
            gradient is accumulated over chunks); bounds the memory of the ``[rows, C]`` logits
            for very large train splits. ``None``: the whole split at once. The optimisation
            (and the result, up to float rounding) does not depend on it.
        num_classes: ``C``; default ``1 + max`` label of both splits.

    Returns:
        :class:`ProbeResult` with test accuracy, predictions and the train accuracy.

    Raises:
        ValueError: bad shapes, dtypes, labels or hyperparameters (the message names the
            argument). TypeError: an input that is not a tensor.
    """
    probe = "linear_probe"
    train_x, train_y, test_x, test_y, num_classes = _check_split(
        train_x, train_y, test_x, test_y, num_classes, probe=probe
    )
    epochs = _positive_int(epochs, name="epochs", probe=probe)
    if batch_size is not None:
        batch_size = _positive_int(batch_size, name="batch_size", probe=probe)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"{probe}: lr must be a finite number > 0; got {lr!r}")
    if not (
        isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0
    ):
        raise ValueError(
            f"{probe}: weight_decay must be a finite number >= 0; got {weight_decay!r}"
        )
    del seed  # deterministic solver: see the docstring

    if standardize:
        mean = train_x.mean(dim=0)
        std = train_x.std(dim=0, correction=0)
        std = torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))
        train_x = (train_x - mean) / std
        test_x = (test_x - mean) / std

    n, d = train_x.shape
    chunk = n if batch_size is None else batch_size
    weight = torch.zeros(
        num_classes, d, dtype=train_x.dtype, device=train_x.device, requires_grad=True
    )
    bias = torch.zeros(num_classes, dtype=train_x.dtype, device=train_x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=lr,
        max_iter=epochs,
        history_size=20,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=False)
        total = torch.zeros((), dtype=train_x.dtype, device=train_x.device)
        for start in range(0, n, chunk):
            logits = F.linear(train_x[start : start + chunk], weight, bias)
            part = F.cross_entropy(logits, train_y[start : start + chunk], reduction="sum") / n
            part.backward()
            total = total + part.detach()
        penalty = 0.5 * weight_decay * weight.pow(2).sum()
        penalty.backward()
        return total + penalty.detach()

    with torch.enable_grad():
        optimizer.step(closure)

    with torch.no_grad():
        train_pred = _predict(train_x, weight, bias, chunk)
        train_accuracy = float((train_pred == train_y).double().mean())
        predictions = _predict(test_x, weight, bias, chunk)
    return _result(predictions, test_y, num_classes, train_accuracy)


def _predict(x: Tensor, weight: Tensor, bias: Tensor, chunk: int) -> Tensor:
    return torch.cat(
        [F.linear(x[s : s + chunk], weight, bias).argmax(dim=1) for s in range(0, len(x), chunk)]
    )


# --------------------------------------------------------------------------- weighted kNN


def knn_classify(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    num_classes: int | None = None,
) -> ProbeResult:
    """Weighted kNN classifier of Wu et al. 2018 (InstDisc, "Unsupervised Feature Learning via
    Non-Parametric Instance Discrimination", CVPR 2018; the kNN monitor used by MoCo/SimCLR
    codebases).

    Features are L2-normalised; for a test row ``q`` with cosine similarities ``s_j`` to the
    train rows, its ``k`` most similar train rows ``N_k(q)`` vote with weight
    ``exp(s_j / temperature)``::

        score_c(q) = Σ_{j in N_k(q), y_j = c} exp(s_j / temperature)
        prediction(q) = argmax_c score_c(q)

    The weights are computed as ``exp((s_j - max_j s_j) / temperature)`` (a common per-row
    factor, which leaves the argmax unchanged and never overflows). Ties between classes go to
    the smallest class id; ties between equally similar train rows at the ``k``-th place are
    broken by ``torch.topk``.

    Args:
        train_x, train_y, test_x, test_y: see the module docstring.
        k: number of neighbours (>= 1). ``k > n_train`` is clipped to ``n_train`` (every train
            row votes), not an error.
        temperature: weight temperature (> 0); paper default 0.07.
        chunk_size: test rows per chunk (>= 1); memory is ``O(chunk_size * n_train)``. The
            result does not depend on it.
        num_classes: ``C``; default ``1 + max`` label of both splits.

    Returns:
        :class:`ProbeResult` (``train_accuracy`` is ``None``).
    """
    probe = "knn_classify"
    train_x, train_y, test_x, test_y, num_classes = _check_split(
        train_x, train_y, test_x, test_y, num_classes, probe=probe
    )
    k = _positive_int(k, name="k", probe=probe)
    chunk_size = _positive_int(chunk_size, name="chunk_size", probe=probe)
    if not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"{probe}: temperature must be a finite number > 0; got {temperature!r}")
    k = min(k, train_x.shape[0])

    train_n = F.normalize(train_x, dim=1)
    test_n = F.normalize(test_x, dim=1)
    predictions = []
    with torch.no_grad():
        for start in range(0, test_n.shape[0], chunk_size):
            similarity = test_n[start : start + chunk_size] @ train_n.T  # [chunk, n_train]
            top_s, top_i = similarity.topk(k, dim=1)  # sorted, top_s[:, 0] is the row max
            weights = torch.exp((top_s - top_s[:, :1]) / temperature)
            scores = torch.zeros(
                top_s.shape[0], num_classes, dtype=weights.dtype, device=weights.device
            )
            scores.scatter_add_(1, train_y[top_i], weights)
            predictions.append(scores.argmax(dim=1))
    return _result(torch.cat(predictions), test_y, num_classes)
