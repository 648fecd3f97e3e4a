"""Backbones, projection heads, momentum encoders, the MoCo queue and its loss, LightGCN, the
GRACE GCN encoder and its POT bound propagation."""

from contrastkit.encoders.cnn import SmallCNN
from contrastkit.encoders.gcn import (
    GCNConv,
    GCNEncoder,
    GraceProjection,
    gcn_normalized_adjacency,
)
from contrastkit.encoders.gcn_bounds import (
    EdgeDropBounds,
    IntervalBounds,
    compactness_lower_bound,
    edge_drop_bounds,
    gcn_interval_bounds,
    interval_compactness_bound,
)
from contrastkit.encoders.heads import Encoder, ProjectionHead
from contrastkit.encoders.lightgcn import LightGCN, bpr_loss, ego_l2_loss
from contrastkit.encoders.moco import moco_loss
from contrastkit.encoders.momentum import MomentumEncoder, momentum_schedule
from contrastkit.encoders.queue import FeatureQueue
from contrastkit.encoders.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from contrastkit.encoders.sasrec import SASRec

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "EdgeDropBounds",
    "Encoder",
    "FeatureQueue",
    "GCNConv",
    "GCNEncoder",
    "GraceProjection",
    "IntervalBounds",
    "LightGCN",
    "MomentumEncoder",
    "ProjectionHead",
    "ResNet",
    "SASRec",
    "SmallCNN",
    "bpr_loss",
    "compactness_lower_bound",
    "edge_drop_bounds",
    "ego_l2_loss",
    "gcn_interval_bounds",
    "gcn_normalized_adjacency",
    "interval_compactness_bound",
    "moco_loss",
    "momentum_schedule",
    "resnet18",
    "resnet50",
]
