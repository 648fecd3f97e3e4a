"""Graph recommendation benchmark: train each (dataset, method) with its config in
``configs/graph/`` and write the test table next to the published numbers.

    python benchmarks/graph.py                                   # Gowalla, all four methods
    python benchmarks/graph.py --methods lightgcn sgl
    python benchmarks/graph.py --collect                         # only re-read finished runs
    python benchmarks/graph.py --methods lightgcn --set train.progress=false
    python benchmarks/graph.py --timing 5 --threads 1            # seconds per epoch

Each run trains into ``runs/graph/<dataset>_<method>`` and resumes there when the folder holds
a checkpoint (a killed benchmark continues where it stopped). Writes
``benchmarks/results/graph.json`` (one record per run: dataset, method, metrics of the final
weights, best evaluation, epochs, seconds, seconds per epoch, device, command) and
``benchmarks/results/graph.md``. ``--timing STEPS`` times STEPS training steps per method (after
one warm-up step) plus one full-ranking evaluation, and writes
``benchmarks/results/graph_timing.json``.

Protocol: LightGCN's Gowalla split, no validation set; the test set is evaluated every
``train.eval_every`` epochs (the published protocol); ``metrics`` are the final weights' test
metrics, ``best`` the best evaluation over training (what SGL-Torch and SELFRec report).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from _runs import device

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("lightgcn", "sgl", "simgcl", "lightgcl")
# LightGCN paper (He et al., SIGIR 2020), Table 3, Gowalla (the same split as the data here).
# SGL and SimGCL publish no Gowalla numbers; LightGCL's Gowalla table uses another split.
PUBLISHED = {
    ("gowalla", "lightgcn"): {"Recall@20": 0.1830, "NDCG@20": 0.1554},
}


def config_path(dataset: str, method: str) -> Path:
    return ROOT / "configs" / "graph" / f"{dataset}_{method}.yaml"


def run(dataset: str, method: str, overrides: list[str]) -> None:
    from contrastkit.recipes.graphrec import run_graphrec_training
    from contrastkit.train.checkpoint import latest_checkpoint
    from contrastkit.train.config import load_config

    path = config_path(dataset, method)
    if not path.is_file():
        raise FileNotFoundError(f"no config {path}")
    config = load_config(path, overrides)
    output = ROOT / "runs" / "graph" / f"{dataset}_{method}"
    checkpoints = output / "checkpoints"
    resume = checkpoints.is_dir() and latest_checkpoint(checkpoints) is not None
    print(f"== {dataset} {method} ({'resuming' if resume else 'new'}) -> {output}", flush=True)
    run_graphrec_training(config, output, resume=resume)


def time_epochs(datasets: list[str], methods: list[str], steps: int, command: str) -> list[dict]:
    """Seconds per training epoch of each method, from ``steps`` timed training steps (after
    one warm-up step) with the config's batch size, and the seconds of one evaluation."""
    import torch

    from contrastkit.recipes.graphrec import GraphRecTask, load_graph
    from contrastkit.train.config import load_config

    records = []
    for dataset in datasets:
        graph = None
        for method in methods:
            config = load_config(config_path(dataset, method))
            if graph is None:
                graph = load_graph(config.graphrec)
            task = GraphRecTask(config, graph, ROOT / "runs" / "timing")
            params = [p for p in task.model.parameters() if p.requires_grad]
            optimizer = torch.optim.Adam(params, lr=config.optim.lr)
            batch = min(config.train.batch_size, task.num_train())
            started = time.perf_counter()
            order = task.epoch_order(torch.Generator().manual_seed(0), batch)
            epoch_setup = time.perf_counter() - started  # SGL: the two edge-dropout views
            steps_per_epoch = task.num_train() // batch
            blocks = order[: steps_per_epoch * batch].reshape(-1, batch)
            task.model.train()
            logs: dict[str, float] = {}
            for k in range(steps + 1):
                if k == 1:
                    start = time.perf_counter()
                torch.manual_seed(k)
                optimizer.zero_grad(set_to_none=True)
                loss, logs = task.training_step(task.model, blocks[k % len(blocks)])
                loss.backward()
                optimizer.step()
            per_step = (time.perf_counter() - start) / steps
            started = time.perf_counter()
            metrics = task.ranking_metrics()
            evaluation = time.perf_counter() - started
            records.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "seconds_per_step": round(per_step, 3),
                    "steps_per_epoch": steps_per_epoch,
                    "batch_size": batch,
                    "seconds_per_epoch": round(per_step * steps_per_epoch + epoch_setup, 1),
                    "epoch_setup_seconds": round(epoch_setup, 2),
                    "evaluation_seconds": round(evaluation, 1),
                    "eval_every": config.train.eval_every,
                    "config_epochs": config.train.epochs,
                    "timed_steps": steps,
                    "last_step_losses": {k: round(v, 4) for k, v in logs.items()},
                    "recall20_after_timing": round(metrics["test_Recall@20"], 4),
                    "device": device(),
                    "command": command,
                }
            )
            print(json.dumps(records[-1]), flush=True)
    return records


