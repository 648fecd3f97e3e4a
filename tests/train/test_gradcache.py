import pytest
import torch

import contrastkit.losses as L
from contrastkit.train.gradcache import grad_cache_step


def _model(dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(8, 4)
    ).double()


def _inputs() -> torch.Tensor:
    return torch.randn(24, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("loss_name", ["info_nce", "mv_dhel", "dcl"])
@pytest.mark.parametrize("chunk", [1, 5, 8, 24])
def test_gradients_equal_the_full_batch(loss_name, chunk):
    views = 2 if loss_name == "dcl" else 3

    def loss_fn(z):
        return getattr(L, loss_name)(z.reshape(-1, views, 4))

    full = _model()
    loss_fn(full(_inputs())).backward()
    cached = _model()
    loss = grad_cache_step(cached, _inputs(), loss_fn, chunk_size=chunk)
    assert loss == pytest.approx(float(loss_fn(full(_inputs())).detach()))
    for a, b in zip(_grads(full), _grads(cached), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_dropout_masks_are_replayed_in_the_re_forward():
    """Same RNG draws as a chunk-by-chunk forward with a graph: identical gradients."""

    def loss_fn(z):
        return L.mv_infonce(z.reshape(-1, 3, 4))

    reference = _model(dropout=0.5)
    torch.manual_seed(123)
    z = torch.cat([reference(chunk) for chunk in _inputs().split(5)])
    loss_fn(z).backward()
    cached = _model(dropout=0.5)
    torch.manual_seed(123)
    grad_cache_step(cached, _inputs(), loss_fn, chunk_size=5)
    for a, b in zip(_grads(reference), _grads(cached), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        grad_cache_step(_model(), _inputs(), L.info_nce, chunk_size=0)
    with pytest.raises(ValueError, match="non-empty batch"):
        grad_cache_step(_model(), torch.zeros(0, 6), L.info_nce, chunk_size=2)


def test_parameters_inside_the_loss_get_their_gradient():
    temperature = L.LearnableTemperature(0.2).double()

    def loss_fn(z):
        return L.info_nce(z.reshape(-1, 2, 4), temperature=temperature())

    full = _model()
    loss_fn(full(_inputs())).backward()
    expected = temperature.log_scale.grad.clone()
    temperature.log_scale.grad = None
    grad_cache_step(_model(), _inputs(), loss_fn, chunk_size=5)
    torch.testing.assert_close(temperature.log_scale.grad, expected)
