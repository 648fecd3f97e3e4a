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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.encoders.gcn import GCNEncoder, GraceProjection
from contrastkit.encoders.gcn_bounds import (
    EdgeDropBounds,
    Variant,
    compactness_lower_bound,
)
from contrastkit.eval.probes import ProbeResult, linear_probe
from contrastkit.losses import info_nce
from contrastkit.losses._common import Reduction

__all__ = [
    "GRACE_CONFIGS",
    "POT_GRACE_CONFIGS",
    "POT_README_OVERRIDES",
    "GraceModel",
    "NodeProbeResult",
    "grace_loss",
    "grace_pot_objective",
    "node_linear_probe",
    "pot_loss",
    "pot_target",
    "pot_view_loss",
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
