"""Gradient cache: a large effective batch on one device (Gao et al., "Scaling Deep Contrastive
Learning Batch Size under Memory Limited Setup", 2021; GradCache).

    loss = grad_cache_step(encoder, inputs, loss_fn, chunk_size=256)
    optimizer.step()

1. Encode the batch chunk by chunk without a graph, recording each chunk's RNG state.
2. Compute the loss on the full batch of embeddings and its gradient w.r.t. the embeddings.
3. Re-encode each chunk with the same RNG state (same dropout / augmentation draws) and
   back-propagate the cached embedding gradient into the parameters.

Parameter gradients equal those of one full-batch forward and backward whenever the encoder's
output for a chunk does not depend on the other chunks. BatchNorm in training mode breaks that
(its statistics are per chunk, and running statistics are updated twice): use eval-mode
BatchNorm, GroupNorm or LayerNorm for exact equality. Memory for activations is one chunk's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def grad_cache_step(
    encoder: Callable[[Tensor], Tensor],
    inputs: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    *,
    chunk_size: int,
    backward: Callable[..., None] | None = None,
) -> Tensor:
    """Accumulate into the parameters' ``.grad`` the gradient of ``loss_fn(encoder(inputs))``,
    encoding ``inputs`` ([B, ...]) in chunks of ``chunk_size`` rows. ``encoder`` maps a chunk to
    embeddings ``[b, ...]``; ``loss_fn`` takes the concatenated ``[B, ...]`` embeddings (reshape
    to ``[N, V, D]`` inside it). Returns the (detached) loss. Call ``optimizer.zero_grad()``
    before and ``optimizer.step()`` after, as for ``loss.backward()``. Parameters inside
    ``loss_fn`` (a learnable temperature) get their gradients too. ``backward(tensor, grad)``
    replaces ``tensor.backward(grad)`` (pass ``fabric.backward`` under Lightning Fabric).
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1; got {chunk_size!r}")
    if not isinstance(inputs, Tensor) or inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError("inputs must be a tensor with a non-empty batch dimension [B, ...]")
    chunks = inputs.split(chunk_size)
    states = []
    cached = []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state(chunk.device))
            cached.append(encoder(chunk))
    after_first_pass = _rng_state(inputs.device)
    embeddings = torch.cat(cached).detach().requires_grad_(True)
    loss = loss_fn(embeddings)
    loss.backward()  # embeddings.grad, and the gradients of any parameter inside loss_fn
    assert embeddings.grad is not None
    for chunk, state, grad in zip(chunks, states, embeddings.grad.split(chunk_size), strict=True):
        _set_rng_state(state, chunk.device)
        out = encoder(chunk)
        if backward is None:
            out.backward(grad)
        else:
            backward(out, grad)
    _set_rng_state(after_first_pass, inputs.device)
    return loss.detach()
