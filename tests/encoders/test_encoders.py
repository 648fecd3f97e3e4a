import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.encoders import (
    Encoder,
    FeatureQueue,
    MomentumEncoder,
    ProjectionHead,
    SmallCNN,
    moco_loss,
    momentum_schedule,
    resnet18,
    resnet50,
)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- SmallCNN


@pytest.mark.parametrize("size", [8, 28])
@pytest.mark.parametrize("input_size", [None, "same"])
def test_small_cnn_shapes(size, input_size):
    model = SmallCNN(in_channels=1, width=8, out_dim=16, input_size=size if input_size else None)
    out = model(torch.randn(4, 1, size, size))
    assert out.shape == (4, 16)
    assert model.feature_dim == 16


def test_small_cnn_without_linear_and_checks():
    model = SmallCNN(width=8, out_dim=None)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, model.feature_dim)
    assert model.feature_dim == model.pooled_dim == 32
    with pytest.raises(ValueError):
        SmallCNN(input_size=8)(torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError):
        SmallCNN(in_channels=3)(torch.randn(2, 1, 8, 8))


def test_small_cnn_backward():
    model = SmallCNN(width=8, out_dim=8)
    model(torch.randn(3, 1, 28, 28)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------- ResNets


@pytest.mark.parametrize(("factory", "dim"), [(resnet18, 512), (resnet50, 2048)])
@pytest.mark.parametrize("cifar_stem", [True, False])
def test_resnet_shapes(factory, dim, cifar_stem):
    model = factory(cifar_stem=cifar_stem).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, dim)
    assert model.feature_dim == dim


def test_resnet_param_counts():
    # torchvision: resnet18 11,689,512 and resnet50 25,557,032, minus fc (512*1000+1000,
    # 2048*1000+1000)
    assert n_params(resnet18(cifar_stem=False)) == 11_689_512 - 513_000 == 11_176_512
    assert n_params(resnet50(cifar_stem=False)) == 25_557_032 - 2_049_000 == 23_508_032
    # CIFAR stem: 3x3 instead of 7x7 first conv
    assert n_params(resnet18()) == 11_176_512 - 64 * 3 * (49 - 9)
    assert n_params(resnet18(in_channels=1, cifar_stem=False)) == 11_176_512 - 64 * 2 * 49
    assert not any(isinstance(m, nn.Linear) for m in resnet50().modules())


# ---------------------------------------------------------------- heads


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_projection_head(num_layers, batch_norm):
    head = ProjectionHead(
        12, hidden_dim=20, out_dim=6, num_layers=num_layers, batch_norm=batch_norm
    )
    assert head(torch.randn(5, 12)).shape == (5, 6)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(linears) == num_layers == head.num_layers
    assert len(norms) == (num_layers - 1 if batch_norm else 0)
    assert isinstance(head.net[-1], nn.Linear)  # plain linear output layer
    with pytest.raises(ValueError):
        ProjectionHead(12, num_layers=0)


def test_encoder():
    backbone = SmallCNN(width=8, out_dim=16)
    encoder = Encoder(backbone, ProjectionHead(16, hidden_dim=32, out_dim=4))
    x = torch.randn(3, 1, 8, 8)
    h, z = encoder(x)
    assert h.shape == (3, 16) and z.shape == (3, 4)
    assert encoder.feature_dim == 16
    encoder.eval()
    assert torch.equal(encoder.represent(x), encoder(x)[0])
    h2, z2 = Encoder(backbone)(x)
    assert torch.equal(h2, z2)


# ---------------------------------------------------------------- momentum


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def _perturb(net: nn.Module) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net.train()
    net(torch.randn(8, 4))  # changes BN running stats


def test_momentum_encoder_copy_and_no_grad():
    online = _net()
    target = MomentumEncoder(online, momentum=0.9)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    x = torch.randn(5, 4, requires_grad=True)
    out = target(x)
    assert not out.requires_grad
    # deep copy: changing online does not change target
    _perturb(online)
    assert not torch.equal(target.module[0].weight, online[0].weight)
    assert set(target.state_dict()) == {f"module.{k}" for k in online.state_dict()}


def test_momentum_zero_copies_one_freezes():
    online = _net()
    target = MomentumEncoder(online, momentum=0.0)
    _perturb(online)
    target.update(online)
    for key, value in online.state_dict().items():
        assert torch.equal(target.module.state_dict()[key], value)

    online = _net()
    frozen = MomentumEncoder(online, momentum=1.0)
    before = {k: v.clone() for k, v in frozen.module.named_parameters()}
    _perturb(online)
    frozen.update(online)
    for name, p in frozen.module.named_parameters():
        assert torch.equal(p, before[name])
    # buffers are copied whatever the momentum
    assert torch.equal(frozen.module[1].running_mean, online[1].running_mean)
    assert torch.equal(frozen.module[1].num_batches_tracked, online[1].num_batches_tracked)


