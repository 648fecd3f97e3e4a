import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.encoders import SASRec


def _model(num_items=30, **kwargs):
    torch.manual_seed(0)
    kwargs = {"max_len": 12, "hidden": 16, "heads": 2, "inner": 32, **kwargs}
    return SASRec(num_items, **kwargs)


def _seqs(num_items, shape, seed=0):
    return torch.randint(1, num_items + 1, shape, generator=torch.Generator().manual_seed(seed))


def test_shapes():
    model = _model().eval()
    seq = _seqs(30, (5, 12))
    seq[0, :9] = 0
    assert model(seq).shape == (5, 16)
    assert model.encode_all(seq).shape == (5, 12, 16)
    assert model.encode_all(seq[:, 4:]).shape == (5, 8, 16)  # L < max_len
    assert model.item_scores(model(seq)).shape == (5, 30)
    torch.testing.assert_close(model(seq), model.encode_all(seq)[:, -1])


def test_parameter_count_of_the_beauty_config():
    model = SASRec(12101)
    assert sum(p.numel() for p in model.parameters()) == 877_824
    per_block = 4 * (64 * 64 + 64) + 64 * 256 + 256 + 256 * 64 + 64 + 4 * 64
    assert 12102 * 64 + 50 * 64 + 2 * 64 + 2 * per_block == 877_824


def test_init():
    model = SASRec(500, init_std=0.02)
    assert torch.all(model.item_emb.weight[0] == 0)
    assert abs(model.item_emb.weight[1:].std().item() - 0.02) < 2e-3
    for module in model.modules():
        if isinstance(module, nn.Linear):
            assert torch.all(module.bias == 0)
            assert abs(module.weight.std().item() - 0.02) < 4e-3
        if isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
            assert module.eps == 1e-12


@pytest.mark.parametrize("pad", [0, 4])
def test_causal(pad):
    model = _model().eval()
    seq = _seqs(30, (1, 12), seed=1)
    seq[0, :pad] = 0
    before = model.encode_all(seq)
    for t in range(pad, 12):
        changed = seq.clone()
        changed[0, t] = changed[0, t] % 30 + 1
        after = model.encode_all(changed)
        torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=0)
        assert not torch.allclose(after[:, -1], before[:, -1])


def test_extra_left_padding_and_batch_mates_do_not_change_the_output():
    model = _model().eval()
    items = _seqs(30, (5,), seed=2)
    short = torch.zeros(1, 6, dtype=torch.long)
    short[0, 1:] = items
    long = torch.zeros(1, 12, dtype=torch.long)
    long[0, 7:] = items
    ref = model(long)
    # positions are end-aligned and padding keys are masked: more padding, same state
    torch.testing.assert_close(model(short), ref, rtol=1e-5, atol=1e-6)
    # other rows of the batch (with more or less padding) do not matter
    batch = torch.cat([_seqs(30, (3, 12), seed=3), long, torch.zeros(1, 12, dtype=torch.long)])
    torch.testing.assert_close(model(batch)[3:4], ref, rtol=1e-5, atol=1e-6)
    # the padding row of the item embedding is never read by a real position
    with torch.no_grad():
        model.item_emb.weight[0].normal_()
    torch.testing.assert_close(model(long), ref, rtol=1e-5, atol=1e-6)


def test_no_nan_for_padding_rows():
    model = _model(dropout=0.1, attn_dropout=0.1)
    seq = torch.zeros(3, 12, dtype=torch.long)
    seq[0, -1] = 7  # a single item
    seq[1, -2:] = torch.tensor([3, 4])
    # row 2 is all padding (e.g. a fully masked view)
    out = model.encode_all(seq)
    assert torch.isfinite(out).all()
    model.rec_loss(out[:, -1], torch.tensor([1, 2, 3])).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_matches_torch_post_ln_transformer_with_recbole_mask():
    """Same weights in ``nn.TransformerEncoderLayer`` (post-LN, gelu) + RecBole's -10000 mask."""
    model = _model(layers=2).eval()
    layers = []
    for block in model.blocks:
        att, ffn = block.attention, block.feed_forward
        layer = nn.TransformerEncoderLayer(
            16, 2, 32, dropout=0.0, activation="gelu", layer_norm_eps=1e-12, batch_first=True
        ).eval()
        with torch.no_grad():
            layer.self_attn.in_proj_weight.copy_(
                torch.cat([att.query.weight, att.key.weight, att.value.weight])
            )
            layer.self_attn.in_proj_bias.copy_(
                torch.cat([att.query.bias, att.key.bias, att.value.bias])
            )
            layer.self_attn.out_proj.weight.copy_(att.out.weight)
            layer.self_attn.out_proj.bias.copy_(att.out.bias)
            layer.norm1.load_state_dict(att.norm.state_dict())
            layer.linear1.load_state_dict(ffn.fc1.state_dict())
            layer.linear2.load_state_dict(ffn.fc2.state_dict())
            layer.norm2.load_state_dict(ffn.norm.state_dict())
        layers.append(layer)
    seq = _seqs(30, (4, 10), seed=4)
    seq[1, :3] = 0
    seq[2, :9] = 0
    seq[3, 5] = 0  # a masked item in the middle
    with torch.no_grad():
        pos = model.pos_emb.weight[model.max_len - 10 :]
        x = model.emb_norm(model.item_emb(seq) + pos)
        allowed = torch.ones(10, 10).tril().bool()[None] & (seq > 0)[:, None, :]
        additive = (~allowed).float() * -10000.0
        additive = additive.repeat_interleave(2, dim=0)  # [B * heads, L, L]
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # the fused eval path gives NaN here
        try:
            for layer in layers:
                x = layer(x, src_mask=additive)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        ours = model.encode_all(seq)
    real = seq > 0  # RecBole's padding rows differ (uniform attention); real ones must agree
    torch.testing.assert_close(ours[real], x[real], rtol=1e-4, atol=1e-5)


