"""Views of item sequences for contrastive sequential recommendation.

Random operators of CL4SRec (Xie et al., ICDE 2022) as coded in ``salesforce/ICLRec``
(``src/data_augmentation.py``) and ``QinHsiu/MCLRec`` (``sequential_dataloader.py::mclrec_aug``),
and the semantic item substitution of SRA-CL (Cui et al., NeurIPS 2025, ``ziqiangcui/SRA-CL``
``SequenceDataset.replace_input_ids``). With ``n = len(seq)``::

    crop(seq, keep_ratio)      a contiguous sub-sequence of length max(1, floor(keep_ratio * n)),
                               start uniform in 0..n-m
    mask(seq, ratio)           floor(ratio * n) distinct positions, uniform, set to mask_id
    reorder(seq, ratio)        a contiguous window of length w = floor(ratio * n), start uniform in
                               0..n-w, randomly permuted (the multiset is preserved)
    substitute(seq, nbrs, p)   each item independently with prob. p replaced by a uniform choice
                               among nbrs[item] (its k nearest items)

``floor(ratio * n)`` is ``math.floor`` of the float product, as in the references. Sequences are
1-D integer numpy arrays of real items (ids ``1..num_items``, no padding); every function returns
a new ``int64`` array and draws only from the ``np.random.Generator`` it is given (same seed,
same views). Crop changes the length; batch the views with
:func:`contrastkit.data.sequences.pad_left` (left padding, ``[B, L]``), which is what
:class:`~contrastkit.encoders.sasrec.SASRec` reads.

Deviation from ICLRec: its ``Crop`` and ``Reorder`` draw the start in ``0..n-m-1``, so a
window never contains the last item (an off-by-one); here, as in MCLRec and DuoRec, the start is
uniform in ``0..n-m``.

Masked items get id 0 by default (ICLRec's ``Mask``, MCLRec's ``item_mask``), i.e. the padding
id: SASRec then treats them as padding (not attended to). DuoRec's RecBole ``CL4SRec`` uses a
dedicated extra id (``n_items``) instead, which needs an extra embedding row.

:func:`nearest_neighbours` builds the ``[num_items+1, k]`` table that :func:`substitute` takes
(cosine top-k, self and padding excluded), streaming over blocks so that ~200k rows fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SequenceAugmenter",
    "crop",
    "mask",
    "nearest_neighbours",
    "reorder",
    "substitute",
]


def _check_seq(seq: np.ndarray, name: str = "seq") -> np.ndarray:
    array = np.asarray(seq)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be a 1-D integer array of item ids; got dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D array of item ids [n]; got shape {array.shape}"
        )
    return array.astype(np.int64, copy=True)


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
            f"got {type(rng).__name__}"
        )


def _check_ratio(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value}")
    return float(value)


def crop(seq: np.ndarray, keep_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Random contiguous sub-sequence of length ``m = max(1, floor(keep_ratio * n))``.

    The start is uniform in ``0..n-m``. ``keep_ratio`` is the fraction kept (ICLRec ``tao``;
    MCLRec's ``crop_ratio`` is the fraction removed, ``keep_ratio = 1 - crop_ratio``).
    ``[n] -> [m]``."""
    seq = _check_seq(seq)
    _check_rng(rng)
    keep_ratio = _check_ratio(keep_ratio, "keep_ratio")
    n = seq.size
    m = max(1, math.floor(keep_ratio * n))
    start = int(rng.integers(0, n - m + 1))
    return seq[start : start + m].copy()


def mask(seq: np.ndarray, ratio: float, rng: np.random.Generator, mask_id: int = 0) -> np.ndarray:
    """Set ``floor(ratio * n)`` distinct, uniformly chosen positions to ``mask_id``. ``[n] -> [n]``.

    ``mask_id=0`` (default, ICLRec / MCLRec) is the padding id. ``ratio=1`` masks every item."""
    seq = _check_seq(seq)
    _check_rng(rng)
    ratio = _check_ratio(ratio, "ratio")
    if mask_id < 0:
        raise ValueError(f"mask_id must be >= 0; got {mask_id}")
    count = math.floor(ratio * seq.size)
    positions = rng.choice(seq.size, size=count, replace=False)
    seq[positions] = mask_id
    return seq


