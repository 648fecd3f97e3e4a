"""Tensor primitives with no method names: pair structures and the masked log-sum-exp core."""

from contrastkit.core.pair_mask import PairMask, Relation, RowIds
from contrastkit.core.pair_reduce import (
    CosineWeights,
    InstanceWeights,
    LogSumExp,
    PairWeights,
    SoftmaxMean,
    WeightedSum,
    compute_dtype,
    core_backend,
    dense_pair_reduce,
    local_anchor_range,
    local_anchors,
    pair_reduce,
    within_instance_logits,
)
from contrastkit.core.tiled import tiled_pair_reduce

__all__ = [
    "CosineWeights",
    "InstanceWeights",
    "LogSumExp",
    "PairMask",
    "PairWeights",
    "Relation",
    "RowIds",
    "SoftmaxMean",
    "WeightedSum",
    "compute_dtype",
    "core_backend",
    "dense_pair_reduce",
    "local_anchor_range",
    "local_anchors",
    "pair_reduce",
    "tiled_pair_reduce",
    "within_instance_logits",
]
