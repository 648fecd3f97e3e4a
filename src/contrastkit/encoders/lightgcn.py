"""LightGCN: linear propagation of user / item embeddings on the normalised interaction graph.

He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation",
SIGIR 2020 (reference code ``gusye1234/LightGCN-PyTorch``, ``model.py``); the backbone of SGL,
SimGCL and LightGCL. With ``E^(0) = [E_user; E_item]`` (``[U + I, d]``, the only parameters)
and ``Â = D^-1/2 A D^-1/2`` of the bipartite graph ``A = [[0, R], [Rᵀ, 0]]`` (see
:meth:`contrastkit.data.graphs.InteractionGraph.normalized_adjacency`)::

    E^(l+1) = Â E^(l)                          l = 0..L-1 (no weights, no activation)
    E       = mean(E^(0), E^(1), ..., E^(L))   (LightGCN: alpha_l = 1 / (L + 1))
    score(u, i) = e_u · e_i

SimGCL (Yu et al., SIGIR 2022; reference ``Coder-Yu/SELFRec``, ``SimGCL.py``): with
``noise_eps`` set, after each propagation step the embeddings get a random sign-aligned
perturbation (:meth:`LightGCN.perturb`) and the *perturbed* embeddings are propagated further::

    E^(l+1) = Â E^(l) ;  E^(l+1) <- E^(l+1) + eps · sign(E^(l+1)) ⊙ normalize(U(0, 1))  (rows)
    E       = mean(E^(1), ..., E^(L))           (SimGCL leaves E^(0) out of the mean)

SimGCL also leaves ``E^(0)`` out of its unperturbed (recommendation) pass: use
``propagate(adj, include_ego=False)`` for that one. SGL's graph views are plain
:meth:`LightGCN.propagate` calls on an edge-dropped adjacency
(``normalized_adjacency(edge_mask)``).

Initialisation: ``init="normal"`` (default) draws ``N(0, init_std²)`` with ``init_std=0.1``, as
``LightGCN-PyTorch`` does (its comment: normal init suits a model without non-linearity);
``init="xavier"`` is ``xavier_uniform_`` (the TensorFlow LightGCN, SGL, SELFRec's SimGCL and
LightGCL).

Losses: :func:`bpr_loss` ``= mean(-log σ(s_pos - s_neg))`` on the propagated embeddings, and
:func:`ego_l2_loss` ``= ½ (‖e⁰_u‖² + ‖e⁰_p‖² + ‖e⁰_n‖²) / B`` on the batch's *ego*
(layer-0) embeddings, which LightGCN multiplies by its ``decay`` (1e-4) and adds.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LightGCN", "bpr_loss", "ego_l2_loss", "symmetric_sparse_matmul", "to_csr"]

_SPARSE = (torch.sparse_coo, torch.sparse_csr)


class _SymmetricSparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adjacency: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:  # type: ignore[override]
        return None, torch.sparse.mm(ctx.adjacency, grad)


def symmetric_sparse_matmul(adjacency: Tensor, x: Tensor) -> Tensor:
    """``Â x`` for a **symmetric** sparse ``Â`` (``[n, n]``) and dense ``x`` (``[n, d]``), with
    the backward ``∂L/∂x = Â ∂L/∂y`` computed with ``Â`` itself instead of ``Âᵀ``.

    ``torch.sparse.mm``'s backward transposes the sparse matrix on every call; for LightGCN's
    normalised adjacency (symmetric by construction) that transpose is wasted. With a CSR
    ``Â`` (:func:`to_csr`) forward + backward of 3 Gowalla layers took 0.6 s against 1.9 s for
    ``torch.sparse.mm`` on the COO matrix (one CPU thread). No gradient flows to ``Â``; the
    result is wrong for a non-symmetric matrix (not checked here: the check costs a transpose).
    """
    return _SymmetricSparseMatmul.apply(adjacency, x)


def to_csr(adjacency: Tensor) -> Tensor:
    """A sparse COO (or CSR) matrix as CSR (without the beta-feature warning)."""
    import warnings

    if adjacency.layout == torch.sparse_csr:
        return adjacency
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return adjacency.to_sparse_csr()


class LightGCN(nn.Module):
    """User and item embedding tables propagated linearly on a normalised graph.

    Args:
        num_users / num_items: ``U`` / ``I`` (>= 1).
        dim: embedding size ``d`` (64 in LightGCN, SGL, SimGCL, LightGCL).
        layers: propagation steps ``L`` (>= 0; LightGCN's Gowalla setting is 3).
        init_std: standard deviation of the ``"normal"`` initialisation.
        init: ``"normal"`` (LightGCN-PyTorch) or ``"xavier"`` (xavier-uniform).

    Attributes:
        user_embedding / item_embedding: ``nn.Embedding`` ``[U, d]`` / ``[I, d]`` (``E^(0)``).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        layers: int = 3,
        init_std: float = 0.1,
        init: Literal["normal", "xavier"] = "normal",
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("num_users", num_users, 1),
            ("num_items", num_items, 1),
            ("dim", dim, 1),
            ("layers", layers, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"LightGCN: {name} must be an int >= {low}; got {value!r}")
        if init not in ("normal", "xavier"):
            raise ValueError(f"LightGCN: init must be 'normal' or 'xavier'; got {init!r}")
        if not init_std > 0:
            raise ValueError(f"LightGCN: init_std must be > 0; got {init_std}")
        self.num_users, self.num_items, self.dim, self.layers = num_users, num_items, dim, layers
        self.user_embedding = nn.Embedding(num_users, dim)
        self.item_embedding = nn.Embedding(num_items, dim)
        for table in (self.user_embedding, self.item_embedding):
            if init == "normal":
                nn.init.normal_(table.weight, std=init_std)
            else:
                nn.init.xavier_uniform_(table.weight)

    def ego_embeddings(self) -> Tensor:
        """``E^(0) = [E_user; E_item]``, ``[U + I, d]``."""
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight])

    @staticmethod
    def perturb(embeddings: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
        """SimGCL's noise: ``E + eps · sign(E) ⊙ normalize(U(0, 1))`` (row-wise L2 normalise).

        Each row's noise has L2 norm ``eps`` (less where ``E`` has exact zeros, whose noise is
        0) and the sign of ``E`` entry-wise, so it stays in ``E``'s orthant. ``generator``
        seeds the uniform draw (on the embeddings' device).
        """
        noise = torch.rand(
            embeddings.shape,
            generator=generator,
            device=embeddings.device,
            dtype=embeddings.dtype,
        )
        return embeddings + eps * torch.sign(embeddings) * F.normalize(noise, dim=-1)

    def propagate(
        self,
        adjacency: Tensor,
        noise_eps: float | None = None,
        *,
        include_ego: bool | None = None,
        generator: torch.Generator | None = None,
        symmetric: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Final user and item embeddings, ``([U, d], [I, d])``.

        Args:
            adjacency: ``Â``, ``[U + I, U + I]``: torch sparse COO / CSR (``torch.sparse.mm``)
                or dense, same dtype and device as the embeddings.
            noise_eps: ``None`` (LightGCN) or SimGCL's ``eps`` (>= 0): perturb every layer's
                output with :meth:`perturb` before propagating it further.
            include_ego: average ``E^(0)`` with the layer outputs. Default: True without noise
                (LightGCN), False with noise (SimGCL). Must be True when ``layers == 0``.
            generator: seeds SimGCL's noise.
            symmetric: the (sparse) adjacency is symmetric, as every normalised adjacency of
                :class:`~contrastkit.data.graphs.InteractionGraph` is: propagate with
                :func:`symmetric_sparse_matmul` (same values, no transpose in backward).
        """
        n = self.num_users + self.num_items
        if not isinstance(adjacency, Tensor) or tuple(adjacency.shape) != (n, n):
            shape = tuple(adjacency.shape) if isinstance(adjacency, Tensor) else adjacency
            raise ValueError(f"LightGCN.propagate: adjacency must be [{n}, {n}]; got {shape}")
        if noise_eps is not None and not noise_eps >= 0:
            raise ValueError(f"LightGCN.propagate: noise_eps must be >= 0; got {noise_eps}")
        if include_ego is None:
            include_ego = noise_eps is None
        if not include_ego and self.layers == 0:
            raise ValueError("LightGCN.propagate: include_ego=False needs layers >= 1")
        emb = self.ego_embeddings()
        total = emb if include_ego else torch.zeros_like(emb)
        sparse = adjacency.layout in _SPARSE
        for _ in range(self.layers):
            if not sparse:
                emb = adjacency @ emb
            elif symmetric:
                emb = symmetric_sparse_matmul(adjacency, emb)
            else:
                emb = torch.sparse.mm(adjacency, emb)
            if noise_eps is not None:
                emb = self.perturb(emb, noise_eps, generator)
            total = total + emb
        final = total / (self.layers + 1 if include_ego else self.layers)
        users, items = torch.split(final, [self.num_users, self.num_items])
        return users, items

    def forward(
        self,
        adjacency: Tensor,
        noise_eps: float | None = None,
        *,
        include_ego: bool | None = None,
        generator: torch.Generator | None = None,
        symmetric: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Same as :meth:`propagate`."""
        return self.propagate(
            adjacency, noise_eps, include_ego=include_ego, generator=generator, symmetric=symmetric
        )

    def reg_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """:func:`ego_l2_loss` on this model's ego tables (LightGCN's ``reg_loss``)."""
        return ego_l2_loss(self.user_embedding.weight, self.item_embedding.weight, users, pos, neg)


def _check_batch(u: Tensor, pos: Tensor, neg: Tensor, where: str) -> None:
    for name, t in (("u", u), ("pos", pos), ("neg", neg)):
        if not isinstance(t, Tensor) or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"{where}: {name} must be an integer tensor")
    if u.dim() != 1 or pos.shape != u.shape or neg.dim() not in (1, 2) or neg.shape[0] != len(u):
        raise ValueError(
            f"{where}: u and pos must be [B] and neg [B] or [B, K]; got u {list(u.shape)}, "
            f"pos {list(pos.shape)}, neg {list(neg.shape)}"
        )
    if len(u) == 0:
        raise ValueError(f"{where}: empty batch")


def bpr_loss(users_emb: Tensor, items_emb: Tensor, u: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Bayesian personalised ranking: ``mean(-log σ(e_u·e_pos - e_u·e_neg))``.

    Args:
        users_emb / items_emb: ``[U, d]`` / ``[I, d]`` (e.g. :meth:`LightGCN.propagate`).
        u, pos: integer ``[B]`` (user, positive item); neg: integer ``[B]`` or ``[B, K]``
            (``K`` negatives per pair: the mean runs over all ``B·K`` triples).

    Computed as ``-logsigmoid(diff)`` (equal to LightGCN's ``softplus(s_neg - s_pos)``): finite
    for any finite scores.
    """
    _check_batch(u, pos, neg, "bpr_loss")
    e_u = users_emb[u]
    s_pos = (e_u * items_emb[pos]).sum(-1)
    if neg.dim() == 1:
        s_neg = (e_u * items_emb[neg]).sum(-1)
        diff = s_pos - s_neg
    else:
        s_neg = torch.einsum("bd,bkd->bk", e_u, items_emb[neg])
        diff = s_pos[:, None] - s_neg
    return -F.logsigmoid(diff).mean()


def ego_l2_loss(user_ego: Tensor, item_ego: Tensor, u: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """LightGCN's batch L2 term ``½ (‖E⁰_u[u]‖² + ‖E⁰_i[pos]‖² + ‖E⁰_i[neg]‖²) / B``.

    ``user_ego`` / ``item_ego`` are the layer-0 tables ``[U, d]`` / ``[I, d]`` (not the
    propagated embeddings); the squared Frobenius norms sum over the batch rows (all ``B·K``
    negatives when ``neg`` is ``[B, K]``), divided by ``B = len(u)``.
    """
    _check_batch(u, pos, neg, "ego_l2_loss")
    total = user_ego[u].pow(2).sum() + item_ego[pos].pow(2).sum() + item_ego[neg].pow(2).sum()
    return 0.5 * total / len(u)
