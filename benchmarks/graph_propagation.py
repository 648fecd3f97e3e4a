"""LightGCN training step on Gowalla: the symmetric CSR propagation against torch.sparse.mm on
the COO adjacency (whose backward transposes the matrix every call).

    python benchmarks/graph_propagation.py --steps 3 --rounds 2

Times ``--steps`` full training steps (propagation, BPR, backward, Adam) of the shipped
``configs/graph/gowalla_lightgcn.yaml`` after one warm-up step, alternating the two paths for
``--rounds`` rounds (so both see the same machine load), on one CPU thread. Writes
``benchmarks/results/graph_propagation.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch

    from contrastkit.recipes.graphrec import GraphRecTask, load_graph
    from contrastkit.train.config import load_config

    torch.set_num_threads(1)
    config = load_config(ROOT / "configs" / "graph" / "gowalla_lightgcn.yaml")
    task = GraphRecTask(config, load_graph(config.graphrec), ROOT / "runs" / "timing")
    optimizer = torch.optim.Adam(task.model.parameters(), lr=config.optim.lr)
    batch = config.train.batch_size
    order = task.epoch_order(torch.Generator().manual_seed(0), batch)
    blocks = order[: (len(order) // batch) * batch].reshape(-1, batch)
    fast, propagate = task.adj_csr, task.model.propagate

    def plain(adjacency, *rest, symmetric=False, **kwargs):
        return propagate(adjacency, *rest, symmetric=False, **kwargs)

    paths = {
        "csr_symmetric": (fast, propagate),  # what the recipe ships
        "coo_sparse_mm": (task.adj, plain),  # torch.sparse.mm with its transposing backward
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, (adjacency, fn) in paths.items():
            task.adj_csr, task.model.propagate = adjacency, fn
            for k in range(args.steps + 1):
                if k == 1:
                    start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss, _ = task.training_step(task.model, blocks[k])
                loss.backward()
                optimizer.step()
            times[name].append((time.perf_counter() - start) / args.steps)
            print(f"{name}: {times[name][-1]:.3f} s per step", flush=True)
    steps_per_epoch = task.num_train() // batch
    record = {
        "dataset": "gowalla",
        "method": "lightgcn",
        "metric": "seconds per training step (batch 2048)",
        "seconds_per_step": {k: round(min(v), 3) for k, v in times.items()},
        "seconds_per_epoch": {k: round(min(v) * steps_per_epoch, 1) for k, v in times.items()},
        "speedup": round(min(times["coo_sparse_mm"]) / min(times["csr_symmetric"]), 2),
        "device": f"{platform.machine()} cpu (1 thread)",
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "graph_propagation.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
