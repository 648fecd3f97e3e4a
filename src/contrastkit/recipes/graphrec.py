"""Graph collaborative filtering with contrastive learning: LightGCN, SGL, SimGCL and LightGCL,
wired for the engine. ``run_graphrec_training(config, output)`` is what
``contrastkit train --config configs/graph/<dataset>_<method>.yaml`` runs.

Protocol (LightGCN / NGCF, also SGL, SimGCL and LightGCL): a fixed train / test split of the
user-item interactions (LightGCN's ``train.txt`` / ``test.txt``), one training example per
training interaction (the engine's training indices are the edges of
:meth:`~contrastkit.data.graphs.InteractionGraph.edge_index`: one epoch visits every training
interaction once, in batches of ``train.batch_size``; the engine drops the last, partial batch;
``graphrec.sampler=users`` draws the epoch's pairs user-first instead, see
:meth:`GraphRecTask.uniform_user_edges`),
one negative item per interaction drawn uniformly from all items and re-drawn while it is one of
the user's training items (LightGCN's and LightGCL's samplers), and a full ranking of all items
with the user's training items excluded: Recall@k and NDCG@k (k = 10, 20, 40) averaged over the
users that have a test item. There is **no validation split**: the published protocol evaluates
the test set every few epochs (LightGCN, LightGCL report the test metrics; SGL-Torch also stops
early on them). The recipe reports the test metrics of the final weights (``test_*``) and of the
best evaluation so far (``best_test_*``, ``best_epoch``; weights in ``best.safetensors``). With
``graphrec.valid_fraction`` it holds that share of each user's training items out as a
validation set, trains on the rest and reports ``valid_*`` / ``best_valid_*`` instead (for
tuning; the test items are then neither trained on nor evaluated); early
stopping on a test metric (``graphrec.patience``, ``graphrec.stop_metric``) is off by default.

Every contrastive term is ``config.loss`` from :mod:`contrastkit.losses` built with
``reduction="none"``, never a copy of the softmax. The configs use the cross-view ("CLIP")
softmax of the papers: ``simcse`` (view-0 anchors against view-1 candidates, one direction, as
SGL-Torch and LightGCL's code) for SGL and LightGCL, ``info_nce`` with
``same_view_negatives=False`` (both directions averaged) for SimGCL. For a view pair
``(A, B)`` over ``n`` nodes and the anchor nodes ``ids`` of a batch (:meth:`contrastive`):

* ``graphrec.cl_negatives=all`` (SGL-Torch, LightGCL): the candidates are all ``n`` nodes of
  the other view; the anchors are the batch's rows *with repeats* (a user with three
  interactions in the batch counts three times, as in both official codes). The batch's distinct
  nodes are moved to the front of ``stack([A, B], 1)`` and the loss runs inside
  :func:`contrastkit.core.local_anchors` over them only (cost ``O(k n d)``, ``k`` distinct
  anchors), in the tiled core when the ``k x n`` logit block is large (``graphrec.core``).
* ``graphrec.cl_negatives=batch`` (SELFRec's SGL / SimGCL): the loss on the batch's distinct
  nodes, in-batch negatives, their plain mean.

``simcse`` takes the ``A -> B`` direction only (the official codes, and half the cost of both
directions with all nodes as candidates); ``info_nce`` averages ``A -> B`` and ``B -> A``. For
SGL and SimGCL the two views are exchangeable (two random views), so both have the same
expectation; for LightGCL the direction matters (see :meth:`GraphRecTask.lightgcl_contrastive`).

Methods (per batch of interactions ``(u, p, n)``; ``e`` = final embeddings):

* ``lightgcn`` (He et al. 2020): ``BPR(e_u, e_p, e_n) + reg · ½(‖e⁰_u‖² + ‖e⁰_p‖² + ‖e⁰_n‖²)/B``
  (ego embeddings of the batch, decay 1e-4), 3 layers, layer mean including ``E⁰``.
* ``sgl`` (Wu et al. 2021, SGL-ED, ``wujcan/SGL-Torch``): two edge-dropout views per epoch
  (each keeps ``int(E (1 - ρ))`` random training edges, re-normalised), LightGCN on each;
  ``+ λ (nce_users + nce_items)`` with cosine logits, τ = 0.2, over the batch's users and
  positive items, candidates all users / items of the other view; λ = 0.1, ρ = 0.1.
* ``simgcl`` (Yu et al. 2022, ``Coder-Yu/SELFRec``): two propagations with sign-aligned uniform
  noise of norm ε = 0.1 after every layer (:meth:`LightGCN.perturb`), no ``E⁰`` in any layer mean;
  ``+ λ (nce_users + nce_items)`` over the batch's distinct users and positive items, in-batch
  negatives, cosine logits, τ = 0.2, λ = 0.5 (SELFRec's Yelp2018 setting).
* ``lightgcl`` (Cai et al. 2023, ``HKUDS/LightGCL``): see :meth:`GraphRecTask.lightgcl_views`
  and :meth:`GraphRecTask.lightgcl_contrastive`; ``BPR + λ1 L_s + λ2 Σ‖θ‖²``.

Deviations from the official codes (deliberate):

* SimGCL's contrastive term averages both directions (``info_nce``); SELFRec uses one (the
  same expectation: the two noise views are exchangeable);
* no ``+1e-8`` inside LightGCL's log; SGL-Torch sums BPR, InfoNCE and L2 over the batch, here
  they are means (the same relative weights; only the overall scale, to which Adam is nearly
  invariant, differs);
* the shipped configs' epoch visits every training edge once (SELFRec, LightGCL);
  LightGCN-PyTorch and SGL-Torch draw ``E`` (user, positive) pairs by first drawing a user
  uniformly, which is ``graphrec.sampler=users``;
* SimGCL's L2 term is LightGCN's batch L2 on the ego embeddings (SELFRec adds
  ``reg (‖e_u‖ + ‖e_p‖)``, unsquared norms of the propagated batch embeddings);
* the evaluation ranks with fresh embeddings of the current weights (LightGCL's code ranks with
  the embeddings of its last training forward pass, i.e. before the last optimizer step);
* metrics are means over users (LightGCL's code averages per-batch means);
* one epoch = the training edges in ``E // B`` full batches (the engine drops the remainder).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch import Tensor, nn

from contrastkit import losses as loss_lib
from contrastkit.core import core_backend, local_anchors
from contrastkit.data.graphs import (
    InteractionGraph,
    load_lightgcn_dataset,
    load_movielens_graph,
    random_split_graph,
)
from contrastkit.data.images import data_root
from contrastkit.encoders.lightgcn import LightGCN, bpr_loss, to_csr
from contrastkit.eval.ranking import recall_ndcg_in_chunks
from contrastkit.losses.registry import positional_inputs
from contrastkit.recipes.reporting import fit_and_summarize, load_run_task
from contrastkit.train.best import BestWeights
from contrastkit.train.config import GRAPHREC_KS, GraphRecConfig, RunConfig

KS = GRAPHREC_KS
DATASET_FOLDERS = {"gowalla": "lightgcn_gowalla", "ml100k": "movielens_100k"}


# -- data ----------------------------------------------------------------------------------
def load_graph(cfg: GraphRecConfig) -> InteractionGraph:
    """The configured interaction graph: LightGCN-format ``train.txt`` + ``test.txt``
    (``gowalla``, ``file``), or MovieLens 100K's ``u.data`` with a seeded random per-user split
    (``ml100k``: ``test_fraction``, ``split_seed``). With ``valid_fraction`` the returned
    graph's ``test`` is instead a validation set: :func:`random_split_graph` of the training
    items (seed ``split_seed``, 0 when null), its ``train`` the rest."""
    graph = _load_split(cfg)
    if cfg.valid_fraction is None:
        return graph
    seed = 0 if cfg.split_seed is None else cfg.split_seed
    return random_split_graph(
        graph.train, graph.num_items, test_fraction=cfg.valid_fraction, seed=seed
    )


def evaluated_split(cfg: GraphRecConfig) -> str:
    """``"valid"`` with a validation split (``valid_fraction``), else ``"test"``: the prefix of
    the metric names."""
    return "test" if cfg.valid_fraction is None else "valid"


def _load_split(cfg: GraphRecConfig) -> InteractionGraph:
    if cfg.dataset == "file":
        assert cfg.path is not None
        return load_lightgcn_dataset(cfg.path)
    if cfg.path is not None and cfg.dataset == "ml100k":
        folder = Path(cfg.path)
    else:
        root = data_root()
        if root is None:
            instead = (
                "graphrec.path=<a folder with u.data>"
                if cfg.dataset == "ml100k"
                else "graphrec.dataset=file with graphrec.path"
            )
            raise FileNotFoundError(
                f"graphrec.dataset={cfg.dataset} needs the shared data folder: set "
                f"CONTRASTKIT_DATA or use {instead}"
            )
        folder = root / DATASET_FOLDERS[cfg.dataset]
    if cfg.dataset == "ml100k":
        fraction = 0.2 if cfg.test_fraction is None else cfg.test_fraction
        seed = 0 if cfg.split_seed is None else cfg.split_seed
        return load_movielens_graph(folder, test_fraction=fraction, seed=seed)
    return load_lightgcn_dataset(folder)


class NegativeSampler:
    """One negative item per (user, positive) pair: uniform over all items, re-drawn while it
    is one of the user's training items (LightGCN's ``UniformSample_original`` and LightGCL's
    ``TrnData.neg_sampling`` rule). Draws from the global torch RNG (seeded by the engine before
    every step, so a resumed run draws the same negatives)."""

    def __init__(self, graph: InteractionGraph) -> None:
        users, items = graph.edge_index()
        self.num_items = graph.num_items
        self.keys = torch.sort(users * graph.num_items + items).values
        degree = torch.bincount(users, minlength=graph.num_users)
        full = torch.nonzero(degree >= graph.num_items).flatten()
        if len(full):
            raise ValueError(
                f"user {int(full[0])} has every one of the {graph.num_items} items as a "
                "training item: there is no negative item to sample"
            )

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        keys = users * self.num_items + items
        where = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)
        return self.keys[where] == keys

    def sample(self, users: Tensor) -> Tensor:
        neg = torch.randint(0, self.num_items, users.shape)
        bad = self.is_positive(users, neg)
        while bool(bad.any()):
            rows = torch.nonzero(bad).flatten()
            neg[rows] = torch.randint(0, self.num_items, (len(rows),))
            bad = torch.zeros_like(bad)
            bad[rows] = self.is_positive(users[rows], neg[rows])
        return neg


def user_item_block(graph: InteractionGraph, adjacency: Tensor) -> Tensor:
    """The ``[U, I]`` block ``Â_ui = 1 / sqrt(d_u d_i)`` of the normalised bipartite adjacency
    (sparse COO, coalesced): LightGCL's normalised interaction matrix."""
    u = graph.num_users
    indices, values = adjacency.indices(), adjacency.values()
    keep = (indices[0] < u) & (indices[1] >= u)
    rows, cols = indices[0, keep], indices[1, keep] - u
    size = (graph.num_users, graph.num_items)
    indices = torch.stack([rows, cols])  # valid by construction: skip the invariant checks
    return torch.sparse_coo_tensor(indices, values[keep], size, check_invariants=False).coalesce()


