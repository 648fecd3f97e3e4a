"""Decoding: contrastive search with the KV cache against the cache-free reference, greedy
against a no-cache argmax loop, top-p limits and reproducibility, cache handling, bad input."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from contrastkit.decoding import (
    contrastive_search,
    contrastive_search_reference,
    greedy_search,
    top_p_sampling,
)
from contrastkit.decoding.search import (
    _cache_keyword,
    _cache_repeat,
    _cache_select,
    _nucleus_probs,
)
from tests.decoding.tiny import PROMPTS, left_padded, tiny_gpt2

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

N_NEW = 10


def _argmax_loop(model, prompts: list[list[int]], n: int) -> torch.Tensor:
    """Greedy without cache or padding: the model re-run on each row's whole prefix."""
    rows = []
    with torch.no_grad():
        for prompt in prompts:
            prefix = list(prompt)
            for _ in range(n):
                logits = model(input_ids=torch.tensor([prefix]), use_cache=False).logits
                prefix.append(int(logits[0, -1].argmax()))
            rows.append(prefix[len(prompt) :])
    return torch.tensor(rows)


# --------------------------------------------------------------------------- contrastive search


@pytest.mark.parametrize(("alpha", "k"), [(0.6, 4), (0.0, 4), (1.0, 3), (0.3, 7), (0.6, 1)])
def test_contrastive_search_with_cache_equals_reference(model, prompts, alpha, k):
    ids, mask = prompts
    fast = contrastive_search(model, ids, mask, alpha=alpha, k=k, max_new_tokens=N_NEW)
    slow = contrastive_search_reference(model, ids, mask, alpha=alpha, k=k, max_new_tokens=N_NEW)
    assert fast.shape == (len(PROMPTS), N_NEW)
    assert fast.dtype == torch.long
    assert torch.equal(fast, slow)


def test_contrastive_search_is_not_greedy_for_positive_alpha(model, prompts):
    """Guards the comparison above against a vacuous pass: with α = 0.6 the penalty changes
    the choice, and lowers repetition of the (highly repetitive) greedy output."""
    ids, mask = prompts
    greedy = greedy_search(model, ids, mask, max_new_tokens=N_NEW)
    cs = contrastive_search(model, ids, mask, alpha=0.6, k=4, max_new_tokens=N_NEW)
    assert not torch.equal(cs, greedy)
    distinct = lambda x: sum(len(set(row.tolist())) for row in x)  # noqa: E731
    assert distinct(cs) > distinct(greedy)


@pytest.mark.parametrize(("alpha", "k"), [(0.0, 4), (0.0, 1), (0.9, 1)])
def test_contrastive_search_degenerates_to_greedy(model, prompts, alpha, k):
    ids, mask = prompts
    cs = contrastive_search(model, ids, mask, alpha=alpha, k=k, max_new_tokens=N_NEW)
    assert torch.equal(cs, greedy_search(model, ids, mask, max_new_tokens=N_NEW))


def test_contrastive_search_other_model_and_default_init():
    """A second model (GPT-2's own 0.02 init: near-uniform next-token distributions, so the
    penalty decides) and longer outputs; rows decoded alone equal the padded batch."""
    model = tiny_gpt2(seed=1, initializer_range=0.02)
    prompts = [[3, 4], [10, 11, 12, 13, 14, 15, 16], [40, 2, 2]]
    ids, mask = left_padded(prompts, filler=0)
    fast = contrastive_search(model, ids, mask, max_new_tokens=16)
    assert torch.equal(fast, contrastive_search_reference(model, ids, mask, max_new_tokens=16))
    for i, p in enumerate(prompts):
        alone = contrastive_search(model, torch.tensor([p]), max_new_tokens=16)
        assert torch.equal(alone[0], fast[i])


def test_contrastive_search_stops_at_eos(model, prompts):
    ids, mask = prompts
    free = contrastive_search(model, ids, mask, max_new_tokens=N_NEW)
    eos = int(free[0, 2])  # row 0 emits it at step 2 (or earlier)
    first = int((free[0] == eos).nonzero()[0])
    pad = 49 if eos != 49 else 48
    out = contrastive_search(
        model, ids, mask, max_new_tokens=N_NEW, eos_token_id=eos, pad_token_id=pad
    )
    ref = contrastive_search_reference(
        model, ids, mask, max_new_tokens=N_NEW, eos_token_id=eos, pad_token_id=pad
    )
    assert torch.equal(out, ref)
    assert torch.equal(out[0, : first + 1], free[0, : first + 1])
    assert bool((out[0, first + 1 :] == pad).all())
    for b in range(out.shape[0]):  # every row: identical up to its first eos, pad after it
        hits = (free[b] == eos).nonzero()
        stop = int(hits[0]) + 1 if len(hits) else N_NEW
        assert torch.equal(out[b, :stop], free[b, :stop])
        assert bool((out[b, stop:] == pad).all())