def test_momentum_ema_by_hand():
    torch.manual_seed(1)
    online = nn.Linear(3, 2)
    target = MomentumEncoder(online, momentum=0.75)
    w_k, b_k = online.weight.detach().clone(), online.bias.detach().clone()
    for step in range(3):
        with torch.no_grad():
            online.weight.add_(torch.randn(2, 3))
            online.bias.add_(1.0)
        m = 0.75 if step < 2 else 0.5
        target.update(online, momentum=None if step < 2 else 0.5)
        w_k = m * w_k + (1 - m) * online.weight.detach()
        b_k = m * b_k + (1 - m) * online.bias.detach()
        torch.testing.assert_close(target.module.weight, w_k)
        torch.testing.assert_close(target.module.bias, b_k)
    assert target.module.weight.grad is None
    assert not target.module.weight.requires_grad
    with pytest.raises(ValueError):
        target.update(online, momentum=1.5)
    with pytest.raises(ValueError):
        target.update(nn.Linear(3, 2, bias=False))


def test_momentum_schedule():
    assert momentum_schedule(0.996, 0, 100) == pytest.approx(0.996)
    assert momentum_schedule(0.996, 100, 100) == pytest.approx(1.0)
    assert momentum_schedule(0.996, 50, 100) == pytest.approx(0.998)
    assert momentum_schedule(0.9, 500, 100) == pytest.approx(1.0)
    values = [momentum_schedule(0.9, s, 10) for s in range(11)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert values[3] == pytest.approx(1 - 0.1 * (math.cos(math.pi * 0.3) + 1) / 2)


# ---------------------------------------------------------------- queue


def test_queue_init_normalised():
    queue = FeatureQueue(4, size=7)
    assert queue.features.shape == (7, 4)
    torch.testing.assert_close(queue.features.norm(dim=1), torch.ones(7))
    assert int(queue.ptr) == 0 and queue.num_filled == 0
    assert not queue.features.requires_grad


def test_queue_wraparound_exact():
    queue = FeatureQueue(2, size=5)
    initial = queue.features.clone()
    batches = [F.normalize(torch.randn(3, 2), dim=1) for _ in range(3)]

    queue.enqueue(batches[0])
    assert int(queue.ptr) == 3 and queue.num_filled == 3
    torch.testing.assert_close(queue.features[:3], batches[0])
    assert torch.equal(queue.features[3:], initial[3:])

    queue.enqueue(batches[1])  # rows 3, 4, 0
    assert int(queue.ptr) == 1 and queue.num_filled == 5
    expected = torch.stack(
        [batches[1][2], batches[0][1], batches[0][2], batches[1][0], batches[1][1]]
    )
    torch.testing.assert_close(queue.features, expected)

    queue.enqueue(batches[2])  # rows 1, 2, 3
    assert int(queue.ptr) == 4
    expected = torch.stack(
        [batches[1][2], batches[2][0], batches[2][1], batches[2][2], batches[1][1]]
    )
    torch.testing.assert_close(queue.features, expected)


def test_queue_batch_larger_than_size_and_grad():
    queue = FeatureQueue(2, size=3)
    queue.enqueue(F.normalize(torch.randn(1, 2), dim=1))  # ptr 1
    keys = F.normalize(torch.randn(5, 2), dim=1).requires_grad_()
    queue.enqueue(keys)  # conceptually rows 1,2,0,1,2 -> last three keys at rows 0,1,2
    assert int(queue.ptr) == 0
    torch.testing.assert_close(queue.features, keys.detach()[[2, 3, 4]])
    assert not queue.features.requires_grad
    with pytest.raises(ValueError):
        queue.enqueue(torch.randn(2, 3))


def test_queue_normalises_keys():
    queue = FeatureQueue(3, size=4)
    queue.enqueue(torch.tensor([[3.0, 0.0, 4.0]]))
    torch.testing.assert_close(queue.features[0], torch.tensor([0.6, 0.0, 0.8]))


def test_queue_state_dict_round_trip():
    queue = FeatureQueue(3, size=5)
    queue.enqueue(torch.randn(4, 3))
    state = queue.state_dict()
    assert set(state) == {"queue", "ptr", "filled"}
    restored = FeatureQueue(3, size=5)
    restored.load_state_dict(state)
    assert torch.equal(restored.features, queue.features)
    assert int(restored.ptr) == 4 and restored.num_filled == 4
    keys = torch.randn(2, 3)
    queue.enqueue(keys)
    restored.enqueue(keys)
    assert torch.equal(restored.features, queue.features)
    assert int(restored.ptr) == int(queue.ptr) == 1


# ---------------------------------------------------------------- moco_loss


def _moco_inputs(seed=0, b=4, d=5, k=7):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=torch.float64)
    key = torch.randn(b, d, generator=g, dtype=torch.float64)
    queue = F.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=1)
    return q, key, queue


