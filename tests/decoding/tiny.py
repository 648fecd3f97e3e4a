"""A tiny randomly initialised GPT-2 and left-padded prompts of different lengths."""

from __future__ import annotations

import torch

VOCAB = 50
PROMPTS = [[5, 17, 3], [9, 9, 30, 2, 41, 12], [26], [44, 8, 19, 8, 1]]


def tiny_gpt2(seed: int = 0, initializer_range: float = 0.2):
    """``GPT2LMHeadModel`` (2 layers, width 32, 2 heads, vocabulary 50, 64 positions) in eval
    mode. A wider init than GPT-2's 0.02 makes next-token distributions far from uniform, so
    candidates differ in probability as well as in their degeneration penalty."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=VOCAB,
        n_positions=64,
        initializer_range=initializer_range,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config).eval()


def left_padded(prompts: list[list[int]], filler: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids, attention_mask [B, L]``; padding holds ``filler`` (a real token id, so a
    leak of padding into the result would change it)."""
    L = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), L), filler, dtype=torch.long)
    mask = torch.zeros(len(prompts), L, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, L - len(p) :] = torch.tensor(p)
        mask[i, L - len(p) :] = 1
    return ids, mask
