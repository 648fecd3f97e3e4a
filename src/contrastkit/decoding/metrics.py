"""Evaluation of open-ended generation as in SimCTG (Su et al., NeurIPS 2022) and "Contrastive
Search Is What You Need" (Su & Collier, TMLR 2023): repetition, diversity, a coherence proxy
and the isotropy of a model's token representations.

Texts are token lists (sequences of ints, e.g. a generated continuation without its prompt).

* ``rep-n = 100 · (1 − |unique n-grams| / |n-grams|)`` with the n-grams of a text being its
  ``len − n + 1`` contiguous windows. ``reduction="mean"`` (default) computes it per text and
  averages over the texts that have at least one n-gram; ``reduction="pooled"`` sums unique
  and total counts over the texts first, as SimCTG's ``measure_repetition_and_diversity``
  (``simctg/evaluation.py``) does. Differences from that script: it splits decoded text on
  whitespace, we count model tokens; and its loop ``while end_idx < len(tokens)`` skips each
  text's last n-gram, we do not. For texts of equal length both reductions agree.
* ``diversity = Π_{n=2..4} (1 − rep-n / 100)``.
* coherence proxy: mean over texts of the mean next-token log-likelihood
  ``(1/|c|) Σ_t log p(c_t | prompt, c_<t)`` of the continuation ``c`` under a scoring model
  (the paper uses OPT-2.7B; here any causal LM the caller passes).
* isotropy (SimCTG §6 / Fig. 2, pooled form): ``1 − Σ_texts Σ_{i≠j} cos(h_i, h_j) /
  Σ_texts T(T − 1)`` over the last-layer token states ``h`` of each text. 0 when all
  states of a text point the same way, 1 when they are mutually orthogonal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "coherence",
    "diversity",
    "isotropy",
    "isotropy_from_hidden",
    "rep_n",
    "repetition_and_diversity",
]


def _token_lists(texts: object, fn: str, pad_token_id: int | None = None) -> list[list[int]]:
    if isinstance(texts, Tensor):
        if texts.dim() != 2:
            raise ValueError(
                f"{fn}: texts as a tensor must have shape [N, T]; got {tuple(texts.shape)}"
            )
        return _strip_padding(texts.tolist(), pad_token_id)
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise TypeError(
            f"{fn}: texts must be a sequence of token lists; got {type(texts).__name__}"
        )
    out = []
    for i, text in enumerate(texts):
        if isinstance(text, Tensor):
            text = text.tolist()
        if isinstance(text, (str, bytes)) or not isinstance(text, Sequence):
            raise TypeError(
                f"{fn}: texts[{i}] must be a sequence of token ids; got {type(text).__name__}"
            )
        out.append(list(text))
    if not out:
        raise ValueError(f"{fn}: texts must hold at least one token list")
    return _strip_padding(out, pad_token_id)


def _strip_padding(texts: list[list[int]], pad_token_id: int | None) -> list[list[int]]:
    """Drop each text's trailing ``pad_token_id`` tokens (the decoders pad rows that stopped at
    eos), so that padding is not counted as repetition."""
    if pad_token_id is None:
        return texts
    out = []
    for text in texts:
        end = len(text)
        while end > 0 and text[end - 1] == pad_token_id:
            end -= 1
        out.append(text[:end])
    return out


def _counts(text: Sequence[int], n: int) -> tuple[int, int]:
    grams = [tuple(text[i : i + n]) for i in range(len(text) - n + 1)]
    return len(set(grams)), len(grams)


def rep_n(
    texts: Sequence[Sequence[int]] | Tensor,
    n: int,
    *,
    reduction: Literal["mean", "pooled"] = "mean",
    pad_token_id: int | None = None,
) -> float:
    """``rep-n`` in percent (definition and reductions in the module docstring).

    Args:
        texts: ``N`` token lists (or an ``[N, T]`` tensor).
        n: n-gram order, >= 1.
        reduction: ``"mean"`` over texts (default) or ``"pooled"`` counts (SimCTG's script).
        pad_token_id: if given, each text's trailing tokens equal to it are dropped first (the
            padding the decoders put after ``eos``).

    Example: ``[1, 2, 1, 2, 1, 2]`` has five 2-grams, two unique: rep-2 = 100·(1 − 2/5) = 60.
    """
    fn = "rep_n"
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{fn}: n must be an int >= 1; got {n!r}")
    if reduction not in ("mean", "pooled"):
        raise ValueError(f"{fn}: reduction must be 'mean' or 'pooled'; got {reduction!r}")
    counts = [_counts(t, n) for t in _token_lists(texts, fn, pad_token_id)]
    counts = [(u, t) for u, t in counts if t > 0]
    if not counts:
        raise ValueError(f"{fn}: no text in texts has {n} or more tokens")
    if reduction == "pooled":
        return 100.0 * (1.0 - sum(u for u, _ in counts) / sum(t for _, t in counts))
    return 100.0 * sum(1.0 - u / t for u, t in counts) / len(counts)


def diversity(rep2: float, rep3: float, rep4: float) -> float:
    """``Π_{n=2..4} (1 − rep-n / 100)`` from rep-n values in percent (in [0, 1])."""
    return (1.0 - rep2 / 100.0) * (1.0 - rep3 / 100.0) * (1.0 - rep4 / 100.0)


def repetition_and_diversity(
    texts: Sequence[Sequence[int]] | Tensor,
    *,
    reduction: Literal["mean", "pooled"] = "mean",
    pad_token_id: int | None = None,
) -> dict[str, float]:
    """``{"rep-2", "rep-3", "rep-4", "diversity"}`` of ``texts`` (see :func:`rep_n`)."""
    reps = {
        f"rep-{n}": rep_n(texts, n, reduction=reduction, pad_token_id=pad_token_id)
        for n in (2, 3, 4)
    }
    reps["diversity"] = diversity(reps["rep-2"], reps["rep-3"], reps["rep-4"])
    return reps


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _right_padded(seqs: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def coherence(
    model: Any,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]] | Tensor,
    *,
    batch_size: int = 64,
) -> float:
    """Coherence proxy: mean over texts of ``(1/|c|) Σ_t log p_model(c_t | prompt, c_<t)``.

    Args:
        model: scoring causal LM (Hugging Face style; called with ``input_ids``,
            ``attention_mask``, ``use_cache=False``; put it in eval mode first).
        prompts: ``N`` non-empty prompt token lists.
        continuations: ``N`` non-empty continuation token lists (or ``[N, T]``).
        batch_size: texts per forward (>= 1).

    Returns:
        A float <= 0 (nats per token; higher is more likely under ``model``).
    """
    fn = "coherence"
    prompts_ = _token_lists(prompts, fn)
    conts = _token_lists(continuations, fn)
    if len(prompts_) != len(conts):
        raise ValueError(
            f"{fn}: prompts and continuations must have the same length N; "
            f"got {len(prompts_)} and {len(conts)}"
        )
    if any(len(p) == 0 for p in prompts_) or any(len(c) == 0 for c in conts):
        raise ValueError(f"{fn}: every prompt and continuation must hold at least one token")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be an int >= 1; got {batch_size!r}")
    device = _device(model)
    scores: list[float] = []
    for start in range(0, len(conts), batch_size):
        ps, cs = prompts_[start : start + batch_size], conts[start : start + batch_size]
        ids, mask = _right_padded([p + c for p, c in zip(ps, cs, strict=True)], device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # [b, T-1]: log p(x_{t+1})
        for i, (p, c) in enumerate(zip(ps, cs, strict=True)):
            # continuation tokens sit at positions len(p) .. len(p)+len(c)-1 -> targets t-1
            scores.append(token_logp[i, len(p) - 1 : len(p) + len(c) - 1].mean().item())
    return sum(scores) / len(scores)


def _off_diagonal_cosines(hidden: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    h = F.normalize(hidden.to(torch.promote_types(hidden.dtype, torch.float32)), dim=-1)
    S = h @ h.transpose(1, 2)
    T = hidden.shape[1]
    pair = mask[:, :, None] & mask[:, None, :]
    pair &= ~torch.eye(T, dtype=torch.bool, device=hidden.device)
    return torch.where(pair, S, S.new_zeros(())).sum(), pair.sum()


def isotropy_from_hidden(hidden: Tensor, mask: Tensor | None = None) -> float:
    """Pooled isotropy ``1 − Σ_{b, i≠j valid} cos(h_bi, h_bj) / Σ_b T_b(T_b − 1)`` of token
    states ``hidden [B, T, d]`` with validity ``mask [B, T]`` (``None``: all valid)."""
    fn = "isotropy_from_hidden"
    if not isinstance(hidden, Tensor) or hidden.dim() != 3:
        shape = tuple(hidden.shape) if isinstance(hidden, Tensor) else type(hidden).__name__
        raise ValueError(f"{fn}: hidden must be a tensor of shape [B, T, d]; got {shape}")
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(hidden.shape[:2]):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"{fn}: mask must have shape [B, T] = {tuple(hidden.shape[:2])}; got {shape}"
        )
    total, count = _off_diagonal_cosines(hidden.detach(), mask.bool())
    if int(count) == 0:
        raise ValueError(f"{fn}: no sequence has two valid positions")
    return 1.0 - total.item() / int(count)


@torch.no_grad()
def isotropy(
    model: Any,
    texts: Sequence[Sequence[int]],
    *,
    batch_size: int = 64,
) -> float:
    """Isotropy of ``model``'s last-layer token states on ``texts`` (pooled over texts, see
    :func:`isotropy_from_hidden`; texts with fewer than 2 tokens contribute nothing).

    ``model`` is called as ``model(input_ids=, attention_mask=, output_hidden_states=True,
    use_cache=False)`` on right-padded batches of ``batch_size`` texts.
    """
    fn = "isotropy"
    seqs = [t for t in _token_lists(texts, fn) if len(t) > 0]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be an int >= 1; got {batch_size!r}")
    device = _device(model)
    total, count = 0.0, 0
    for start in range(0, len(seqs), batch_size):
        ids, mask = _right_padded(seqs[start : start + batch_size], device)
        result = model(
            input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False
        )
        s, c = _off_diagonal_cosines(result.hidden_states[-1], mask.bool())
        total += s.item()
        count += int(c)
    if count == 0:
        raise ValueError(f"{fn}: no text in texts has two or more tokens")
    return 1.0 - total / count
