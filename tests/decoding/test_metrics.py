"""Generation metrics on hand-made token lists and hidden states with hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.decoding import (
    coherence,
    diversity,
    isotropy,
    isotropy_from_hidden,
    rep_n,
    repetition_and_diversity,
)
from tests.decoding.tiny import tiny_gpt2

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rep_n_hand_computed():
    # [1,2,1,2,1,2]: 2-grams 12 21 12 21 12 -> 2 unique of 5; 3-grams 121 212 121 212 -> 2 of 4;
    # 4-grams 1212 2121 1212 -> 2 of 3
    text = [1, 2, 1, 2, 1, 2]
    assert rep_n([text], 2) == pytest.approx(100 * (1 - 2 / 5))
    assert rep_n([text], 3) == pytest.approx(50.0)
    assert rep_n([text], 4) == pytest.approx(100 / 3)
    assert rep_n([[1, 2, 3, 4, 5]], 2) == 0.0
    assert rep_n([[7, 7, 7, 7]], 2) == pytest.approx(100 * (1 - 1 / 3))
    assert rep_n([[7, 7, 7, 7]], 1) == pytest.approx(75.0)


def test_rep_n_reductions():
    texts = [[1, 2, 1, 2, 1, 2], [1, 2, 3]]  # rep-2: 60 (2/5 unique) and 0 (2/2 unique)
    assert rep_n(texts, 2) == pytest.approx((60.0 + 0.0) / 2)  # mean over texts
    assert rep_n(texts, 2, reduction="pooled") == pytest.approx(100 * (1 - 4 / 7))
    # a text too short for n-grams is skipped by both reductions
    assert rep_n([*texts, [5]], 2) == pytest.approx(30.0)
    assert rep_n(torch.tensor([[1, 2, 1, 2, 1, 2]]), 2) == pytest.approx(60.0)


def test_diversity_and_bundle():
    text = [1, 2, 1, 2, 1, 2]
    expected = (1 - 0.6) * (1 - 0.5) * (1 - 1 / 3)
    assert diversity(60.0, 50.0, 100 / 3) == pytest.approx(expected)
    out = repetition_and_diversity([text])
    assert out == pytest.approx(
        {"rep-2": 60.0, "rep-3": 50.0, "rep-4": 100 / 3, "diversity": expected}
    )
    assert repetition_and_diversity([[1, 2, 3, 4, 5, 6]])["diversity"] == 1.0


def test_rep_n_bad_input():
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        rep_n([[1, 2]], 0)
    with pytest.raises(ValueError, match="reduction"):
        rep_n([[1, 2]], 2, reduction="sum")
    with pytest.raises(ValueError, match="no text in texts has 3 or more tokens"):
        rep_n([[1, 2]], 3)
    with pytest.raises(TypeError, match="texts must be a sequence of token lists"):
        rep_n("1 2 3", 2)
    with pytest.raises(ValueError, match="at least one token list"):
        rep_n([], 2)


def test_isotropy_of_identical_and_orthogonal_states():
    same = torch.randn(1, 1, 8).expand(2, 5, 8) * torch.rand(2, 5, 1)  # one direction, scaled
    assert isotropy_from_hidden(same) == pytest.approx(0.0, abs=1e-6)
    eye = torch.eye(6)[None].repeat(2, 1, 1)
    assert isotropy_from_hidden(eye) == pytest.approx(1.0, abs=1e-7)
    opposite = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    assert isotropy_from_hidden(opposite) == pytest.approx(2.0)


def test_isotropy_pooled_over_texts_with_mask():
    # text 0: 3 identical states (6 ordered pairs, cos 1); text 1: 2 orthogonal (2 pairs, cos 0)
    h = torch.zeros(2, 3, 2)
    h[0] = torch.tensor([1.0, 1.0])
    h[1, 0], h[1, 1], h[1, 2] = torch.tensor([1.0, 0]), torch.tensor([0, 1.0]), 99.0
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert isotropy_from_hidden(h, mask) == pytest.approx(1 - 6 / 8)
    with pytest.raises(ValueError, match=r"mask must have shape \[B, T\]"):
        isotropy_from_hidden(h, mask[:, :2])
    with pytest.raises(ValueError, match="two valid positions"):
        isotropy_from_hidden(h, torch.tensor([[1, 0, 0], [0, 1, 0]]))


def test_model_isotropy_matches_hidden_states():
    pytest.importorskip("transformers")
    model = tiny_gpt2(seed=3)
    texts = [[1, 2, 3, 4], [5, 6], [7, 8, 9], [10]]
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            h = model(input_ids=torch.tensor([t]), output_hidden_states=True).hidden_states[-1][0]
            S = F.normalize(h, dim=-1) @ F.normalize(h, dim=-1).T
            total += float(S.sum() - S.diagonal().sum())
            count += len(t) * (len(t) - 1)
    expected = 1 - total / count
    assert isotropy(model, texts, batch_size=2) == pytest.approx(expected, abs=1e-5)
    assert isotropy(model, texts, batch_size=64) == pytest.approx(expected, abs=1e-5)


def test_coherence_is_mean_continuation_log_likelihood():
    pytest.importorskip("transformers")
    model = tiny_gpt2(seed=4)
    prompts = [[1, 2, 3], [4]]
    conts = [[5, 6], [7, 8, 9, 10]]
    per_text = []
    with torch.no_grad():
        for p, c in zip(prompts, conts, strict=True):
            seq = p + c
            logp = torch.log_softmax(model(input_ids=torch.tensor([seq])).logits[0], dim=-1)
            per_text.append(
                sum(float(logp[len(p) + i - 1, tok]) for i, tok in enumerate(c)) / len(c)
            )
    expected = sum(per_text) / 2
    assert coherence(model, prompts, conts) == pytest.approx(expected, abs=1e-5)
    assert coherence(model, prompts, conts, batch_size=1) == pytest.approx(expected, abs=1e-5)
    assert expected < 0 and math.isfinite(expected)
    with pytest.raises(ValueError, match="same length N"):
        coherence(model, prompts, conts[:1])
    with pytest.raises(ValueError, match="at least one token"):
        coherence(model, [[1], []], conts)


def test_trailing_padding_is_not_counted_as_repetition():
    padded = torch.tensor([[5, 6, 7, 0, 0, 0, 0], [1, 2, 1, 2, 1, 2, 0]])
    # row 0: 5 6 7 -> rep-2 0; row 1: 1 2 1 2 1 2 -> 60; mean 30
    assert rep_n(padded, 2, pad_token_id=0) == pytest.approx(30.0)
    assert rep_n(padded, 2) > 30.0  # the zeros repeat when counted
    reps = repetition_and_diversity([[5, 6, 7, 8, 0, 0]], pad_token_id=0)
    assert reps["rep-2"] == 0.0 and reps["diversity"] == 1.0