def reorder(seq: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Shuffle a random contiguous window of length ``w = floor(ratio * n)``. ``[n] -> [n]``.

    The start is uniform in ``0..n-w``; ``w <= 1`` leaves the sequence unchanged (but still draws
    the start and the permutation)."""
    seq = _check_seq(seq)
    _check_rng(rng)
    ratio = _check_ratio(ratio, "ratio")
    n = seq.size
    w = math.floor(ratio * n)
    start = int(rng.integers(0, n - w + 1))
    seq[start : start + w] = rng.permutation(seq[start : start + w])
    return seq


def substitute(
    seq: np.ndarray,
    neighbours: np.ndarray | Tensor,
    prob: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """SRA-CL item substitution: each item independently, with probability ``prob``, becomes a
    uniform choice among its ``k`` neighbours ``neighbours[item]``. ``[n] -> [n]``.

    ``neighbours`` is ``[num_items+1, k]`` (ndarray or LongTensor, e.g. from
    :func:`nearest_neighbours`; row 0 unused). Id 0 (padding / masked) is never replaced, as in
    SRA-CL. SRA-CL's default is ``prob=0.2`` with ``k=10``. Draws ``n`` uniforms and ``n``
    neighbour columns per call whatever the outcome."""
    seq = _check_seq(seq)
    _check_rng(rng)
    prob = _check_ratio(prob, "prob")
    if isinstance(neighbours, Tensor):
        neighbours = neighbours.detach().cpu().numpy()
    table = np.asarray(neighbours)
    if table.ndim != 2 or table.shape[1] < 1 or table.dtype.kind not in "iu":
        raise ValueError(
            f"neighbours must be an integer array [num_items+1, k] with k >= 1; got "
            f"shape {table.shape}, dtype {table.dtype}"
        )
    if seq.min() < 0 or seq.max() >= table.shape[0]:
        raise ValueError(
            f"seq ids must lie in 0..{table.shape[0] - 1} (rows of neighbours); got min "
            f"{seq.min()}, max {seq.max()}"
        )
    replace = rng.random(seq.size) < prob
    columns = rng.integers(0, table.shape[1], size=seq.size)
    replace &= seq != 0
    seq[replace] = table[seq[replace], columns[replace]]
    return seq


@dataclass(frozen=True)
class SequenceAugmenter:
    """Ratios of the three random operators, and MCLRec's two-view sampling.

    Args:
        crop_keep: fraction of the items kept by :func:`crop`.
        mask_ratio: fraction of the items masked by :func:`mask`.
        reorder_ratio: fraction of the items in the window shuffled by :func:`reorder`.
        mask_id: id written by :func:`mask` (default 0, the padding id).

    ``two_views(seq, rng)`` samples two *different* operators without replacement from
    ``("crop", "mask", "reorder")`` and applies the first to make view 1 and the second to make
    view 2; a sequence of length 1 gives two unchanged copies (MCLRec ``mclrec_aug`` and
    DuoRec's ``cl4srec_aug`` both do this). Note ICLRec's ``Random`` instead picks each view's
    operator independently (the two may coincide).

    Presets (``m`` = kept, ``k`` = masked, ``w`` = shuffled window, for a length ``n``):

    ``cl4srec()`` — ``crop_keep=0.2, mask_ratio=0.7, reorder_ratio=0.2, mask_id=0``: the
    ``salesforce/ICLRec`` ``src/main.py`` defaults ``--tao 0.2 --gamma 0.7 --beta 0.2`` (also the
    defaults of its ``Crop``/``Mask``/``Reorder``; ``Mask`` writes 0). With these, ``w <= 1`` (no
    reordering at all) until ``n >= 10`` and crop keeps a single item until ``n >= 10``:
    ``n=2``: crop -> 1 item, mask -> 1 of 2 items, reorder -> unchanged; ``n=3``: crop -> 1,
    mask -> 2 of 3, reorder -> unchanged. (DuoRec's RecBole ``CL4SRec`` uses ``eta=0.6``,
    ``gamma=0.3``, ``beta=0.6`` and a dedicated mask id instead.)

    ``mclrec()`` — ``crop_keep=0.5, mask_ratio=0.5, reorder_ratio=0.8, mask_id=0``:
    ``QinHsiu/MCLRec`` ``recbole/properties/model/MCLRec.yaml`` ``crop_ratio: 0.5`` (the fraction
    *removed*; ``item_crop`` keeps ``floor(n * (1 - 0.5))``), ``mask_ratio: 0.5`` (``item_mask``
    writes 0), ``reorder_ratio: 0.8``. ``n=2``: crop -> 1 item, mask -> 1 of 2, reorder -> window
    of 1, unchanged; ``n=3``: crop -> 1, mask -> 1 of 3, reorder -> a window of 2 swapped with
    probability 1/2.
    """

    crop_keep: float
    mask_ratio: float
    reorder_ratio: float
    mask_id: int = 0

    OPS: ClassVar[tuple[str, str, str]] = ("crop", "mask", "reorder")

    def __post_init__(self) -> None:
        _check_ratio(self.crop_keep, "crop_keep")
        _check_ratio(self.mask_ratio, "mask_ratio")
        _check_ratio(self.reorder_ratio, "reorder_ratio")
        if self.mask_id < 0:
            raise ValueError(f"mask_id must be >= 0; got {self.mask_id}")

    @classmethod
    def cl4srec(cls) -> SequenceAugmenter:
        """ICLRec's CL4SRec operators: keep 0.2, mask 0.7 (-> id 0), reorder 0.2."""
        return cls(crop_keep=0.2, mask_ratio=0.7, reorder_ratio=0.2, mask_id=0)

    @classmethod
    def mclrec(cls) -> SequenceAugmenter:
        """MCLRec's operators: keep 1 - 0.5, mask 0.5 (-> id 0), reorder 0.8."""
        return cls(crop_keep=1.0 - 0.5, mask_ratio=0.5, reorder_ratio=0.8, mask_id=0)

    def apply(self, op: str, seq: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply one operator by name (``"crop"``, ``"mask"`` or ``"reorder"``)."""
        if op == "crop":
            return crop(seq, self.crop_keep, rng)
        if op == "mask":
            return mask(seq, self.mask_ratio, rng, mask_id=self.mask_id)
        if op == "reorder":
            return reorder(seq, self.reorder_ratio, rng)
        raise ValueError(f"op must be one of {self.OPS}; got {op!r}")

    def two_views(self, seq: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two views made by two different randomly chosen operators (identity if ``n <= 1``)."""
        seq = _check_seq(seq)
        _check_rng(rng)
        if seq.size <= 1:
            return seq, seq.copy()
        first, second = rng.choice(len(self.OPS), size=2, replace=False)
        return self.apply(self.OPS[first], seq, rng), self.apply(self.OPS[second], seq, rng)


@torch.no_grad()
def nearest_neighbours(embeddings: Tensor | np.ndarray, k: int, *, chunk: int = 4096) -> Tensor:
    """Cosine top-``k`` neighbours of every row: ``[n+1, d] -> LongTensor [n+1, k]``.

    Row ``i`` (``1..n``) lists the ``k`` rows ``j != i``, ``j >= 1``, with the largest
    ``cos(e_i, e_j)``, most similar first; row 0 (padding) is neither a query nor a result and
    its output row is all 0. Zero-norm rows have cosine 0 with everything. Computed in
    ``chunk x chunk`` blocks of the similarity matrix with a running top-k, so memory is
    ``O(chunk^2 + n k)`` (12k items or ~200k user rows both fit); the work is ``O(n^2 d)``, on
    the device of ``embeddings`` (an ndarray is used on the CPU). Float64 input stays float64.
    Exact ties may be ordered differently from a one-shot ``topk``.
    """
    emb = torch.as_tensor(embeddings)
    if not emb.dtype.is_floating_point:
        raise TypeError(f"embeddings must be floating point [n+1, d]; got dtype {emb.dtype}")
    if emb.dim() != 2 or emb.shape[0] < 3 or emb.shape[1] < 1:
        raise ValueError(
            f"embeddings must have shape [n+1, d] with n >= 2 (row 0 = padding); got "
            f"{tuple(emb.shape)}"
        )
    n = emb.shape[0] - 1
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in 1..{n - 1} (n - 1 other rows); got {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    if not bool(torch.isfinite(emb[1:]).all()):
        raise ValueError("embeddings rows 1..n must be finite")

    unit = F.normalize(emb[1:], dim=1)  # row r here is id r + 1
    device = unit.device
    out = torch.zeros(n + 1, k, dtype=torch.long, device=device)
    for q0 in range(0, n, chunk):
        queries = unit[q0 : q0 + chunk]
        rows = torch.arange(q0, q0 + queries.shape[0], device=device)
        best_val = queries.new_empty(queries.shape[0], 0)
        best_idx = torch.empty(queries.shape[0], 0, dtype=torch.long, device=device)
        for k0 in range(0, n, chunk):
            keys = unit[k0 : k0 + chunk]
            cols = torch.arange(k0, k0 + keys.shape[0], device=device)
            sim = queries @ keys.T
            sim.masked_fill_(rows[:, None] == cols[None, :], float("-inf"))
            cand_val = torch.cat([best_val, sim], dim=1)
            cand_idx = torch.cat([best_idx, cols.expand(queries.shape[0], -1)], dim=1)
            best_val, pos = cand_val.topk(min(k, cand_val.shape[1]), dim=1)
            best_idx = cand_idx.gather(1, pos)
        out[q0 + 1 : q0 + 1 + queries.shape[0]] = best_idx + 1
    return out