class _LegacyCacheLM(torch.nn.Module):
    """A causal LM with the pre-5.24 interface: ``past_key_values`` in, a tuple of per-layer
    ``(keys, values)`` out (exercises the keyword fallback and the tuple-cache path)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache=None,
        output_hidden_states=None,
    ):
        cache = None
        if past_key_values is not None:
            cache = transformers.DynamicCache(past_key_values)
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        legacy = None
        if use_cache:
            legacy = tuple((layer.keys, layer.values) for layer in out.cache.layers)
        return SimpleNamespace(
            logits=out.logits, past_key_values=legacy, hidden_states=out.hidden_states
        )


def test_legacy_tuple_cache_model(model, prompts):
    ids, mask = prompts
    legacy = _LegacyCacheLM(model).eval()
    assert torch.equal(
        contrastive_search(legacy, ids, mask, max_new_tokens=6),
        contrastive_search(model, ids, mask, max_new_tokens=6),
    )
    assert torch.equal(
        greedy_search(legacy, ids, mask, max_new_tokens=6),
        greedy_search(model, ids, mask, max_new_tokens=6),
    )


def test_dynamic_cache_repeat_and_select(model, prompts):
    """The transformers cache methods the search relies on: repeat_interleave then select."""
    ids, mask = prompts
    out = model(input_ids=ids, attention_mask=mask, use_cache=True)
    keys = [layer.keys.clone() for layer in out.cache.layers]
    cache = _cache_repeat(out.cache, 3)
    assert cache.layers[0].keys.shape[0] == 3 * ids.shape[0]
    for layer, k in zip(cache.layers, keys, strict=True):
        assert torch.equal(layer.keys, k.repeat_interleave(3, dim=0))
    rows = torch.tensor([2, 3, 7, 11])  # copy 2 of row 0, copy 0 of row 1, ...
    cache = _cache_select(cache, rows)
    for layer, k in zip(cache.layers, keys, strict=True):
        assert torch.equal(layer.keys, k[rows // 3])
    legacy = tuple((k, k + 1) for k in keys)
    rep = _cache_select(_cache_repeat(legacy, 2), torch.tensor([1, 2, 5, 6]))
    assert torch.equal(rep[0][1], keys[0][torch.tensor([0, 1, 2, 3])] + 1)


# --------------------------------------------------------------------------- greedy / top-p


def test_greedy_with_cache_equals_argmax_loop(model, prompts):
    ids, mask = prompts
    cached = greedy_search(model, ids, mask, max_new_tokens=12)
    assert torch.equal(cached, _argmax_loop(model, PROMPTS, 12))


def test_greedy_stops_at_eos_per_row(model, prompts):
    ids, mask = prompts
    free = greedy_search(model, ids, mask, max_new_tokens=N_NEW)
    eos = int(free[1, 1])
    out = greedy_search(model, ids, mask, max_new_tokens=N_NEW, eos_token_id=eos, pad_token_id=48)
    for b in range(out.shape[0]):
        hits = (free[b] == eos).nonzero()
        stop = int(hits[0]) + 1 if len(hits) else N_NEW
        assert torch.equal(out[b, :stop], free[b, :stop])
        assert bool((out[b, stop:] == 48).all())


def test_top_p_to_zero_is_greedy(model, prompts):
    ids, mask = prompts
    sampled = top_p_sampling(
        model,
        ids,
        mask,
        top_p=1e-9,
        max_new_tokens=N_NEW,
        generator=torch.Generator().manual_seed(3),
    )
    assert torch.equal(sampled, greedy_search(model, ids, mask, max_new_tokens=N_NEW))


def test_top_p_reproducible_with_generator(model, prompts):
    ids, mask = prompts

    def draw(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return top_p_sampling(model, ids, mask, top_p=0.95, max_new_tokens=12, generator=gen)

    a, b, c = draw(0), draw(0), draw(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, greedy_search(model, ids, mask, max_new_tokens=12))


def test_top_p_sampling_matches_uncached_sampler(model, prompts):
    """Same generator draws as a no-cache, no-padding sampler over the nucleus (one row)."""
    prompt = PROMPTS[1]
    out = top_p_sampling(
        model,
        torch.tensor([prompt]),
        top_p=0.8,
        max_new_tokens=8,
        generator=torch.Generator().manual_seed(5),
    )
    gen = torch.Generator().manual_seed(5)
    prefix = list(prompt)
    with torch.no_grad():
        for _ in range(8):
            logits = model(input_ids=torch.tensor([prefix]), use_cache=False).logits[:, -1]
            prefix.append(int(torch.multinomial(_nucleus_probs(logits, 0.8), 1, generator=gen)))
    assert out[0].tolist() == prefix[len(prompt) :]


def test_nucleus_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    logits = probs.log()
    torch.testing.assert_close(_nucleus_probs(logits, 0.7), torch.tensor([[0, 0.625, 0, 0.375]]))
    torch.testing.assert_close(_nucleus_probs(logits, 0.5), torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    kept = _nucleus_probs(logits, 0.9)
    torch.testing.assert_close(kept, torch.tensor([[0.15, 0.5, 0.0, 0.3]]) / 0.95)
    torch.testing.assert_close(_nucleus_probs(logits, 1.0), probs)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be an int >= 1"),
        ({"k": 2.0}, TypeError, "k must be an int"),
        ({"alpha": 1.5}, ValueError, r"alpha must be a float in \[0, 1\]"),
        ({"alpha": -0.1}, ValueError, "alpha"),
        ({"alpha": "0.5"}, TypeError, "alpha"),
        ({"max_new_tokens": 0}, ValueError, "max_new_tokens"),
        ({"eos_token_id": -1}, ValueError, "eos_token_id"),
    ],
)
def test_contrastive_search_rejects_bad_arguments(model, prompts, kwargs, error, match):
    ids, mask = prompts
    with pytest.raises(error, match=match):
        contrastive_search(model, ids, mask, **kwargs)
    with pytest.raises(error, match=match):
        contrastive_search_reference(model, ids, mask, **kwargs)


def test_k_larger_than_vocabulary(model, prompts):
    ids, mask = prompts
    with pytest.raises(ValueError, match="k must be at most the vocabulary size 50"):
        contrastive_search(model, ids, mask, k=51)


def test_prompt_checks(model, prompts):
    ids, mask = prompts
    for fn in (greedy_search, top_p_sampling, contrastive_search):
        with pytest.raises(ValueError, match=r"attention_mask must have the shape .*\[B, L\]"):
            fn(model, ids, mask[:, 1:])
        with pytest.raises(ValueError, match="left-padded"):
            fn(model, ids, mask.flip(1))
        with pytest.raises(ValueError, match=r"input_ids must have shape \[B, L\]"):
            fn(model, ids[0])
        with pytest.raises(TypeError, match="input_ids must be an integer tensor"):
            fn(model, ids.float())
        empty = mask.clone()
        empty[2] = 0
        with pytest.raises(ValueError, match="at least one token"):
            fn(model, ids, empty)
    with pytest.raises(ValueError, match=r"top_p must be a float in \(0, 1\]"):
        top_p_sampling(model, ids, mask, top_p=0.0)
    with pytest.raises(ValueError, match="top_p"):
        top_p_sampling(model, ids, mask, top_p=1.2)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        top_p_sampling(model, ids, mask, generator=0)


class _OnlyAllowed(torch.nn.Module):
    """Wraps a causal LM and sets every logit but ``allowed`` to -inf (p = 0)."""

    def __init__(self, model, allowed: list[int]) -> None:
        super().__init__()
        self.inner = model
        self.banned = torch.ones(model.config.vocab_size, dtype=torch.bool)
        self.banned[allowed] = False

    def forward(self, input_ids, cache=None, **kwargs):
        # the KV cache under the inner model's own keyword (cache / past_key_values)
        out = self.inner(input_ids, **kwargs, **{_cache_keyword(self.inner): cache})
        out.logits[..., self.banned] = float("-inf")
        return out


def test_tokens_with_zero_probability_never_win_on_their_penalty(model):
    allowed = [5, 9]
    wrapped = _OnlyAllowed(model, allowed)
    prompt = torch.tensor([[5, 6, 7, 8]])
    vocab = model.config.vocab_size
    # alpha = 1: the score is minus the penalty alone, so without the rule one of the many
    # p = 0 tokens (the one least similar to the history) would win
    out = contrastive_search(wrapped, prompt, alpha=1.0, k=vocab, max_new_tokens=6)
    assert set(out.tolist()[0]) <= set(allowed)
    ref = contrastive_search_reference(wrapped, prompt, alpha=1.0, k=vocab, max_new_tokens=6)
    assert torch.equal(out, ref)
