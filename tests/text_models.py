"""A tiny randomly initialised BERT with a word-level vocabulary, saved as a local Hugging Face
model folder: what the text tests load instead of a real model (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "the",
    "a",
    "man",
    "woman",
    "cat",
    "dog",
    "is",
    "are",
    "playing",
    "eating",
    "guitar",
    "flute",
    "plays",
    "sits",
    "on",
    "mat",
    "runs",
    "fast",
    "slow",
    "red",
    "blue",
    "car",
    "house",
    "big",
    "small",
    "child",
    "sleeps",
    "reads",
    "book",
    ".",
    ",",
)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def tiny_bert_folder(folder: Path, *, hidden: int = 16, seed: int = 0) -> Path:
    """Write a 1-layer BERT (hidden ``hidden``) and its tokenizer into ``folder``."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = transformers.BertTokenizer(
        vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True
    )
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
