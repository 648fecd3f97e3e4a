"""Node-level graph contrastive learning: GRACE (Zhu et al., "Deep Graph Contrastive
Representation Learning", 2020, ``CRIPAC-DIG/GRACE``) and the POT regulariser (Yu et al.,
"Provable Training for Graph Contrastive Learning", NeurIPS 2023, ``VoidHaruhi/POT-GCL``).

Building blocks only (the training loop / CLI wiring lives elsewhere). One GRACE+POT step::

    g1 = drop_edges(edge_index, r1, gen); g2 = drop_edges(edge_index, r2, gen)
    x1 = mask_features(x, pf1, gen);     x2 = mask_features(x, pf2, gen)
    z1, z2 = model(x1, g1), model(x2, g2)                     # GraceModel: encoder outputs
    l_gcl = grace_loss(model.project(z1), model.project(z2), tau=tau)
    bounds = (edge_drop_bounds(edge_index, N, r1), edge_drop_bounds(edge_index, N, r2))  # cache
    l_pot = pot_loss(model.encoder, x, (g1, g2), (z1, z2), bounds)
    loss = grace_pot_objective(l_gcl, l_pot, kappa=0.4)

GRACE's loss is :func:`contrastkit.losses.info_nce` on ``[N, 2, D]`` (NT-Xent: the denominator of
anchor ``u_i`` is every row of both views but itself: ``v_i``, the ``N - 1`` inter-view and the
``N - 1`` intra-view negatives), so ``with contrastkit.core.core_backend("tiled"):`` makes it
``O(N·D)`` in memory (the official ``batched_semi_loss`` still needs ``O(B·N)``).

The recipe (``recipe: graphnode``; ``contrastkit train --config configs/graph/cora_grace.yaml``)
is :class:`GraphNodeTask` + :func:`run_graph_node_training`: full-graph training, one
optimizer step per epoch (the engine sees a training set of one example, see
:meth:`GraphNodeTask.num_train`), both views re-drawn every step from the engine's step seed
(exact resume), a linear probe on the frozen encoder output of the clean graph every
``train.eval_every`` epochs and at the end (``graphnode.probe_split=public``: train / val / test
= the public Planetoid split; ``random``: GRACE's own evaluation, :func:`random_node_split` and
:func:`node_probe_cross_validated`).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch import Tensor, nn

from contrastkit.core import core_backend
from contrastkit.data.graphs import NodeDataset, load_planetoid
from contrastkit.data.images import data_root
from contrastkit.encoders.gcn import GCNEncoder, GraceProjection, gcn_normalized_adjacency
from contrastkit.encoders.gcn_bounds import (
    EdgeDropBounds,
    Variant,
    compactness_lower_bound,
    edge_drop_bounds,
)
from contrastkit.eval.probes import ProbeResult, linear_probe
from contrastkit.losses import info_nce
from contrastkit.losses._common import Reduction
from contrastkit.recipes.reporting import fit_and_summarize
from contrastkit.train.config import GraphNodeConfig, RunConfig
from contrastkit.views.graph import drop_edges, mask_features

__all__ = [
    "GRACE_CONFIGS",
    "POT_GRACE_CONFIGS",
    "POT_README_OVERRIDES",
    "PROBE_WEIGHT_DECAYS",
    "RANDOM_PROBE_WEIGHT_DECAYS",
    "RANDOM_SPLIT_FOLDS",
    "RANDOM_SPLIT_TRAIN_RATIO",
    "GraceModel",
    "GraphNodeTask",
    "NodeProbeResult",
    "grace_loss",
    "grace_pot_objective",
    "load_node_dataset",
    "node_linear_probe",
    "node_probe_cross_validated",
    "node_probe_selected",
    "normalize_features",
    "pot_loss",
    "pot_target",
    "pot_view_loss",
    "random_node_split",
    "results_table",
    "run_graph_node_training",
]

# CRIPAC-DIG/GRACE config.yaml (weight_decay 1e-5, 2 layers, GCNConv for all).
GRACE_CONFIGS: dict[str, dict[str, Any]] = {
    "Cora": {
        "learning_rate": 5e-4,
        "num_hidden": 128,
        "num_proj_hidden": 128,
        "activation": "relu",
        "drop_edge_rates": (0.2, 0.4),
        "drop_feature_rates": (0.3, 0.4),
        "tau": 0.4,
        "num_epochs": 200,
        "weight_decay": 1e-5,
    },
    "CiteSeer": {
        "learning_rate": 1e-3,
        "num_hidden": 256,
        "num_proj_hidden": 256,
        "activation": "prelu",
        "drop_edge_rates": (0.2, 0.0),
        "drop_feature_rates": (0.3, 0.2),
        "tau": 0.9,
        "num_epochs": 200,
        "weight_decay": 1e-5,
    },
    "PubMed": {
        "learning_rate": 1e-3,
        "num_hidden": 256,
        "num_proj_hidden": 256,
        "activation": "relu",
        "drop_edge_rates": (0.4, 0.1),
        "drop_feature_rates": (0.0, 0.2),
        "tau": 0.7,
        "num_epochs": 1500,
        "weight_decay": 1e-5,
    },
}

# VoidHaruhi/POT-GCL GRACE/config.yaml; kappa from the README command (GRACE + POT: 0.4;
# argparse default 0.5). No feature masking in any POT config.
POT_GRACE_CONFIGS: dict[str, dict[str, Any]] = {
    "Cora": {
        "learning_rate": 5e-4,
        "num_hidden": 128,
        "num_proj_hidden": 128,
        "activation": "relu",
        "drop_edge_rates": (0.4, 0.3),
        "drop_feature_rates": (0.0, 0.0),
        "tau": 0.7,
        "num_epochs": 200,
        "weight_decay": 1e-5,
        "kappa": 0.4,
    },
    "CiteSeer": {
        "learning_rate": 1e-3,
        "num_hidden": 256,
        "num_proj_hidden": 256,
        "activation": "prelu",
        "drop_edge_rates": (0.3, 0.1),
        "drop_feature_rates": (0.0, 0.0),
        "tau": 0.9,
        "num_epochs": 200,
        "weight_decay": 1e-5,
        "kappa": 0.4,
    },
    "PubMed": {
        "learning_rate": 1e-3,
        "num_hidden": 256,
        "num_proj_hidden": 256,
        "activation": "relu",
        "drop_edge_rates": (0.4, 0.1),
        "drop_feature_rates": (0.0, 0.0),
        "tau": 0.7,
        "num_epochs": 2500,
        "weight_decay": 1e-5,
        "kappa": 0.4,
    },
}

# POT's train.py argparse defaults --drop_1 0.4 --drop_2 0.3 --tau 0.9 replace the yaml values
# unless -1 is passed, so the README commands actually run with these (pitfall in the spec).
POT_README_OVERRIDES: dict[str, Any] = {"drop_edge_rates": (0.4, 0.3), "tau": 0.9}


def grace_loss(
    h1: Tensor, h2: Tensor, *, tau: float = 0.5, reduction: Reduction = "mean"
) -> Tensor:
    """GRACE's objective on the projections ``h1, h2 [N, D]`` of the two views::

        ℓ(u_i, v_i) = -log e^{θ(u_i,v_i)/τ} / (e^{θ(u_i,v_i)/τ} + Σ_{k≠i} e^{θ(u_i,v_k)/τ}
                                                              + Σ_{k≠i} e^{θ(u_i,u_k)/τ})
        L = mean_i ½ [ℓ(u_i, v_i) + ℓ(v_i, u_i)]          (θ = cosine similarity)

    computed by :func:`contrastkit.losses.info_nce` on ``stack([h1, h2], 1)`` (log-sum-exp
    form; follows ``core_backend``). ``tau``: GRACE's ``Model`` default 0.5 (Cora config 0.4).
    ``reduction="none"`` gives the ``[N]`` per-node values.
    """
    if not isinstance(h1, Tensor) or not isinstance(h2, Tensor):
        raise TypeError("grace_loss: h1 and h2 must be tensors of shape [N, D]")
    if h1.dim() != 2 or h1.shape != h2.shape:
        raise ValueError(
            f"grace_loss: h1 and h2 must both have shape [N, D]; "
            f"got {tuple(h1.shape)} and {tuple(h2.shape)}"
        )
    return info_nce(torch.stack([h1, h2], dim=1), temperature=tau, reduction=reduction)


class GraceModel(nn.Module):
    """GRACE's ``Model``: a :class:`GCNEncoder` and a :class:`GraceProjection`.

    ``forward(x, graph)`` returns the encoder output ``z`` (used for POT and evaluation);
    ``project(z)`` the projection; ``loss(z1, z2, tau)`` = ``grace_loss`` of the projections.
    """

    def __init__(
        self,
        in_features: int,
        num_hidden: int = 128,
        num_proj_hidden: int = 128,
        *,
        num_layers: int = 2,
        activation: str | nn.Module = "relu",
    ) -> None:
        super().__init__()
        self.encoder = GCNEncoder(
            in_features, num_hidden, num_layers=num_layers, activation=activation
        )
        self.projection = GraceProjection(num_hidden, num_proj_hidden)

    def forward(self, x: Tensor, graph: Tensor) -> Tensor:
        return self.encoder(x, graph)

    def project(self, z: Tensor) -> Tensor:
        return self.projection(z)

    def loss(self, z1: Tensor, z2: Tensor, *, tau: float = 0.5) -> Tensor:
        return grace_loss(self.project(z1), self.project(z2), tau=tau)


def pot_target(z_other: Tensor) -> Tensor:
    """POT's per-node weight ``W_cl,i = ẑ_i - mean_{j≠i} ẑ_j`` with ``ẑ = normalize(z_other)``
    (the other view's *encoder output*): ``[N, D]``, differentiable (as the official code)."""
    if z_other.dim() != 2 or z_other.shape[0] < 2:
        raise ValueError(f"pot_target: z_other must be [N, D] with N >= 2; got {z_other.shape}")
    n = z_other.shape[0]
    z_hat = F.normalize(z_other, dim=1)
    return z_hat * (n / (n - 1)) - z_hat.sum(0, keepdim=True) / (n - 1)


def pot_view_loss(
    encoder: GCNEncoder,
    x: Tensor,
    view_graph: Tensor,
    bounds: EdgeDropBounds,
    z_other: Tensor,
    *,
    variant: Variant = "official",
    x_view: Tensor | None = None,
    feature_mask: bool = False,
) -> Tensor:
    """``BCEWithLogits(f, 1) = mean_i softplus(-f_i)`` of the compactness score ``f`` of one
    view (:func:`~contrastkit.encoders.gcn_bounds.compactness_lower_bound`) with target
    :func:`pot_target` ``(z_other)``."""
    score = compactness_lower_bound(
        encoder,
        x,
        view_graph,
        bounds,
        pot_target(z_other),
        variant=variant,
        x_view=x_view,
        feature_mask=feature_mask,
    )
    return F.softplus(-score).mean()


def pot_loss(
    encoder: GCNEncoder,
    x: Tensor,
    view_graphs: tuple[Tensor, Tensor],
    z: tuple[Tensor, Tensor],
    bounds: tuple[EdgeDropBounds, EdgeDropBounds],
    *,
    variant: Variant = "official",
    x_views: tuple[Tensor, Tensor] | None = None,
    feature_mask: bool = False,
) -> Tensor:
    """POT's ``L_POT = ½ [ℓ(view 1, target from z2) + ℓ(view 2, target from z1)]`` (official
    ``train.py``: ``pot_loss(z1, z2, ..., edge_index_1, drop_edge_rate_1)`` and the mirror).

    Args:
        encoder: the 2-layer (or 1-layer, ``variant="sound"``) GCN encoder.
        x: clean features ``[N, F]``.
        view_graphs: the two sampled views (``edge_index`` or sparse ``Â'``).
        z: the encoder outputs ``(z1, z2)`` of the two views (not the projections).
        bounds: :func:`~contrastkit.encoders.gcn_bounds.edge_drop_bounds` of the clean graph
            at the views' drop rates ``(r1, r2)``; compute once and reuse.
        variant: ``"official"`` (default: the paper's score, a heuristic) or ``"sound"`` (a
            certified lower bound for every graph of the set); see
            :func:`~contrastkit.encoders.gcn_bounds.compactness_lower_bound`.
        x_views: the views' features when they are masked (with ``feature_mask=True``).
    """
    x1, x2 = (None, None) if x_views is None else x_views
    first = pot_view_loss(
        encoder,
        x,
        view_graphs[0],
        bounds[0],
        z[1],
        variant=variant,
        x_view=x1,
        feature_mask=feature_mask,
    )
    second = pot_view_loss(
        encoder,
        x,
        view_graphs[1],
        bounds[1],
        z[0],
        variant=variant,
        x_view=x2,
        feature_mask=feature_mask,
    )
    return (first + second) / 2


def grace_pot_objective(gcl_loss: Tensor, pot_loss_value: Tensor, *, kappa: float = 0.4) -> Tensor:
    """``(1 - κ) L_GCL + κ L_POT``; κ = 0.4 is the README's GRACE+POT value (GCA 0.3,
    COSTA 0.2; argparse default 0.5)."""
    if not 0.0 <= kappa <= 1.0:
        raise ValueError(f"kappa must be in [0, 1]; got {kappa}")
    return (1 - kappa) * gcl_loss + kappa * pot_loss_value


@dataclass
class NodeProbeResult:
    """Linear probe on node embeddings: ``val`` and ``test`` results of one fit on ``train``."""

    val: ProbeResult
    test: ProbeResult


def node_linear_probe(
    z: Tensor,
    labels: Tensor,
    train_mask: Tensor,
    val_mask: Tensor,
    test_mask: Tensor,
    **probe_kwargs: Any,
) -> NodeProbeResult:
    """:func:`contrastkit.eval.probes.linear_probe` fitted on the ``train_mask`` rows of the
    frozen embeddings ``z [N, D]`` and scored on ``val_mask`` and ``test_mask`` (boolean
    ``[N]`` masks). ``probe_kwargs`` go to ``linear_probe`` (``weight_decay``, ``epochs``...).
    The fit is deterministic, so the two calls fit the same classifier. GRACE/POT evaluate with
    Adam-trained logistic regression (POT: public Planetoid split, lr 0.01); this is L-BFGS."""
    z = z.detach()
    num_classes = int(labels.max()) + 1
    probe_kwargs.setdefault("num_classes", num_classes)
    train = (z[train_mask], labels[train_mask])
    val = linear_probe(*train, z[val_mask], labels[val_mask], **probe_kwargs)
    test = linear_probe(*train, z[test_mask], labels[test_mask], **probe_kwargs)
    return NodeProbeResult(val=val, test=test)


# The probe's L2 strengths tried on the validation nodes when graphnode.probe_weight_decay is
# null (GRACE's evaluation grid-searches the inverse strength C of a logistic regression too).
PROBE_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def node_probe_selected(
    z: Tensor,
    labels: Tensor,
    train_mask: Tensor,
    val_mask: Tensor,
    test_mask: Tensor,
    weight_decays: tuple[float, ...] = PROBE_WEIGHT_DECAYS,
    **probe_kwargs: Any,
) -> tuple[float, NodeProbeResult]:
    """The linear probe with its L2 strength chosen on the validation nodes: one fit per value
    of ``weight_decays`` scored on ``val_mask``; the value with the best validation accuracy
    (ties: the stronger regularisation) is then scored on ``test_mask``. Returns that value
    and its :class:`NodeProbeResult`. The test nodes play no part in the choice."""
    if not weight_decays:
        raise ValueError("node_probe_selected: weight_decays is empty")
    z = z.detach()
    probe_kwargs.setdefault("num_classes", int(labels.max()) + 1)
    train = (z[train_mask], labels[train_mask])
    best: tuple[float, float, ProbeResult] | None = None
    for wd in sorted(weight_decays, reverse=True):  # strongest first: ties keep it
        val = linear_probe(*train, z[val_mask], labels[val_mask], weight_decay=wd, **probe_kwargs)
        if best is None or val.accuracy > best[1]:
            best = (wd, val.accuracy, val)
    assert best is not None
    wd, _, val = best
    test = linear_probe(*train, z[test_mask], labels[test_mask], weight_decay=wd, **probe_kwargs)
    return wd, NodeProbeResult(val=val, test=test)


# GRACE's evaluation (CRIPAC-DIG/GRACE eval.py::label_classification, called with ratio 0.1):
# a random split of the labelled nodes, 10 % train / 90 % test (train_test_split(test_size=0.9),
# not stratified), L2-normalised embeddings, logistic regression with C picked by GridSearchCV
# (cv=5) on the training part; micro-F1 = accuracy.
RANDOM_SPLIT_TRAIN_RATIO = 0.1
RANDOM_SPLIT_FOLDS = 5
# The L2 strengths tried by cross-validation: 2^-17 .. 2^2 (20 values, factor 2). GRACE grid-
# searches liblinear's C over 2^-10 .. 2^9, i.e. minimises ½‖w‖² + C Σ_i loss_i; linear_probe
# minimises mean_i loss_i + (wd/2)‖W‖², so C corresponds to wd = 1 / (C n), and with Cora's
# n = 216..270 training rows GRACE's grid covers about 2^-17 .. 2^2. (GRACE's classifier is
# one-vs-rest liblinear, which also penalises the intercept; this one is multinomial.)
RANDOM_PROBE_WEIGHT_DECAYS = tuple(2.0**k for k in range(-17, 3))


def random_node_split(
    labels: Tensor, seed: int, train_ratio: float = RANDOM_SPLIT_TRAIN_RATIO
) -> tuple[Tensor, Tensor]:
    """GRACE's random split: the labelled nodes (``labels >= 0``) in the order of
    ``torch.randperm`` under ``torch.Generator().manual_seed(seed)``; the last
    ``ceil((1 - train_ratio) n)`` are the test nodes (scikit-learn's ``train_test_split``
    sizes; Cora: 270 train / 2,438 test) and the first ``n - n_test`` the training nodes.
    Returns ``(train_idx, test_idx)``, int64 node ids (``train_idx`` in permuted order, which
    :func:`node_probe_cross_validated` cuts into folds). Not stratified, as GRACE's."""
    if not 0.0 < train_ratio < 1.0:
        raise ValueError(f"random_node_split: train_ratio must be in (0, 1); got {train_ratio}")
    labelled = torch.nonzero(labels.cpu() >= 0).flatten()
    n = labelled.numel()
    n_test = math.ceil(round((1.0 - train_ratio) * n, 9))
    if n_test < 1 or n - n_test < 1:
        raise ValueError(
            f"random_node_split: {n} labelled nodes give an empty part at train_ratio={train_ratio}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    order = labelled[torch.randperm(n, generator=gen)]
    return order[: n - n_test].to(labels.device), order[n - n_test :].to(labels.device)


def node_probe_cross_validated(
    z: Tensor,
    labels: Tensor,
    train_idx: Tensor,
    test_idx: Tensor,
    weight_decays: tuple[float, ...] = RANDOM_PROBE_WEIGHT_DECAYS,
    *,
    folds: int = RANDOM_SPLIT_FOLDS,
    **probe_kwargs: Any,
) -> tuple[float, float, ProbeResult]:
    """GRACE's evaluation with :func:`~contrastkit.eval.probes.linear_probe`: the embeddings
    are L2-normalised (and not standardised, ``standardize=False`` unless given), the L2
    strength is chosen by ``folds``-fold cross-validation on the training nodes only (folds =
    contiguous chunks of ``train_idx``, as scikit-learn's ``KFold`` without shuffling; score =
    the mean fold accuracy; ties go to the stronger value, as ``GridSearchCV`` keeps the first
    of its increasing-C grid), then one fit on all training nodes is scored on ``test_idx``.
    Returns ``(weight_decay, cv_accuracy, test result)``. The test nodes play no part in the
    choice."""
    if not weight_decays:
        raise ValueError("node_probe_cross_validated: weight_decays is empty")
    n = train_idx.numel()
    if not 2 <= folds <= n:
        raise ValueError(
            f"node_probe_cross_validated: folds must be in [2, {n}] (the training nodes); "
            f"got {folds}"
        )
    z = F.normalize(z.detach(), dim=1)
    probe_kwargs.setdefault("num_classes", int(labels.max()) + 1)
    probe_kwargs.setdefault("standardize", False)
    x, y = z[train_idx], labels[train_idx]
    edges = [f * n // folds for f in range(folds + 1)]
    position = torch.arange(n, device=train_idx.device)
    best: tuple[float, float] | None = None
    for wd in sorted(weight_decays, reverse=True):  # strongest first: ties keep it
        scores = []
        for start, stop in itertools.pairwise(edges):
            held = (position >= start) & (position < stop)
            fit = linear_probe(
                x[~held], y[~held], x[held], y[held], weight_decay=wd, **probe_kwargs
            )
            scores.append(fit.accuracy)
        score = sum(scores) / folds
        if best is None or score > best[1]:
            best = (wd, score)
    assert best is not None
    wd, score = best
    test = linear_probe(x, y, z[test_idx], labels[test_idx], weight_decay=wd, **probe_kwargs)
    return wd, score, test


def normalize_features(x: Tensor) -> Tensor:
    """PyG's ``NormalizeFeatures`` (GRACE's and POT's transform): ``x - min(x)``, then each row
    divided by its sum (sums below 1, e.g. all-zero rows, divide by 1)."""
    x = x - x.min()
    return x / x.sum(dim=-1, keepdim=True).clamp(min=1.0)


def load_node_dataset(cfg: GraphNodeConfig) -> NodeDataset:
    """The configured node-classification graph: Cora from the shared data folder
    (``<data>/planetoid/ind.cora.*``) or the Planetoid files ``path/ind.<name>.*``."""
    if cfg.dataset == "file":
        assert cfg.path is not None
        return load_planetoid(cfg.path, cfg.name, num_val=cfg.num_val)
    root = data_root()
    if root is None:
        raise FileNotFoundError(
            f"graphnode.dataset={cfg.dataset} needs the shared data folder: set "
            "CONTRASTKIT_DATA or use graphnode.dataset=file with graphnode.path"
        )
    return load_planetoid(root / "planetoid", cfg.dataset, num_val=cfg.num_val)


class GraphNodeTask:
    """A :class:`contrastkit.train.engine.Task` for GRACE / GRACE+POT on one graph.

    Full-graph training: every step encodes the whole graph twice (two views), so an epoch is
    one optimizer step (GRACE's and POT's ``train()`` per epoch). The engine is told there is
    one training example (:meth:`num_train` = 1, so any ``train.batch_size`` gives one step of
    one index, which :meth:`training_step` ignores). Step ``k``'s views come from the global
    RNG, which the engine re-seeds from ``(train.seed, k)`` before every step: a resumed run
    draws the same views.

    Step (``method="grace"``; ``grace_pot`` adds POT's term)::

        G1, G2 = drop_edges(E, r1), drop_edges(E, r2)          (each directed edge independently)
        X1, X2 = mask_features(X, p1), mask_features(X, p2)    (p = 0: X itself)
        z1, z2 = f(X1, Â(G1)), f(X2, Â(G2))                    (encoder outputs)
        L = grace_loss(g(z1), g(z2), τ)                        (info_nce; graphnode.core)
        grace_pot: L = (1 - κ) L + κ pot_loss(f, X, (Â(G1), Â(G2)), (z1, z2), bounds)

    ``bounds`` = :func:`~contrastkit.encoders.gcn_bounds.edge_drop_bounds` of the clean graph
    at ``r1`` and ``r2``, computed once. With feature masking the masked features go to POT as
    ``x_views`` (the ``sound`` variant also widens its set to every column mask).
    """

    def __init__(self, config: RunConfig, data: NodeDataset, run_dir: Path) -> None:
        cfg = config.graphnode
        self.config, self.cfg, self.run_dir = config, cfg, Path(run_dir)
        self.data = data
        # the random protocol's split (train.seed): None with the public split
        self.random_split: tuple[Tensor, Tensor] | None = None
        if cfg.probe_split == "random":
            self.random_split = random_node_split(data.labels, config.train.seed)
            if self.random_split[0].numel() < RANDOM_SPLIT_FOLDS:
                raise ValueError(
                    f"graphnode.probe_split=random: {self.random_split[0].numel()} training "
                    f"nodes, fewer than the {RANDOM_SPLIT_FOLDS} cross-validation folds"
                )
        for name in ("train_mask", "val_mask", "test_mask") if cfg.probe_split == "public" else ():
            mask = getattr(data, name)
            if not bool(mask.any()):
                raise ValueError(f"graphnode: the dataset's {name} is empty")
            if bool((data.labels[mask] < 0).any()):
                raise ValueError(f"graphnode: a node of {name} has no label")
        n = data.num_nodes
        if n < 2:
            raise ValueError("graphnode: the graph needs at least 2 nodes (GRACE's negatives)")
        x = data.features.float()
        self.x = normalize_features(x) if cfg.normalize_features else x
        self.edge_index = data.edge_index.long()
        self.labels = data.labels
        self.masks = (data.train_mask, data.val_mask, data.test_mask)
        self.adj = gcn_normalized_adjacency(self.edge_index, n)  # the clean graph (evaluation)
        self.bounds: tuple[EdgeDropBounds, EdgeDropBounds] | None = None
        if cfg.method == "grace_pot":
            self.bounds = (
                edge_drop_bounds(self.edge_index, n, cfg.drop_edge_1),
                edge_drop_bounds(self.edge_index, n, cfg.drop_edge_2),
            )
        torch.manual_seed(config.train.seed)  # the initial weights follow the seed
        self.model = GraceModel(
            data.num_features,
            cfg.hidden,
            cfg.proj_hidden,
            num_layers=cfg.layers,
            activation=cfg.activation,
        )
        self.device = torch.device("cpu")
        self.best: dict[str, Any] = {}  # the evaluation with the best validation accuracy
        self.description = f"{cfg.method} {data.name}"

    # engine hooks ------------------------------------------------------------------------
    def num_train(self) -> int:
        """One "example": the whole graph (one full-graph step per epoch)."""
        return 1

    def setup(self, fabric: Fabric) -> None:
        if fabric.world_size > 1:
            raise ValueError("the graphnode recipe trains on one device (train.devices=1)")
        self.to(fabric.device)

    def to(self, device: torch.device) -> None:
        """Move the graph tensors (not the model: the engine moves it) to ``device``."""
        self.device = torch.device(device)
        self.x = self.x.to(self.device)
        self.edge_index = self.edge_index.to(self.device)
        self.adj = self.adj.to(self.device)
        self.labels = self.labels.to(self.device)
        self.masks = tuple(m.to(self.device) for m in self.masks)  # type: ignore[assignment]
        if self.random_split is not None:
            self.random_split = (
                self.random_split[0].to(self.device),
                self.random_split[1].to(self.device),
            )
        if self.bounds is not None:
            self.bounds = (self.bounds[0].to(self.device), self.bounds[1].to(self.device))

    def extra_state(self) -> dict[str, Any]:
        """The best-validation evaluation so far (saved in every checkpoint)."""
        return {"best": dict(self.best)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.best = dict(state["best"])

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        pass

    def views(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Two random views ``((X1, Â1), (X2, Â2))`` from the global RNG (edge drops first,
        then feature masks, as GRACE's ``train()``)."""
        cfg, n = self.cfg, self.x.shape[0]
        graphs = [drop_edges(self.edge_index, p) for p in (cfg.drop_edge_1, cfg.drop_edge_2)]
        feats = [
            mask_features(self.x, p) if p > 0 else self.x
            for p in (cfg.drop_feature_1, cfg.drop_feature_2)
        ]
        adjs = [gcn_normalized_adjacency(g, n, dtype=self.x.dtype) for g in graphs]
        return (feats[0], adjs[0]), (feats[1], adjs[1])

    def training_step(self, model: nn.Module, indices: Tensor) -> tuple[Tensor, dict[str, float]]:
        cfg = self.cfg
        (x1, a1), (x2, a2) = self.views()
        z1, z2 = model(x1, a1), model(x2, a2)
        with core_backend(cfg.core):
            gcl = grace_loss(self.model.project(z1), self.model.project(z2), tau=cfg.tau)
        logs = {"gcl": gcl.item()}
        if cfg.method == "grace":
            return gcl, logs
        assert self.bounds is not None
        masked = cfg.drop_feature_1 > 0 or cfg.drop_feature_2 > 0
        pot = pot_loss(
            self.model.encoder,
            self.x,
            (a1, a2),
            (z1, z2),
            self.bounds,
            variant=cfg.pot_variant,  # type: ignore[arg-type]
            x_views=(x1, x2) if masked else None,
            feature_mask=masked and cfg.pot_variant == "sound",
        )
        logs["pot"] = pot.item()
        return grace_pot_objective(gcl, pot, kappa=cfg.kappa), logs

    # evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def embeddings(self) -> Tensor:
        """The encoder output on the clean graph and features (GRACE's and POT's evaluation)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(self.x, self.adj)
        finally:
            self.model.train(was_training)

    def probe(self) -> dict[str, float]:
        """``val_acc``, ``test_acc`` of the linear probe fitted on the training nodes, and the
        probe's L2 strength ``probe_weight_decay`` (fixed, or chosen on the validation nodes).
        ``probe_split=random``: GRACE's protocol (:func:`node_probe_cross_validated` on
        :func:`random_node_split`); ``val_acc`` is then the cross-validation accuracy on the
        training part (a fixed ``probe_weight_decay`` is only cross-validated, not chosen)."""
        cfg = self.cfg
        z = self.embeddings().float()
        if self.random_split is not None:
            grid = (
                RANDOM_PROBE_WEIGHT_DECAYS
                if cfg.probe_weight_decay is None
                else (cfg.probe_weight_decay,)
            )
            wd, cv_acc, test = node_probe_cross_validated(
                z, self.labels, *self.random_split, grid, epochs=cfg.probe_epochs
            )
            return {"val_acc": cv_acc, "test_acc": test.accuracy, "probe_weight_decay": float(wd)}
        if cfg.probe_weight_decay is None:
            wd, result = node_probe_selected(z, self.labels, *self.masks, epochs=cfg.probe_epochs)
        else:
            wd = cfg.probe_weight_decay
            result = node_linear_probe(
                z, self.labels, *self.masks, weight_decay=wd, epochs=cfg.probe_epochs
            )
        return {
            "val_acc": result.val.accuracy,
            "test_acc": result.test.accuracy,
            "probe_weight_decay": float(wd),
        }

    def evaluate(self, epoch: int, *, final: bool) -> dict[str, Any]:
        metrics = self.probe()
        if not self.best or metrics["val_acc"] > self.best["val_acc"]:  # first best kept on ties
            self.best = {"val_acc": metrics["val_acc"], "test_acc": metrics["test_acc"]}
            self.best["epoch"] = epoch
        return {
            **metrics,
            "best_val_acc": self.best["val_acc"],
            "test_acc_at_best_val": self.best["test_acc"],
            "best_epoch": self.best["epoch"],
        }


# -- the run -----------------------------------------------------------------------------------
def run_graph_node_training(
    config: RunConfig, output: str | Path, *, resume: bool = False, echo: bool = True
) -> dict[str, Any]:
    """Train GRACE / GRACE+POT on one graph and probe it; writes ``summary.json`` and
    ``results.md`` into ``output``; returns the summary."""
    started = time.perf_counter()
    output = Path(output)
    data = load_node_dataset(config.graphnode)
    task = GraphNodeTask(config, data, output)
    cfg = config.graphnode
    header = {
        "dataset": data.name,
        "method": cfg.method,
        "pot_variant": cfg.pot_variant if cfg.method == "grace_pot" else None,
        "data": {
            "nodes": data.num_nodes,
            "features": data.num_features,
            "classes": data.num_classes,
            "edges": data.num_edges,
            "train": int(data.train_mask.sum()),
            "val": int(data.val_mask.sum()),
            "test": int(data.test_mask.sum()),
        },
        "probe_split": cfg.probe_split,
    }
    if task.random_split is not None:
        header["probe_nodes"] = {
            "train": int(task.random_split[0].numel()),
            "test": int(task.random_split[1].numel()),
            "folds": RANDOM_SPLIT_FOLDS,
        }
    return fit_and_summarize(
        config,
        output,
        task,
        header=header,
        table=results_table,
        started=started,
        resume=resume,
        echo=echo,
    )


def results_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per run: the final probe's val / test accuracy, the best validation
    accuracy over the evaluations with its test accuracy and epoch, the epochs trained."""
    lines = [
        "| dataset | method | val acc | test acc | best val acc (epoch) | test acc at best val "
        "| epochs | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for r in rows:
        method = r["method"] + (f" ({r['pot_variant']})" if r.get("pot_variant") else "")
        lines.append(
            f"| {r['dataset']} | {method} | {r.get('val_acc', nan):.4f} | "
            f"{r.get('test_acc', nan):.4f} | {r.get('best_val_acc', nan):.4f} "
            f"({r.get('best_epoch', '—')}) | {r.get('test_acc_at_best_val', nan):.4f} | "
            f"{r.get('epochs_trained', '—')} | {r.get('wall_seconds', nan):.0f} |"
        )
    return "\n".join(lines)
