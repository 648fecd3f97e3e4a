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


def train(model, x, labels, loss_name, impl, steps=3, gather=None, local=False):
    import contrastkit.losses as L
    from contrastkit.core import core_backend
    from contrastkit.core.distributed import local_loss

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = getattr(L, loss_name)
    for _ in range(steps):
        z = model(x)
        y = labels
        inputs = (y,) if loss_name == "supcon" else ()
        with core_backend(impl, tile_size=5):
            if local:  # own instances as anchors, gathered candidates
                loss = local_loss(loss_fn, z, *inputs)
            else:
                if gather is not None:
                    z, y = gather(z, y)
                    inputs = (y,) if loss_name == "supcon" else ()
                loss = loss_fn(z, *inputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def worker(
    rank: int, world: int, init_file: str, loss_name: str, impl: str, out: str, mode: str
) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from contrastkit.core.distributed import gather, gather_with_grad

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, labels = make_data()
        local = slice(rank * 4, (rank + 1) * 4)
        model = DistributedDataParallel(make_model())

        def gather_both(z, y):
            return gather_with_grad(z), gather(y)

        train(
            model,
            x[local],
            labels[local],
            loss_name,
            impl,
            gather=gather_both,
            local=mode == "local",
        )
        if rank == 0:
            torch.save({k: v.detach() for k, v in model.module.state_dict().items()}, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # leave without running C++ destructors: gloo's threads can abort a normal interpreter exit
    # ("terminate called without an active exception") after the work is done
    os._exit(0)


def mismatch_worker(rank: int, world: int, init_file: str, case: str, out: str) -> None:
    """Each rank passes a different batch size or dtype; records the error message."""
    import contrastkit.losses as L
    from contrastkit.core.distributed import gather, local_loss

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    message = "no error"
    try:
        if case == "batch":
            z = torch.randn(4 + rank, 2, 3)
            local_loss(L.info_nce, z)
        elif case == "dtype":
            z = torch.randn(4, 2, 3, dtype=torch.float32 if rank == 0 else torch.float64)
            local_loss(L.info_nce, z)
        else:  # labels of different lengths
            gather(torch.zeros(3 + rank, dtype=torch.long))
    except ValueError as error:
        message = str(error)
    finally:
        with open(f"{out}.{rank}", "w") as handle:
            handle.write(message)
        dist.destroy_process_group()
    os._exit(0)
