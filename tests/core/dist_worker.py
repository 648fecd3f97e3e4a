"""Worker for the 2-process gloo tests (module level so that spawn can pickle it)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def make_data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, 6, generator=g, dtype=torch.float64)  # global batch: 8 instances, V=3
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    return x, labels


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4)
    ).double()


def train(model, x, labels, loss_name, impl, steps=3, gather=None):
    import contrastkit.losses as L
    from contrastkit.core import core_backend

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        z = model(x)
        y = labels
        if gather is not None:
            z, y = gather(z, y)
        with core_backend(impl, tile_size=5):
            loss = L.supcon(z, y) if loss_name == "supcon" else getattr(L, loss_name)(z)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def worker(rank: int, world: int, init_file: str, loss_name: str, impl: str, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from contrastkit.core.distributed import gather, gather_with_grad

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, labels = make_data()
        local = slice(rank * 4, (rank + 1) * 4)
        model = DistributedDataParallel(make_model())

        def gather_both(z, y):
            return gather_with_grad(z), gather(y)

        train(model, x[local], labels[local], loss_name, impl, gather=gather_both)
        if rank == 0:
            torch.save({k: v.detach() for k, v in model.module.state_dict().items()}, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # leave without running C++ destructors: gloo's threads can abort a normal interpreter exit
    # ("terminate called without an active exception") after the work is done
    os._exit(0)