def collect(command: str) -> list[dict]:
    records = []
    for summary_path in sorted((ROOT / "runs" / "graph").glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        run_dir = summary_path.parent
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        epochs = [json.loads(line) for line in lines if line.strip()]
        seconds = epochs[-1]["seconds"] if epochs else None
        trained = summary.get("epochs_trained")
        records.append(
            {
                "dataset": summary["dataset"],
                "method": summary["method"],
                "split": "test (no validation split: LightGCN protocol)",
                "metrics": {
                    k.removeprefix("test_"): v for k, v in summary.items() if k.startswith("test_")
                },
                "best": {
                    k.removeprefix("best_test_"): v
                    for k, v in summary.items()
                    if k.startswith("best_test_")
                },
                "best_epoch": summary.get("best_epoch"),
                "epochs": trained,
                "stopped_early": bool(epochs and epochs[-1].get("stopped_early")),
                "seconds": seconds,
                "seconds_per_epoch": round(seconds / trained, 1) if seconds and trained else None,
                "device": device(),
                "published": PUBLISHED.get((summary["dataset"], summary["method"])),
                "command": command,
                "config": str(config_path(summary["dataset"], summary["method"]).relative_to(ROOT)),
            }
        )
    return records


def table(records: list[dict]) -> str:
    lines = [
        "| dataset | method | Recall@20 | NDCG@20 | Recall@40 | NDCG@40 | best Recall@20 / NDCG@20 "
        "(epoch) | published Recall@20 / NDCG@20 | epochs | s per epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for r in records:
        m, b, p = r["metrics"], r["best"], r["published"]
        published = f"{p['Recall@20']:.4f} / {p['NDCG@20']:.4f}" if p else "—"
        lines.append(
            f"| {r['dataset']} | {r['method']} | {m.get('Recall@20', nan):.4f} | "
            f"{m.get('NDCG@20', nan):.4f} | {m.get('Recall@40', nan):.4f} | "
            f"{m.get('NDCG@40', nan):.4f} | {b.get('Recall@20', nan):.4f} / "
            f"{b.get('NDCG@20', nan):.4f} ({r['best_epoch']}) | {published} | "
            f"{r['epochs']} | {r['seconds_per_epoch']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["gowalla"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--collect", action="store_true", help="only tabulate finished runs")
    parser.add_argument(
        "--timing", type=int, metavar="STEPS", help="instead: time STEPS training steps per method"
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice; on a CPU shared with other jobs, 1 "
        "thread was 2.5x (LightGCN) to 14x (SGL's tiled contrastive term) faster than 2)",
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    if args.timing:
        records = time_epochs(args.datasets, args.methods, args.timing, command)
        path = RESULTS / "graph_timing.json"
        done = {(r["dataset"], r["method"]) for r in records}
        kept = [
            r
            for r in (json.loads(path.read_text()) if path.is_file() else [])
            if (r["dataset"], r["method"]) not in done
        ]
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(kept + records, indent=2) + "\n")
        return 0
    if not args.collect:
        for dataset in args.datasets:
            for method in args.methods:
                run(dataset, method, args.set)
    records = collect(command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "graph.json").write_text(json.dumps(records, indent=2) + "\n")
    (RESULTS / "graph.md").write_text(table(records) + "\n")
    print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