def test_moco_loss_matches_hand_written():
    q, k, queue = _moco_inputs()
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(qn * kn).sum(1, keepdim=True), qn @ queue.T], dim=1) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(moco_loss(q, k, queue), expected)
    # explicit log-sum-exp form, per instance
    per = torch.logsumexp(logits, dim=1) - logits[:, 0]
    torch.testing.assert_close(moco_loss(q, k, queue, reduction="none"), per)
    # normalize=False uses raw dot products
    raw = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / 0.07
    torch.testing.assert_close(
        moco_loss(q, k, queue, temperature=0.07, normalize=False),
        F.cross_entropy(raw, torch.zeros(4, dtype=torch.long)),
    )


def test_moco_loss_stable_for_small_temperature():
    q, k, queue = _moco_inputs()
    value = moco_loss(q.float(), k.float(), queue.float(), temperature=1e-4)
    assert torch.isfinite(value)


def test_moco_loss_identity_transforms_equal_plain():
    q, k, queue = _moco_inputs(seed=3)
    plain = moco_loss(q, k, queue)
    g = torch.Generator().manual_seed(0)
    transformed = moco_loss(
        q, k, queue, pos_extrapolation={"lam": 1.0}, neg_interpolation={"lam": 1.0}, generator=g
    )
    torch.testing.assert_close(transformed, plain)


def test_moco_loss_transforms_change_loss_and_are_seeded():
    q, k, queue = _moco_inputs(seed=4)
    plain = moco_loss(q, k, queue)
    out = [
        moco_loss(
            q,
            k,
            queue,
            pos_extrapolation=2.0,
            neg_interpolation=1.6,
            generator=torch.Generator().manual_seed(7),
        )
        for _ in range(2)
    ]
    torch.testing.assert_close(out[0], out[1])
    assert not torch.allclose(out[0], plain)
    # a fixed extrapolation lam = 1.5 by hand
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    qh, kh = 1.5 * qn - 0.5 * kn, 1.5 * kn - 0.5 * qn
    logits = torch.cat([(qh * kh).sum(1, keepdim=True), qh @ queue.T], dim=1) / 0.2
    torch.testing.assert_close(
        moco_loss(q, k, queue, pos_extrapolation={"lam": 1.5}),
        F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)),
    )


def test_moco_loss_gradients_and_queue_untouched():
    q, k, queue = _moco_inputs(seed=5)
    q.requires_grad_()
    k.requires_grad_()
    queue_before = queue.clone()
    loss, stats = moco_loss(
        q,
        k,
        queue,
        pos_extrapolation=2.0,
        neg_interpolation=1.6,
        return_stats=True,
        generator=torch.Generator().manual_seed(1),
    )
    loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None
    assert torch.equal(queue, queue_before)
    assert set(stats) == {"pos", "neg_mean", "neg_var", "exp_pos", "exp_neg_mean"}
    assert all(v.shape == (4,) and not v.requires_grad for v in stats.values())


def test_moco_loss_stats_plain():
    q, k, queue = _moco_inputs(seed=6)
    _, stats = moco_loss(q, k, queue, return_stats=True)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    torch.testing.assert_close(stats["pos"], (qn * kn).sum(1))
    torch.testing.assert_close(stats["neg_mean"], (qn @ queue.T).mean(1))


def test_moco_loss_with_queue_and_momentum_step():
    torch.manual_seed(0)
    online = Encoder(SmallCNN(width=4, out_dim=8), ProjectionHead(8, 16, 6))
    target = MomentumEncoder(online, momentum=0.9)
    queue = FeatureQueue(6, size=10)
    x1, x2 = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    _, q = online(x1)
    target.update(online)
    _, k = target(x2)
    loss = moco_loss(q, k, queue.features, pos_extrapolation=2.0)
    loss.backward()
    queue.enqueue(k)
    torch.testing.assert_close(queue.features[:4], F.normalize(k, dim=1))
    assert all(p.grad is not None for p in online.parameters())


def test_moco_loss_validation():
    q, k, queue = _moco_inputs()
    with pytest.raises(ValueError):
        moco_loss(q, k, queue, temperature=0.0)
    with pytest.raises(ValueError):
        moco_loss(q, k[:2], queue)
    with pytest.raises(ValueError):
        moco_loss(q, k, queue[:, :3])
    with pytest.raises(TypeError):
        moco_loss(q, k, queue, pos_extrapolation="yes")
