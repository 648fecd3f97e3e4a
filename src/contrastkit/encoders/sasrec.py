"""SASRec: a causal self-attention encoder for item sequences (sequential recommendation).

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018; the layer layout follows
RecBole's ``SASRec`` / ``TransformerEncoder`` (``RUCAIBox/RecBole``), the backbone of CL4SRec,
DuoRec, ICLRec, MCLRec and SRA-CL. Layout (``d = hidden``)::

    x_t   = E_item[s_t] + P[pos_t]                                  [B, L, d]
    x     = Dropout(LayerNorm(x))
    repeat ``layers`` times (post-LN blocks):
        a = Dropout(W_o · MHA(x; causal + key-padding mask, attention dropout))
        x = LayerNorm(x + a)
        f = Dropout(W_2 · gelu(W_1 x + b_1) + b_2)                  (d -> inner -> d)
        x = LayerNorm(x + f)
    h     = x[:, L-1]                                               [B, d]
    score = h · E_item[1:]^T                                        [B, num_items]

Conventions: item ids are ``1..num_items``, ``0`` is padding; sequences are LEFT padded
LongTensors ``[B, L]`` with the most recent item at column ``L-1``, and the sequence
representation is the hidden state at column ``L-1``. Position embeddings are aligned to the
end: column ``c`` of an ``L``-column input gets position ``max_len - L + c`` (so with
``L == max_len`` the position index is the column index, and the last item always has position
``max_len - 1`` as in SASRec / SRA-CL). Hence extra left padding does not change the output.

Attention mask: query ``t`` may attend to key ``j`` iff ``j <= t`` and ``s_j != 0``. Padding
queries (left of the first item) have no admissible key; their attention weights are set to 0
(RecBole's additive ``-10000`` mask instead spreads them uniformly over all keys, future ones
included) so no NaN appears and no position ever sees the future. A padding query's output is
never used by a real query, because padding keys are masked. Items masked to id 0 by a
data augmentation (MCLRec, ICLRec) are treated exactly like padding: they are not attended to.

Defaults are the MCLRec / RecBole config for Amazon Beauty (``MCLRec.yaml`` + ``seq.yaml``):
2 layers, 2 heads, ``hidden=64``, ``inner=256``, dropout 0.5 (hidden and attention), LayerNorm
eps ``1e-12``, weights ``N(0, 0.02)``, ``max_len=50``. With ``num_items=12101`` (Beauty 5-core)
the model has 877,824 parameters: item embedding 774,528 (``12102 x 64``), positions 3,200,
embedding LayerNorm 128 and 49,984 per block.

Dropout is :class:`~contrastkit.encoders.dropout.FastDropout` (the same distribution as
``nn.Dropout``, its mask drawn 4x faster on the CPU).

``rec_loss`` is the full-softmax cross-entropy of the next item,
``CE(h E_item[1:]^T, target - 1)``, as in MCLRec (``loss_type: CE``) and SRA-CL.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.encoders.dropout import FastDropout


class _SelfAttention(nn.Module):
    """Multi-head self-attention + residual + LayerNorm (RecBole ``MultiHeadAttention``)."""

    def __init__(
        self, hidden: int, heads: int, dropout: float, attn_dropout: float, eps: float
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = FastDropout(attn_dropout)
        self.out_dropout = FastDropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def _split(self, x: Tensor) -> Tensor:
        b, length, _ = x.shape
        return x.view(b, length, self.heads, self.head_dim).transpose(1, 2)  # [B, H, L, dh]

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        # allowed: [B, 1, L, L] bool, True where query t may attend to key j
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [B, H, L, L]
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        # rows without any admissible key come out uniform here; zero them (no NaN, no leak)
        probs = torch.softmax(scores, dim=-1).masked_fill(~allowed, 0.0)
        context = self.attn_dropout(probs) @ v  # [B, H, L, dh]
        context = context.transpose(1, 2).reshape(x.shape)
        return self.norm(x + self.out_dropout(self.out(context)))


class _FeedForward(nn.Module):
    """Point-wise FFN ``d -> inner -> d`` with gelu + residual + LayerNorm (RecBole)."""

    def __init__(self, hidden: int, inner: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.dropout = FastDropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.dropout(self.fc2(F.gelu(self.fc1(x)))))


class _Block(nn.Module):
    def __init__(
        self, hidden: int, heads: int, inner: int, dropout: float, attn_dropout: float, eps: float
    ) -> None:
        super().__init__()
        self.attention = _SelfAttention(hidden, heads, dropout, attn_dropout, eps)
        self.feed_forward = _FeedForward(hidden, inner, dropout, eps)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        return self.feed_forward(self.attention(x, allowed))


class SASRec(nn.Module):
    """Causal Transformer over left-padded item sequences (see the module docstring).

    Args:
        num_items: number of items ``n``; ids are ``1..n`` and ``0`` is padding, so the item
            embedding has ``n + 1`` rows (row 0 is zero and receives no gradient).
        max_len: longest accepted sequence (number of learned positions), default 50.
        hidden: model width ``d`` (default 64).
        layers: number of Transformer blocks (default 2).
        heads: attention heads; must divide ``hidden`` (default 2).
        inner: hidden width of the point-wise feed-forward network (default 256).
        dropout: dropout after the embedding LayerNorm, the attention output and the FFN
            output (default 0.5; MCLRec uses 0.1 on ML-1M).
        attn_dropout: dropout on the attention probabilities (default 0.5).
        layer_norm_eps: eps of every LayerNorm (default ``1e-12``).
        init_std: std of the ``N(0, init_std)`` init of Linear and Embedding weights
            (default 0.02); biases 0, LayerNorm weight 1 and bias 0.

    Shapes: ``forward(seq [B, L]) -> [B, hidden]`` (state at column ``L-1``),
    ``encode_all(seq) -> [B, L, hidden]``, ``item_scores(h [B, hidden]) -> [B, num_items]``
    (column ``c`` is item ``c + 1``), ``rec_loss(h, targets [B]) -> scalar``.
    ``1 <= L <= max_len``; ids must lie in ``0..num_items``.
    """

    def __init__(
        self,
        num_items: int,
        *,
        max_len: int = 50,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        inner: int = 256,
        dropout: float = 0.5,
        attn_dropout: float = 0.5,
        layer_norm_eps: float = 1e-12,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1; got {num_items}")
        if max_len < 1 or hidden < 1 or layers < 0 or heads < 1 or inner < 1:
            raise ValueError(
                "max_len, hidden, heads and inner must be >= 1 and layers >= 0; got "
                f"max_len={max_len}, hidden={hidden}, layers={layers}, heads={heads}, "
                f"inner={inner}"
            )
        if hidden % heads != 0:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        for name, p in (("dropout", dropout), ("attn_dropout", attn_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {p}")
        if init_std <= 0:
            raise ValueError(f"init_std must be > 0; got {init_std}")
        self.num_items = num_items
        self.max_len = max_len
        self.hidden = hidden
        self.feature_dim = hidden
        self.init_std = init_std

        self.item_emb = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.emb_dropout = FastDropout(dropout)
        self.blocks = nn.ModuleList(
            _Block(hidden, heads, inner, dropout, attn_dropout, layer_norm_eps)
            for _ in range(layers)
        )
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.init_std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _check_seq(self, seq: Tensor) -> Tensor:
        if not isinstance(seq, Tensor):
            raise TypeError(f"seq must be a LongTensor [B, L]; got {type(seq).__name__}")
        if seq.dtype.is_floating_point or seq.dtype.is_complex or seq.dtype == torch.bool:
            raise TypeError(f"seq must hold integer item ids [B, L]; got dtype {seq.dtype}")
        if seq.dim() != 2 or seq.shape[0] < 1 or seq.shape[1] < 1:
            raise ValueError(f"seq must have shape [B, L] with B, L >= 1; got {tuple(seq.shape)}")
        if seq.shape[1] > self.max_len:
            raise ValueError(
                f"seq has L={seq.shape[1]} columns, more than max_len={self.max_len}; "
                "keep the most recent max_len items"
            )
        low, high = int(seq.min()), int(seq.max())
        if low < 0 or high > self.num_items:
            raise ValueError(
                f"seq ids must lie in 0..{self.num_items} (0 = padding); got min {low}, max {high}"
            )
        return seq.long()

    def encode_all(self, seq: Tensor) -> Tensor:
        """Hidden states at every column: ``[B, L]`` item ids -> ``[B, L, hidden]``.

        Column ``t`` depends only on columns ``<= t`` (causal). Padding columns (id 0) get
        finite but meaningless states."""
        seq = self._check_seq(seq)
        length = seq.shape[1]
        positions = torch.arange(self.max_len - length, self.max_len, device=seq.device)
        x = self.item_emb(seq) + self.pos_emb(positions)[None]
        x = self.emb_dropout(self.emb_norm(x))
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        allowed = (causal[None] & (seq > 0)[:, None, :])[:, None]  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, allowed)
        return x

    def forward(self, seq: Tensor) -> Tensor:
        """Sequence representation ``[B, hidden]``: the hidden state at column ``L-1``."""
        return self.encode_all(seq)[:, -1]

    def item_scores(self, h: Tensor) -> Tensor:
        """Dot-product scores of every item, ``h @ E_item[1:].T``: ``[B, hidden] -> [B, n]``.

        Column ``c`` scores item ``c + 1`` (padding is never scored)."""
        if not isinstance(h, Tensor) or h.dim() != 2 or h.shape[1] != self.hidden:
            raise ValueError(
                f"h must have shape [B, {self.hidden}]; got {tuple(getattr(h, 'shape', ()))}"
            )
        return h @ self.item_emb.weight[1:].T

    def rec_loss(self, h: Tensor, targets: Tensor) -> Tensor:
        """Full-softmax next-item cross-entropy, mean over the batch.

        ``L = mean_b [ -log softmax(h_b E_item[1:]^T)[targets_b - 1] ]``; ``h`` ``[B, hidden]``,
        ``targets`` ``[B]`` item ids in ``1..num_items``."""
        self._check_item_ids("targets", targets, h)
        return F.cross_entropy(self.item_scores(h), targets.long() - 1)

    def bce_loss(self, h: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
        """SASRec's objective (Kang & McAuley 2018): binary cross-entropy of the target against
        one sampled negative item per row, mean over the batch. (The original applies it at
        every position of a sequence in one pass; with one row per prefix, as here, the rows
        are the same examples.)

        ``L = mean_b [ -log σ(h_b·e_{t_b}) - log(1 - σ(h_b·e_{n_b})) ]
        = mean_b [ softplus(-h_b·e_{t_b}) + softplus(h_b·e_{n_b}) ]`` (softplus: stable for
        any score); ``h`` ``[B, hidden]``, ``targets`` and ``negatives`` ``[B]`` item ids in
        ``1..num_items``. The weaker baseline loss of the S3-Rec / CoSeRec / ICLRec code
        lines; :meth:`rec_loss` (full softmax) is the default of every recipe."""
        self._check_item_ids("targets", targets, h)
        self._check_item_ids("negatives", negatives, h)
        positive = (h * self.item_emb(targets)).sum(-1)
        negative = (h * self.item_emb(negatives)).sum(-1)
        return (F.softplus(-positive) + F.softplus(negative)).mean()

    def _check_item_ids(self, name: str, ids: Tensor, h: Tensor) -> None:
        """``ids`` must be a LongTensor ``[B]`` of item ids in ``1..num_items``, ``B`` the rows
        of ``h [B, hidden]``."""
        if not isinstance(ids, Tensor) or ids.dtype.is_floating_point:
            raise TypeError(f"{name} must be a LongTensor [B] of item ids")
        if ids.dim() != 1 or h.dim() != 2 or ids.shape[0] != h.shape[0]:
            raise ValueError(
                f"{name} must have shape [B] matching h [B, {self.hidden}]; got "
                f"{tuple(ids.shape)} and {tuple(h.shape)}"
            )
        if ids.numel() and (int(ids.min()) < 1 or int(ids.max()) > self.num_items):
            raise ValueError(
                f"{name} must be item ids in 1..{self.num_items}; got min "
                f"{int(ids.min())}, max {int(ids.max())}"
            )