def test_item_scores_and_rec_loss_against_float64():
    model = _model()
    h = torch.randn(6, 16)
    targets = torch.tensor([1, 30, 5, 5, 17, 2])
    scores = model.item_scores(h)
    emb = model.item_emb.weight.detach().double()
    torch.testing.assert_close(scores[:, 4].double(), h.double() @ emb[5], rtol=1e-5, atol=1e-6)
    logits = h.double() @ emb[1:].T
    expected = -(logits.log_softmax(dim=1)[torch.arange(6), targets - 1]).mean()
    loss = model.rec_loss(h, targets)
    assert loss.shape == ()
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    torch.testing.assert_close(loss, F.cross_entropy(scores, targets - 1))


def test_bce_loss_against_an_explicit_float64_loop():
    """SASRec's original objective, -log σ(pos) - log(1 - σ(neg)), per row in float64; stable
    for scores far beyond exp's range (where the naive formula gives inf)."""
    model = _model()
    h = torch.randn(5, 16)
    targets = torch.tensor([1, 30, 5, 5, 17])
    negatives = torch.tensor([2, 3, 30, 9, 1])
    emb = model.item_emb.weight.detach().double()
    expected = 0.0
    for row in range(5):
        pos = float(h[row].double() @ emb[targets[row]])
        neg = float(h[row].double() @ emb[negatives[row]])
        expected += -math.log(1 / (1 + math.exp(-pos))) - math.log(1 - 1 / (1 + math.exp(-neg)))
    loss = model.bce_loss(h, targets, negatives)
    assert loss.shape == ()
    assert math.isclose(loss.item(), expected / 5, rel_tol=1e-5)
    big = model.bce_loss(h * 1e4, targets, negatives)
    assert torch.isfinite(big)
    # gradients flow to the encoder output and the target / negative item rows only
    h.requires_grad_(True)
    model.bce_loss(h, targets, negatives).backward()
    used = set(targets.tolist()) | set(negatives.tolist())
    grad = model.item_emb.weight.grad
    touched = {int(i) for i in torch.nonzero(grad.abs().sum(1)).flatten()}
    assert touched == used and h.grad.abs().sum() > 0


def test_bce_loss_refuses_bad_ids():
    model = _model()
    h = torch.randn(2, 16)
    with pytest.raises(ValueError, match="negatives must be item ids"):
        model.bce_loss(h, torch.tensor([1, 2]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"negatives must have shape \[B\]"):
        model.bce_loss(h, torch.tensor([1, 2]), torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="targets must be a LongTensor"):
        model.bce_loss(h, torch.tensor([1.0, 2.0]), torch.tensor([1, 2]))


def test_gradients_reach_every_parameter():
    model = _model()
    seq = _seqs(30, (8, 12), seed=5)
    seq[:4, :5] = 0
    model.rec_loss(model(seq), _seqs(30, (8,), seed=6)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert torch.all(model.item_emb.weight.grad[0] == 0)  # padding row


def test_dropout_only_in_training():
    model = _model()
    seq = _seqs(30, (4, 12), seed=7)
    assert not torch.allclose(model(seq), model(seq))
    model.eval()
    torch.testing.assert_close(model(seq), model(seq), rtol=0, atol=0)


def test_bad_inputs():
    model = _model()
    with pytest.raises(ValueError, match="max_len"):
        model(_seqs(30, (2, 13)))
    with pytest.raises(ValueError, match=r"0\.\.30"):
        model(torch.tensor([[0, 31]]))
    with pytest.raises(ValueError, match=r"0\.\.30"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(TypeError):
        model(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        model(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, 16\]"):
        model.item_scores(torch.randn(2, 8))
    h = torch.randn(2, 16)
    with pytest.raises(ValueError, match=r"1\.\.30"):
        model.rec_loss(h, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"1\.\.30"):
        model.rec_loss(h, torch.tensor([1, 31]))
    with pytest.raises(ValueError, match=r"\[B\]"):
        model.rec_loss(h, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="divisible"):
        SASRec(10, hidden=10, heads=3)
    with pytest.raises(ValueError, match="num_items"):
        SASRec(0)
    with pytest.raises(ValueError, match="dropout"):
        SASRec(10, dropout=1.0)
