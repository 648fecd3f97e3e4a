"""Decoding for Hugging Face causal language models: greedy search, top-p (nucleus) sampling
and contrastive search, all batched over left-padded prompts and using the KV cache.

Contrastive search (Su et al., "A Contrastive Framework for Neural Text Generation", NeurIPS
2022; Su & Collier, "Contrastive Search Is What You Need For Neural Text Generation", TMLR
2023; official code ``yxuansu/SimCTG``). At step ``t`` with next-token distribution
``p = softmax(logits_t)`` over the *full* vocabulary (not renormalised over the candidates)::

    V_k      = the k most probable tokens under p
    h_v      = last-layer hidden state of candidate v ∈ V_k (one batched forward of the k
               candidates through the KV cache expanded k-fold)
    penalty_v = max_{j ≤ t} cos(h_v, h_j)          over every earlier position j, prompt
                                                    included, left padding excluded
    x_t      = argmax_{v ∈ V_k} (1 − α) · p(v) − α · penalty_v

Defaults ``α = 0.6``, ``k = 4``. ``α = 0`` (or ``k = 1``) is greedy search.

Every function here takes ``model`` (anything called as ``model(input_ids=, attention_mask=,
position_ids=, past_key_values=, use_cache=, output_hidden_states=)`` returning ``.logits``,
``.past_key_values`` and ``.hidden_states``, e.g. ``transformers.GPT2LMHeadModel``; where the
forward signature has a ``cache`` parameter, as in transformers >= 5.24 which deprecates
``past_key_values``, the cache is passed as ``cache=`` and read from ``.cache``),
``input_ids [B, L]`` (int64) and ``attention_mask [B, L]`` (1 = token, 0 = padding; padding
must be on the left). Position ids are ``cumsum(attention_mask) − 1`` so a left-padded prompt
sees the same positions as the unpadded one. They return the new tokens ``[B, max_new_tokens]``
(int64; the prompt is not repeated). A row stops after it emits ``eos_token_id`` (the eos is
kept); its later entries are ``pad_token_id``. The model's mode is not changed: call
``model.eval()`` first for deterministic dropout-free decoding. Everything runs under
``torch.no_grad()``.

KV-cache handling: a ``transformers`` ``Cache`` (e.g. ``DynamicCache``) is expanded in place
with ``batch_repeat_interleave(k)`` and reduced to the chosen rows with
``batch_select_indices``; a legacy tuple-of-tuples cache is indexed along dim 0.

:func:`contrastive_search_reference` is a deliberately simple, cache-free implementation (one
row at a time, the model re-run from scratch on the whole prefix for every candidate) that the
tests compare :func:`contrastive_search` against.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "contrastive_search",
    "contrastive_search_reference",
    "greedy_search",
    "top_p_sampling",
]


# --------------------------------------------------------------------------- input checks


def _check_int(value: object, *, name: str, fn: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{fn}: {name} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{fn}: {name} must be an int >= {minimum}; got {value}")
    return value


def _check_optional_token(value: object, *, name: str, fn: str) -> int | None:
    if value is None:
        return None
    return _check_int(value, name=name, fn=fn, minimum=0)


def _check_prompts(
    input_ids: object, attention_mask: object | None, fn: str
) -> tuple[Tensor, Tensor]:
    if not isinstance(input_ids, Tensor):
        raise TypeError(
            f"{fn}: input_ids must be a torch.Tensor [B, L] of token ids; "
            f"got {type(input_ids).__name__}"
        )
    if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(
            f"{fn}: input_ids must have shape [B, L] with B, L >= 1; got {tuple(input_ids.shape)}"
        )
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{fn}: input_ids must be an integer tensor; got dtype {input_ids.dtype}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if not isinstance(attention_mask, Tensor):
        raise TypeError(
            f"{fn}: attention_mask must be a torch.Tensor [B, L] or None; "
            f"got {type(attention_mask).__name__}"
        )
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"{fn}: attention_mask must have the shape of input_ids [B, L] = "
            f"{tuple(input_ids.shape)}; got {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.to(torch.bool)
    if not bool(mask.any(dim=1).all()):
        raise ValueError(f"{fn}: every row of attention_mask needs at least one token (a 1)")
    # left padding: once a row has a token, every later position is a token
    if bool((mask[:, :-1] & ~mask[:, 1:]).any()):
        raise ValueError(
            f"{fn}: attention_mask must be left-padded (zeros only before the first token of a "
            "row); got padding after a token"
        )
    return input_ids.long(), mask.long()


def _check_model(model: object, fn: str) -> None:
    if not callable(model):
        raise TypeError(f"{fn}: model must be a callable causal LM; got {type(model).__name__}")


def _pad_id(pad_token_id: int | None, eos_token_id: int | None) -> int:
    if pad_token_id is not None:
        return pad_token_id
    return eos_token_id if eos_token_id is not None else 0


# --------------------------------------------------------------------------- cache helpers


def _cache_repeat(cache: Any, repeats: int) -> Any:
    """The cache with every batch row repeated ``repeats`` times (row b -> rows b·r .. b·r+r−1)."""
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(repeats)  # in place (transformers Cache)
        return cache
    if isinstance(cache, (tuple, list)):
        return tuple(tuple(t.repeat_interleave(repeats, dim=0) for t in layer) for layer in cache)
    raise TypeError(f"unsupported past_key_values type {type(cache).__name__}")


def _cache_select(cache: Any, rows: Tensor) -> Any:
    """The cache restricted to the batch rows ``rows`` (in that order)."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(rows)  # in place (transformers Cache)
        return cache
    if isinstance(cache, (tuple, list)):
        return tuple(tuple(t.index_select(0, rows) for t in layer) for layer in cache)
    raise TypeError(f"unsupported past_key_values type {type(cache).__name__}")