def svd_view(matrix: Tensor, rank: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``U_q, s_q, V_q`` of ``torch.svd_lowrank(matrix, q=rank)`` (LightGCL's SVD view, computed
    once; randomised, so seeded with ``seed`` without touching the global RNG state). The rank is
    capped at ``min(matrix.shape)``."""
    q = min(rank, *matrix.shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        u, s, v = torch.svd_lowrank(matrix, q=q)
    return u, s, v


# -- the task --------------------------------------------------------------------------------
class GraphRecTask:
    """A :class:`contrastkit.train.engine.Task` for top-k recommendation on an interaction
    graph; the engine's training indices are the training edges."""

    def __init__(self, config: RunConfig, graph: InteractionGraph, run_dir: Path) -> None:
        cfg = config.graphrec
        self.config, self.cfg, self.run_dir = config, cfg, Path(run_dir)
        self.graph = graph
        if graph.num_train == 0:
            raise ValueError("graphrec: the training file has no interaction")
        if graph.num_test == 0:
            if cfg.valid_fraction is not None:
                raise ValueError(
                    f"graphrec: graphrec.valid_fraction={cfg.valid_fraction} holds out no "
                    "training item (round(fraction x a user's items) is 0 for every user); "
                    "use a larger fraction"
                )
            raise ValueError("graphrec: the test file has no interaction (nothing to rank)")
        self.edge_users, self.edge_items = graph.edge_index()
        degree = torch.bincount(self.edge_users, minlength=graph.num_users)
        # per user: its number of training edges, the first one's index (edge_index lists the
        # edges user by user) and the users with at least one (for sampler=users)
        self._user_edges = (
            degree,
            torch.cumsum(degree, 0) - degree,
            torch.nonzero(degree).flatten(),
        )
        self.sampler = NegativeSampler(graph)
        self.adj = graph.normalized_adjacency()
        # the same symmetric matrix in CSR: what the LightGCN passes propagate on (fast backward)
        self.adj_csr = to_csr(self.adj)
        self.exclude = graph.train_mask()
        self.svd: tuple[Tensor, ...] | None = None
        if cfg.method == "lightgcl":
            u, s, v = svd_view(user_item_block(graph, self.adj), cfg.svd_rank, config.train.seed)
            self.svd = (u * s, v * s, u, v)  # US, VS, U, V
        self.views: list[Tensor] = []  # SGL's two edge-dropout graphs of the current epoch
        torch.manual_seed(config.train.seed)  # the initial weights follow the seed
        self.model = LightGCN(
            graph.num_users,
            graph.num_items,
            dim=cfg.dim,
            layers=cfg.layers,
            init_std=cfg.init_std,
            init=cfg.init,  # type: ignore[arg-type]
        )
        self.criterion: nn.Module | None = None
        if cfg.method != "lightgcn":
            params = {**config.loss.params, "reduction": "none"}
            if config.loss.temperature is not None:
                params["temperature"] = config.loss.temperature
            self.criterion = loss_lib.get(config.loss.name, **params)
            if list(self.criterion.parameters()) or positional_inputs(type(self.criterion).fn):
                raise ValueError(
                    f"loss.name={config.loss.name!r}: the graphrec recipe's contrastive terms "
                    "take two views of the node embeddings only; use a loss without learnable "
                    "parameters or extra inputs (info_nce, dcl, dhel, ...)"
                )
        self.device = torch.device("cpu")
        self.tracker = BestWeights(self.run_dir)
        self._last_eval: tuple[int, dict[str, float]] | None = None
        self.description = f"{cfg.method} {cfg.dataset}"
        split = evaluated_split(cfg)  # printed per evaluation without a progress bar
        self.log_metrics = (f"{split}_Recall@20", f"{split}_NDCG@20", "best_epoch")

    # engine hooks ------------------------------------------------------------------------
    def num_train(self) -> int:
        return self.graph.num_train

    def setup(self, fabric: Fabric) -> None:
        if fabric.world_size > 1:
            raise ValueError("the graphrec recipe trains on one device (train.devices=1)")
        self.to(fabric.device)
        self.tracker.load_files()

    def to(self, device: torch.device) -> None:
        """Move the graph tensors (not the model: the engine moves it) to ``device``."""
        self.device = torch.device(device)
        self.adj = self.adj.to(self.device)
        self.adj_csr = self.adj_csr.to(self.device)
        self.views = [v.to(self.device) for v in self.views]
        if self.svd is not None:
            self.svd = tuple(t.to(self.device) for t in self.svd)
        if self.criterion is not None:
            self.criterion.to(self.device)

    def epoch_order(self, generator: torch.Generator, batch: int) -> Tensor:
        """The epoch's training edges (``graphrec.sampler``: a random permutation of all of
        them, or :meth:`uniform_user_edges`); for SGL also the epoch's two edge-dropout views,
        drawn from the same epoch generator (exact on resume)."""
        if self.cfg.sampler == "users":
            order = self.uniform_user_edges(generator)
        else:
            order = torch.randperm(self.num_train(), generator=generator)
        if self.cfg.method == "sgl":
            self.views = [self.edge_dropout_view(generator) for _ in range(2)]
        return order

    def extra_state(self) -> dict[str, Any]:
        """The early-stopping state, saved in every checkpoint (a resumed run tracks the best
        evaluation and stops exactly as an uninterrupted one, even if ``best.json`` is newer)."""
        return self.tracker.state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.tracker.load_state(state)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        pass

    def training_step(self, model: nn.Module, indices: Tensor) -> tuple[Tensor, dict[str, float]]:
        cfg = self.cfg
        users, pos = self.edge_users[indices], self.edge_items[indices]
        neg = self.sampler.sample(users)
        users, pos, neg = (t.to(self.device) for t in (users, pos, neg))
        if cfg.method == "lightgcl":
            return self._lightgcl_step(users, pos, neg)
        if cfg.method == "simgcl":
            users_emb, items_emb = model(self.adj_csr, include_ego=False, symmetric=True)
        else:
            users_emb, items_emb = model(self.adj_csr, symmetric=True)
        bpr = bpr_loss(users_emb, items_emb, users, pos, neg)
        reg = self.model.reg_loss(users, pos, neg)
        loss = bpr + cfg.reg_weight * reg
        logs = {"bpr": bpr.item(), "reg": reg.item()}
        if cfg.method == "lightgcn":
            return loss, logs
        if cfg.method == "sgl":
            if len(self.views) != 2:
                raise RuntimeError("sgl: epoch_order(...) draws the views; it was not called")
            first = model(self.views[0], symmetric=True)
            second = model(self.views[1], symmetric=True)
        else:  # simgcl
            first = model(self.adj_csr, cfg.noise_eps, symmetric=True)
            second = model(self.adj_csr, cfg.noise_eps, symmetric=True)
        cl = self.contrastive(first[0], second[0], users) + self.contrastive(
            first[1], second[1], pos
        )
        logs["cl"] = cl.item()
        return loss + cfg.cl_weight * cl, logs

    # methods -----------------------------------------------------------------------------
    def uniform_user_edges(self, generator: torch.Generator) -> Tensor:
        """``E`` training-edge indices (``E`` = the number of training edges): for each, a user
        drawn uniformly with replacement among the users with a training item, then one of
        that user's training items uniformly (LightGCN-PyTorch's ``UniformSample``, SGL-Torch's
        ``PairwiseSamplerV2``). Every user then weighs the same in an epoch, whatever its
        degree, as in the per-user mean of the metrics."""
        degree, start, active = self._user_edges
        n = self.num_train()
        users = active[torch.randint(len(active), (n,), generator=generator)]
        offset = (torch.rand(n, generator=generator, dtype=torch.float64) * degree[users]).long()
        return start[users] + torch.minimum(offset, degree[users] - 1)

    def edge_dropout_view(self, generator: torch.Generator) -> Tensor:
        """SGL-ED: the normalised adjacency of ``int(E (1 - ρ))`` training edges drawn without
        replacement (SGL-Torch ``create_adj_mat(is_subgraph=True, aug_type='ed')``)."""
        n = self.num_train()
        keep = int(n * (1.0 - self.cfg.edge_dropout))
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.randperm(n, generator=generator)[:keep]] = True
        return to_csr(self.graph.normalized_adjacency(mask)).to(self.device)

    def _anchors(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """The distinct anchor nodes of a batch and their weights in the mean: their share of
        the batch rows (``cl_negatives=all``: repeats count) or ``1 / k`` (``batch``)."""
        distinct, counts = torch.unique(ids, return_counts=True)
        if self.cfg.cl_negatives == "all":
            return distinct, counts.to(torch.float32) / len(ids)
        return distinct, torch.full((len(distinct),), 1.0 / len(distinct), device=ids.device)

    def contrastive(self, a: Tensor, b: Tensor, ids: Tensor) -> Tensor:
        """The library loss between the views ``a`` and ``b`` (``[n, d]`` each, all nodes of one
        kind) for the anchor nodes ``ids`` of a batch: the weighted mean over the anchors, with
        all ``n`` nodes as candidates (``cl_negatives=all``) or the batch's distinct nodes
        (``batch``). See the module docstring."""
        assert self.criterion is not None
        distinct, weights = self._anchors(ids)
        candidates = len(distinct) if self.cfg.cl_negatives == "batch" else a.shape[0]
        if candidates < 2:  # one node: no negative, nothing to contrast
            return a.sum() * 0.0
        with core_backend(self.cfg.core):
            if self.cfg.cl_negatives == "batch":
                values = self.criterion(torch.stack([a[distinct], b[distinct]], dim=1))
            else:
                rest = torch.ones(a.shape[0], dtype=torch.bool, device=a.device)
                rest[distinct] = False
                order = torch.cat([distinct, torch.nonzero(rest).flatten()])
                z = torch.stack([a[order], b[order]], dim=1)
                with local_anchors(0, len(distinct)):
                    values = self.criterion(z)  # [k]: the distinct anchors, in order
        return (values * weights.to(values.dtype)).sum()

    def lightgcl_views(self, dropout: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """LightGCL's main and SVD views ``(E_u, E_i, G_u, G_i)`` (official ``model.py``)::

            E^l = Â E^(l-1)   (bipartite Â; dropout on its values, fresh per layer)
            E   = Σ_{l=0..L} E^l                      (a sum, not a mean; no activation)
            G_u = E_u^0 + Σ_{l=1..L} U_q S_q V_qᵀ E_i^(l-1)
            G_i = E_i^0 + Σ_{l=1..L} V_q S_q U_qᵀ E_u^(l-1)

        with ``U_q S_q V_qᵀ`` the rank-q SVD of the normalised ``[U, I]`` matrix (never
        materialised: ``US (Vᵀ E)``). The SVD view is propagated from the main view's
        ``E^(l-1)``, not from ``G^(l-1)``.
        """
        assert self.svd is not None
        us, vs, u, v = self.svd
        e0 = self.model.ego_embeddings()
        emb, total, earlier = e0, e0, torch.zeros_like(e0)
        for _ in range(self.cfg.layers):
            earlier = earlier + emb  # Σ_{l < current} E^l
            adj = self.adj
            if dropout > 0:
                values = F.dropout(adj.values(), p=dropout)
                adj = torch.sparse_coo_tensor(
                    adj.indices(), values, adj.shape, check_invariants=False
                ).coalesce()
            emb = torch.sparse.mm(adj, emb)
            total = total + emb
        n_users = self.graph.num_users
        e_users, e_items = torch.split(total, [n_users, self.graph.num_items])
        p_users, p_items = torch.split(earlier, [n_users, self.graph.num_items])
        g_users = self.model.user_embedding.weight + us @ (v.T @ p_items)
        g_items = self.model.item_embedding.weight + vs @ (u.T @ p_users)
        return e_users, e_items, g_users, g_items

    def lightgcl_contrastive(self, g: Tensor, e: Tensor, ids: Tensor) -> Tensor:
        """LightGCL's ``L_s`` for one node kind: the library loss plus a positive correction.

        Official (``model.py``, no L2 normalisation, anchors = the batch rows with repeats)::

            L_s = mean_u log(Σ_{v ∈ all} exp(g_u·e_v / τ) + 1e-8) - mean_u clamp(g_u·e_u / τ, ±5)

        Here: ``contrastive(g, e, ids)`` with the config's ``simcse`` (``g`` anchors, all nodes
        of ``e`` as candidates, ``normalize=False``) gives ``mean_u [LSE_v(g_u·e_v/τ) -
        g_u·e_u/τ]``, and the separate positive term ``mean_u [g_u·e_u/τ - clamp(g_u·e_u/τ,
        ±c)]`` turns its unclamped positive into the clamped one: the official loss but for the
        ``+1e-8`` inside the log. With ``info_nce`` (``same_view_negatives=False``) the
        denominator is instead the mean of both directions, ``½ LSE_v(g_u·e_v/τ) +
        ½ LSE_v(e_u·g_v/τ)`` (a different loss; used before the configs switched to ``simcse``).
        """
        assert isinstance(self.criterion, loss_lib.LossModule)
        hyper = self.criterion.current_hyperparameters()
        tau = float(hyper.get("temperature", 1.0))
        distinct, weights = self._anchors(ids)
        ga, ea = g[distinct], e[distinct]
        if hyper.get("normalize", True):
            ga, ea = F.normalize(ga, dim=-1), F.normalize(ea, dim=-1)
        s = (ga * ea).sum(-1) / tau
        c = self.cfg.positive_clamp
        correction = ((s - s.clamp(-c, c)) * weights.to(s.dtype)).sum()
        return self.contrastive(g, e, ids) + correction

    def _lightgcl_step(self, users: Tensor, pos: Tensor, neg: Tensor):
        cfg = self.cfg
        e_users, e_items, g_users, g_items = self.lightgcl_views(cfg.edge_dropout)
        bpr = bpr_loss(e_users, e_items, users, pos, neg)
        items = torch.cat([pos, neg])
        cl = self.lightgcl_contrastive(g_users, e_users, users) + self.lightgcl_contrastive(
            g_items, e_items, items
        )
        reg = sum(p.pow(2).sum() for p in self.model.parameters())
        loss = bpr + cfg.cl_weight * cl + cfg.reg_weight * reg
        return loss, {"bpr": bpr.item(), "cl": cl.item(), "reg": float(reg.detach())}

    # evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def embeddings(self) -> tuple[Tensor, Tensor]:
        """The final user and item embeddings that score ``e_u · e_i`` (no noise, no dropout)."""
        if self.cfg.method == "lightgcl":
            e_users, e_items, _, _ = self.lightgcl_views(0.0)
            return e_users, e_items
        return self.model.propagate(
            self.adj_csr, include_ego=self.cfg.method != "simgcl", symmetric=True
        )

    @torch.no_grad()
    def ranking_metrics(self) -> dict[str, float]:
        """Test (or validation, see :func:`evaluated_split`) Recall@k / NDCG@k (k = 10, 20,
        40): full ranking over all items, each user's training items excluded, means over the
        users with a held-out item."""
        was_training = self.model.training
        self.model.eval()
        try:
            users, items = self.embeddings()
            items_t = items.T.contiguous()
            metrics = recall_ndcg_in_chunks(
                lambda start, stop: (users[start:stop] @ items_t).float(),
                self.graph.test,
                self.exclude,
                KS,
                chunk_size=self.cfg.eval_batch,
            )
        finally:
            self.model.train(was_training)
        split = evaluated_split(self.cfg)
        return {f"{split}_{key}": float(value) for key, value in metrics.items()}

    def evaluate(self, epoch: int, *, final: bool) -> dict[str, Any]:
        if self._last_eval is not None and self._last_eval[0] == epoch:
            metrics = self._last_eval[1]  # the final evaluation right after an early stop
        else:
            metrics = self.ranking_metrics()
            self._last_eval = (epoch, metrics)
        key = f"{evaluated_split(self.cfg)}_{self.cfg.stop_metric}"
        self.tracker.update(metrics[key], epoch, self.model, count=not final, metrics=dict(metrics))
        result: dict[str, Any] = {
            **metrics,
            **{f"best_{k}": v for k, v in self.tracker.best["metrics"].items()},
            "best_epoch": self.tracker.epoch,
        }
        patience = self.cfg.patience
        if not final and patience is not None and self.tracker.since >= patience:
            result["stop"] = True
        return result


# -- the run -----------------------------------------------------------------------------------
def run_graphrec_training(
    config: RunConfig, output: str | Path, *, resume: bool = False, echo: bool = True
) -> dict[str, Any]:
    """Train and evaluate one graph recommender; writes ``summary.json`` and ``results.md``
    (the metrics table) into ``output``; returns the summary."""
    started = time.perf_counter()
    output = Path(output)
    graph = load_graph(config.graphrec)
    task = GraphRecTask(config, graph, output)
    split = evaluated_split(config.graphrec)
    header = {
        "dataset": config.graphrec.dataset,
        "method": config.graphrec.method,
        "evaluated_on": split,
        "data": {
            "users": graph.num_users,
            "items": graph.num_items,
            "train": graph.num_train,
            split: graph.num_test,
        },
    }
    return fit_and_summarize(
        config,
        output,
        task,
        header=header,
        table=metrics_table,
        started=started,
        resume=resume,
        echo=echo,
    )


def evaluate_run(run_dir: str | Path, *, weights: str = "best") -> dict[str, Any]:
    """Re-evaluate a graphrec run folder (``contrastkit eval RUN_DIR``): Recall@k / NDCG@k on
    the run's evaluated split, of its ``best.safetensors`` (``weights="best"``) or of its
    latest checkpoint."""
    task, source = load_run_task(
        run_dir, "graphrec", lambda c, d: GraphRecTask(c, load_graph(c.graphrec), d), weights
    )
    return {**task.ranking_metrics(), "weights": source}


def metrics_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per run, test (or validation) Recall@k / NDCG@k of the final weights,
    the best Recall@20 / NDCG@20 over the evaluations and its epoch, the epochs trained, and
    the split evaluated (``test`` or ``valid``)."""
    names = [f"{m}@{k}" for k in KS for m in ("Recall", "NDCG")]
    lines = [
        "| dataset | method | "
        + " | ".join(names)
        + " | best Recall@20 / NDCG@20 | best epoch | epochs | split |",
        "|---" * (len(names) + 6) + "|",
    ]
    nan = float("nan")
    for r in rows:
        split = r.get("evaluated_on", "test")
        cells = [f"{r.get(f'{split}_{n}', nan):.4f}" for n in names]
        best = (
            f"{r.get(f'best_{split}_Recall@20', nan):.4f} / "
            f"{r.get(f'best_{split}_NDCG@20', nan):.4f}"
        )
        lines.append(
            f"| {r['dataset']} | {r['method']} | "
            + " | ".join(cells)
            + f" | {best} | {r.get('best_epoch', '—')} | {r.get('epochs_trained', '—')}"
            + f" | {split} |"
        )
    return "\n".join(lines)
