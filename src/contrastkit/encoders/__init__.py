"""Backbones, projection heads, momentum encoders, the MoCo queue and its loss."""

from contrastkit.encoders.cnn import SmallCNN
from contrastkit.encoders.heads import Encoder, ProjectionHead
from contrastkit.encoders.moco import moco_loss
from contrastkit.encoders.momentum import MomentumEncoder, momentum_schedule
from contrastkit.encoders.queue import FeatureQueue
from contrastkit.encoders.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from contrastkit.encoders.sasrec import SASRec

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "Encoder",
    "FeatureQueue",
    "MomentumEncoder",
    "ProjectionHead",
    "ResNet",
    "SASRec",
    "SmallCNN",
    "moco_loss",
    "momentum_schedule",
    "resnet18",
    "resnet50",
]