def _positions(mask: Tensor) -> Tensor:
    """Position ids of a left-padded ``mask [B, L]``: 0, 1, ... from each row's first token
    (padding gets 1, like ``transformers`` ``generate``; it is masked anyway)."""
    pos = mask.cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def _cache_keyword(model: Any) -> str:
    """The forward keyword of the KV cache: ``cache`` (transformers >= 5.24, where
    ``past_key_values`` is deprecated) when the signature has it, else ``past_key_values``."""
    forward = getattr(model, "forward", model)
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _forward(
    model: Any,
    ids: Tensor,
    mask: Tensor,
    positions: Tensor,
    cache: Any,
    *,
    hidden: bool,
) -> tuple[Tensor, Any, Tensor | None]:
    """One cached forward: ``(logits [B, L, V], new cache, last hidden [B, L, d] or None)``."""
    result = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        output_hidden_states=hidden,
        **{_cache_keyword(model): cache},
    )
    new_cache = getattr(result, "cache", None)
    if new_cache is None:
        new_cache = getattr(result, "past_key_values", None)
    if new_cache is None:
        raise TypeError("model returned no KV cache (neither .cache nor .past_key_values)")
    last = None
    if hidden:
        states = getattr(result, "hidden_states", None)
        if not states:
            raise TypeError("model must return hidden_states when output_hidden_states=True")
        last = states[-1]
    return result.logits, new_cache, last


class _Stopper:
    """Per-row eos bookkeeping shared by the three decoders."""

    def __init__(self, batch: int, eos: int | None, pad: int, device: torch.device) -> None:
        self.eos, self.pad = eos, pad
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)

    def apply(self, tokens: Tensor) -> Tensor:
        tokens = tokens.masked_fill(self.finished, self.pad)
        if self.eos is not None:
            self.finished |= tokens == self.eos
        return tokens

    @property
    def done(self) -> bool:
        return bool(self.finished.all())


def _finish(out: Tensor, steps_done: int, pad: int) -> Tensor:
    out[:, steps_done:] = pad
    return out


# --------------------------------------------------------------------------- greedy / top-p


def _sample_loop(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    choose: Any,
) -> Tensor:
    ids, mask = input_ids, attention_mask
    B = ids.shape[0]
    out = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=ids.device)
    stop = _Stopper(B, eos_token_id, pad_token_id, ids.device)
    logits, cache, _ = _forward(model, ids, mask, _positions(mask), None, hidden=False)
    logits = logits[:, -1, :]
    for step in range(max_new_tokens):
        token = stop.apply(choose(logits))
        out[:, step] = token
        if step == max_new_tokens - 1 or stop.done:
            return _finish(out, step + 1, pad_token_id)
        position = mask.sum(-1, keepdim=True)  # next position = number of tokens so far
        mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
        logits, cache, _ = _forward(model, token[:, None], mask, position, cache, hidden=False)
        logits = logits[:, -1, :]
    return out


