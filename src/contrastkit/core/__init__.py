"""Tensor primitives with no method names: pair structures and the masked log-sum-exp core."""

from contrastkit.core.pair_mask import PairMask, Relation, RowIds, relation_codes
from contrastkit.core.pair_reduce import (
    CosineWeights,
    InstanceWeights,
    LogSumExp,
    PairWeights,
    SoftmaxMean,
    WeightedSum,
    compute_dtype,
    dense_pair_reduce,
    pair_reduce,
    within_instance_logits,
)

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
    "dense_pair_reduce",
    "pair_reduce",
    "relation_codes",
    "within_instance_logits",
]
