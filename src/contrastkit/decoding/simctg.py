"""SimCTG: the token-level contrastive objective of Su et al., "A Contrastive Framework for
Neural Text Generation" (NeurIPS 2022; official code ``yxuansu/SimCTG``).

For last-layer hidden states ``h [B, T, d]`` and a validity mask ``m [B, T]`` (padding is
excluded on both axes of the similarity matrix)::

    ĥ = h / ||h||,   S = ĥ ĥᵀ  [B, T, T]           (cosine similarities)
    L_cl = Σ_{b, i ≠ j, m_bi = m_bj = 1} relu(ρ − (S_bii − S_bij))
           / #{(b, i, j): i ≠ j, m_bi = m_bj = 1}

``S_bii = 1`` for a non-zero ``h_bi``, so each term is ``relu(ρ − 1 + S_bij)``. The margin
``ρ`` defaults to 0.5 (the paper's value); ``ρ = 0`` makes every term ``relu(S_bij − 1) = 0``,
i.e. pure MLE. The language-model objective is ``L = L_MLE + L_cl`` (weights 1:1).
Normalisation and the similarity matrix are computed in at least float32 (bf16/fp16 inputs are
upcast; float64 stays float64), the loss is returned in that dtype.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["simctg_lm_loss", "simctg_loss"]


def _check_margin(margin: object, fn: str) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise TypeError(f"{fn}: margin must be a float >= 0; got {margin!r}")
    if not margin >= 0.0:
        raise ValueError(f"{fn}: margin must be a float >= 0; got {margin}")
    return float(margin)


def simctg_loss(hidden: Tensor, mask: Tensor | None = None, margin: float = 0.5) -> Tensor:
    """SimCTG contrastive loss ``L_cl`` (formula in the module docstring).

    Args:
        hidden: ``[B, T, d]`` floating-point last-layer token states.
        mask: ``[B, T]`` bool or 0/1 validity mask (``None``: every position valid).
        margin: ``ρ >= 0`` (default 0.5).

    Returns:
        Scalar tensor (dtype ``promote_types(hidden.dtype, float32)``); 0 (still attached to
        ``hidden``'s graph) when no sequence has two valid positions.
    """
    fn = "simctg_loss"
    if not isinstance(hidden, Tensor):
        raise TypeError(
            f"{fn}: hidden must be a torch.Tensor [B, T, d]; got {type(hidden).__name__}"
        )
    if hidden.dim() != 3:
        raise ValueError(f"{fn}: hidden must have shape [B, T, d]; got {tuple(hidden.shape)}")
    if not hidden.is_floating_point():
        raise TypeError(f"{fn}: hidden must be floating point; got dtype {hidden.dtype}")
    rho = _check_margin(margin, fn)
    B, T, _ = hidden.shape
    if mask is None:
        valid = torch.ones(B, T, dtype=torch.bool, device=hidden.device)
    else:
        if not isinstance(mask, Tensor):
            raise TypeError(
                f"{fn}: mask must be a torch.Tensor [B, T] or None; got {type(mask).__name__}"
            )
        if tuple(mask.shape) != (B, T):
            raise ValueError(
                f"{fn}: mask must have shape [B, T] = {(B, T)} matching hidden [B, T, d] = "
                f"{tuple(hidden.shape)}; got {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError(f"{fn}: mask must be bool or hold only 0 and 1")
        valid = mask.to(device=hidden.device, dtype=torch.bool)

    dtype = torch.promote_types(hidden.dtype, torch.float32)
    h = F.normalize(hidden.to(dtype), dim=-1)
    S = h @ h.transpose(1, 2)  # [B, T, T]
    diag = torch.diagonal(S, dim1=1, dim2=2)  # [B, T]
    terms = F.relu(rho - (diag[:, :, None] - S))
    pair = valid[:, :, None] & valid[:, None, :]
    pair &= ~torch.eye(T, dtype=torch.bool, device=hidden.device)
    count = int(pair.sum())
    total = torch.where(pair, terms, terms.new_zeros(())).sum()
    return total / max(count, 1)


def simctg_lm_loss(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    margin: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """SimCTG training objective ``L = L_MLE + L_cl`` for a Hugging Face causal LM.

    ``L_MLE`` is the mean next-token cross-entropy over the valid targets (``x_{t+1}`` with
    both ``t`` and ``t+1`` valid); ``L_cl`` is :func:`simctg_loss` of the model's last-layer
    hidden states with ``attention_mask`` as the validity mask. Position ids are
    ``cumsum(attention_mask) − 1`` (correct for left and right padding). Logits are upcast to
    float32 for the cross-entropy.

    Args:
        model: called as ``model(input_ids=, attention_mask=, position_ids=,
            output_hidden_states=True, use_cache=False)``, returning ``.logits [B, T, V]`` and
            ``.hidden_states`` (the last entry is used).
        input_ids: ``[B, T]`` int64 token ids, ``T >= 2``.
        attention_mask: ``[B, T]`` 0/1 (``None``: no padding).
        margin: ``ρ`` (default 0.5); 0 gives ``L_cl = 0``, i.e. plain MLE.

    Returns:
        ``(total, mle, cl)`` scalar tensors.
    """
    fn = "simctg_lm_loss"
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.shape[1] < 2:
        shape = (
            tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
        )
        raise ValueError(
            f"{fn}: input_ids must be a tensor of shape [B, T] with T >= 2; got {shape}"
        )
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != input_ids.shape:
        shape = (
            tuple(attention_mask.shape)
            if isinstance(attention_mask, Tensor)
            else type(attention_mask).__name__
        )
        raise ValueError(
            f"{fn}: attention_mask must have the shape of input_ids [B, T] = "
            f"{tuple(input_ids.shape)}; got {shape}"
        )
    _check_margin(margin, fn)
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    result = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        output_hidden_states=True,
        use_cache=False,
    )
    logits = result.logits[:, :-1].float()
    targets = input_ids[:, 1:]
    pair_valid = (mask[:, :-1] * mask[:, 1:]).bool()
    if not bool(pair_valid.any()):
        raise ValueError(f"{fn}: no valid next-token target (attention_mask too sparse)")
    mle = F.cross_entropy(logits[pair_valid], targets[pair_valid])
    cl = simctg_loss(result.hidden_states[-1], mask.bool(), margin)
    return mle + cl, mle, cl