@torch.no_grad()
def greedy_search(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int = 32,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Tensor:
    """Greedy decoding with the KV cache: ``x_t = argmax_v p(v | x_<t)``.

    Args:
        model: a Hugging Face style causal LM (see the module docstring).
        input_ids: ``[B, L]`` int64 prompts, left-padded.
        attention_mask: ``[B, L]``, 1 for tokens and 0 for (left) padding; ``None``: no padding.
        max_new_tokens: number of tokens to generate (>= 1; default 32).
        eos_token_id: a row stops after emitting it (``None``, the default: never stop early).
        pad_token_id: filler after a row's eos (default ``eos_token_id``, else 0).

    Returns:
        ``[B, max_new_tokens]`` int64 new tokens.
    """
    fn = "greedy_search"
    _check_model(model, fn)
    ids, mask = _check_prompts(input_ids, attention_mask, fn)
    n = _check_int(max_new_tokens, name="max_new_tokens", fn=fn, minimum=1)
    eos = _check_optional_token(eos_token_id, name="eos_token_id", fn=fn)
    pad = _pad_id(_check_optional_token(pad_token_id, name="pad_token_id", fn=fn), eos)
    return _sample_loop(model, ids, mask, n, eos, pad, lambda logits: logits.argmax(dim=-1))


def _nucleus_probs(logits: Tensor, top_p: float) -> Tensor:
    """``softmax(logits)`` restricted to the smallest set of most probable tokens whose mass
    reaches ``top_p`` (the most probable token is always kept), renormalised."""
    probs = torch.softmax(logits.float(), dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_p.cumsum(dim=-1) - sorted_p
    keep_sorted = mass_before < top_p
    keep_sorted[:, 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    probs = probs.masked_fill(~keep, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True)


@torch.no_grad()
def top_p_sampling(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    top_p: float = 0.95,
    max_new_tokens: int = 32,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Nucleus sampling (Holtzman et al., ICLR 2020) with the KV cache.

    At each step the smallest set of most probable tokens whose probability mass is at least
    ``top_p`` is kept (a token is kept when the mass of the tokens ranked above it is below
    ``top_p``; the top token always is), the distribution is renormalised over it and one token
    is drawn with ``torch.multinomial(..., generator=generator)``. ``top_p → 0`` is greedy.

    Args:
        top_p: nucleus mass in ``(0, 1]`` (default 0.95, as in the SimCTG comparisons).
        generator: a ``torch.Generator`` on the model's device for reproducible draws.
        Other arguments and the result: as :func:`greedy_search`.
    """
    fn = "top_p_sampling"
    _check_model(model, fn)
    ids, mask = _check_prompts(input_ids, attention_mask, fn)
    n = _check_int(max_new_tokens, name="max_new_tokens", fn=fn, minimum=1)
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)):
        raise TypeError(f"{fn}: top_p must be a float in (0, 1]; got {top_p!r}")
    if not 0.0 < float(top_p) <= 1.0:
        raise ValueError(f"{fn}: top_p must be a float in (0, 1]; got {top_p}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{fn}: generator must be a torch.Generator or None; got {type(generator).__name__}"
        )
    eos = _check_optional_token(eos_token_id, name="eos_token_id", fn=fn)
    pad = _pad_id(_check_optional_token(pad_token_id, name="pad_token_id", fn=fn), eos)

    def choose(logits: Tensor) -> Tensor:
        probs = _nucleus_probs(logits, float(top_p))
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _sample_loop(model, ids, mask, n, eos, pad, choose)


# --------------------------------------------------------------------------- contrastive search


def _check_contrastive(k: object, alpha: object, fn: str) -> tuple[int, float]:
    k = _check_int(k, name="k", fn=fn, minimum=1)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"{fn}: alpha must be a float in [0, 1]; got {alpha!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"{fn}: alpha must be a float in [0, 1]; got {alpha}")
    return k, float(alpha)


@torch.no_grad()
def contrastive_search(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    alpha: float = 0.6,
    k: int = 4,
    max_new_tokens: int = 32,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Tensor:
    """Contrastive search (Su et al., NeurIPS 2022) with the KV cache, batched over prompts.

    Score of candidate ``v`` among the ``k`` most probable tokens (``p`` = softmax over the
    full vocabulary)::

        s(v) = (1 − α) · p(v) − α · max_{j ≤ t} cos(h_v, h_j)

    where ``h_v`` is the candidate's last-layer hidden state and ``h_j`` runs over the
    last-layer states of every earlier position (prompt and generated, left padding
    excluded). One step is one forward of ``B·k`` rows: the cache is expanded k-fold, the
    ``k`` candidates are fed as the next token of each copy, and afterwards the cache (which
    now holds the candidates' keys and values) is reduced to the winners' rows, whose logits
    are the next step's distribution. Cosines are computed in float32.

    Args:
        alpha: degeneration penalty weight in ``[0, 1]`` (default 0.6); 0 is greedy search.
        k: number of candidates, >= 1 (default 4); 1 is greedy search.
        Other arguments and the result: as :func:`greedy_search`.
    """
    fn = "contrastive_search"
    _check_model(model, fn)
    ids, mask = _check_prompts(input_ids, attention_mask, fn)
    k, alpha = _check_contrastive(k, alpha, fn)
    n = _check_int(max_new_tokens, name="max_new_tokens", fn=fn, minimum=1)
    eos = _check_optional_token(eos_token_id, name="eos_token_id", fn=fn)
    pad = _pad_id(_check_optional_token(pad_token_id, name="pad_token_id", fn=fn), eos)

    B, L = ids.shape
    device = ids.device
    out = torch.full((B, n), pad, dtype=torch.long, device=device)
    stop = _Stopper(B, eos, pad, device)

    logits, cache, last = _forward(model, ids, mask, _positions(mask), None, hidden=True)
    logits = logits[:, -1, :]
    if k > logits.shape[-1]:
        raise ValueError(f"{fn}: k must be at most the vocabulary size {logits.shape[-1]}; got {k}")
    prompt_hidden = F.normalize(last.float(), dim=-1)  # [B, L, d]
    # unit hidden states of all positions so far; padded positions are never compared
    history = prompt_hidden.new_zeros(B, L + n, prompt_hidden.shape[-1])
    history[:, :L] = prompt_hidden
    valid = torch.zeros(B, L + n, dtype=torch.bool, device=device)
    valid[:, :L] = mask.bool()
    rows = torch.arange(B, device=device)

    for step in range(n):
        probs = torch.softmax(logits.float(), dim=-1)  # full vocabulary, not renormalised
        top_p, top_ids = probs.topk(k, dim=-1)  # [B, k]
        cache = _cache_repeat(cache, k)
        cand_mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1).repeat_interleave(k, dim=0)
        position = mask.sum(-1, keepdim=True).repeat_interleave(k, dim=0)
        cand_logits, cache, last = _forward(
            model, top_ids.reshape(B * k, 1), cand_mask, position, cache, hidden=True
        )
        cand_h = F.normalize(last[:, -1, :].float(), dim=-1)  # [B·k, d]
        cand_h = cand_h.view(B, k, -1)
        T = L + step
        cos = torch.einsum("bkd,btd->bkt", cand_h, history[:, :T])
        cos = cos.masked_fill(~valid[:, None, :T], float("-inf"))
        penalty = cos.max(dim=-1).values  # [B, k]
        score = (1.0 - alpha) * top_p - alpha * penalty
        # a token the model rules out (p = 0, e.g. a -inf logit) never wins on its penalty
        score = score.masked_fill(top_p == 0, float("-inf"))
        best = score.argmax(dim=-1)  # [B]
        token = stop.apply(top_ids[rows, best])
        out[:, step] = token
        if step == n - 1 or stop.done:
            return _finish(out, step + 1, pad)
        chosen = rows * k + best
        cache = _cache_select(cache, chosen)
        logits = cand_logits[chosen, -1, :]
        history[:, T] = cand_h[rows, best]
        valid[:, T] = True
        mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
    return out


@torch.no_grad()
def contrastive_search_reference(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    alpha: float = 0.6,
    k: int = 4,
    max_new_tokens: int = 32,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Tensor:
    """Contrastive search written as plainly as possible, as a test oracle: no KV cache, no
    batching, no padding. For each row, its unpadded prompt is extended one token at a time;
    at each step the model runs on the whole prefix (next-token probabilities and the prefix's
    last-layer states) and again on ``prefix + [v]`` for each of the ``k`` candidates.

    Same arguments, score and result as :func:`contrastive_search`; about ``k + 1`` full
    forwards per generated token per row, so only for tiny models and short outputs.
    """
    fn = "contrastive_search_reference"
    _check_model(model, fn)
    ids, mask = _check_prompts(input_ids, attention_mask, fn)
    k, alpha = _check_contrastive(k, alpha, fn)
    n = _check_int(max_new_tokens, name="max_new_tokens", fn=fn, minimum=1)
    eos = _check_optional_token(eos_token_id, name="eos_token_id", fn=fn)
    pad = _pad_id(_check_optional_token(pad_token_id, name="pad_token_id", fn=fn), eos)

    def run(prefix: list[int]) -> tuple[Tensor, Tensor]:
        x = torch.tensor([prefix], dtype=torch.long, device=ids.device)
        result = model(input_ids=x, use_cache=False, output_hidden_states=True)
        return result.logits[0].float(), result.hidden_states[-1][0].float()

    rows: list[list[int]] = []
    for b in range(ids.shape[0]):
        prefix = ids[b][mask[b].bool()].tolist()
        generated: list[int] = []
        while len(generated) < n:
            logits, context = run(prefix)
            probs = torch.softmax(logits[-1], dim=-1)
            top_p, top_ids = probs.topk(k)
            scores = []
            for p_v, v in zip(top_p.tolist(), top_ids.tolist(), strict=True):
                _, hidden = run([*prefix, v])
                h_v = hidden[-1]
                penalty = max(F.cosine_similarity(h_v, h_j, dim=0).item() for h_j in context)
                score = (1.0 - alpha) * p_v - alpha * penalty
                scores.append(score if p_v > 0 else float("-inf"))
            token = top_ids[max(range(k), key=lambda i: scores[i])].item()
            generated.append(token)
            prefix.append(token)
            if eos is not None and token == eos:
                break
        rows.append(generated + [pad] * (n - len(generated)))
    return torch.tensor(rows, dtype=torch.long, device=ids.device)
