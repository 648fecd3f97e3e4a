"""Graph recommendation benchmark: train each (dataset, method) with its config in
``configs/graph/`` and write the test table next to the published numbers.

    python benchmarks/graph.py                                   # Gowalla, all four methods
    python benchmarks/graph.py --methods lightgcn sgl
    python benchmarks/graph.py --collect                         # only re-read finished runs
    python benchmarks/graph.py --methods lightgcn --set train.progress=false
    python benchmarks/graph.py --timing 5 --threads 1            # seconds per epoch
    python benchmarks/graph.py --datasets ml100k --seeds 0 1 2   # MovieLens 100K, 3 seeds

Each run trains into ``runs/graph/<dataset>_<method>`` (the config's seed) or, with
``--seeds``, into ``runs/graph/<dataset>_<method>_s<seed>`` (``train.seed=<seed>``), and resumes
there when the folder holds a checkpoint (a killed benchmark continues where it stopped).
Writes ``benchmarks/results/graph.json`` (one record per run: dataset, method, seed, metrics of
the final weights, best evaluation, epochs, seconds, seconds per epoch, device, command; a run
not trained by this invocation keeps its earlier command) and ``benchmarks/results/graph.md``
(the runs, then mean ± sample std over the seeds of each dataset and method), and
``benchmarks/results/graph_curves.json``: the test evaluations over training of every run
folder, finished or not (the curve of a run still going, or killed and resumable), plotted
as ``benchmarks/results/graph_curves_<dataset>.png`` (test Recall@20 against epochs).
``--timing STEPS`` times STEPS training steps per method (after one warm-up step) plus one
full-ranking evaluation, with the ``--set`` overrides (``--set graphrec.core=dense`` times the
dense core), and writes ``benchmarks/results/graph_timing.json`` (a record replaces the one of
the same dataset, method, loss and core).

Protocol: LightGCN's Gowalla split (MovieLens 100K: a seeded random 80 / 20 split of each
user's items), no validation set; the test set is evaluated every
``train.eval_every`` epochs (the published protocol); ``metrics`` are the final weights' test
metrics, ``best`` the best evaluation over training (what SGL-Torch and SELFRec report).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from _runs import (
    absent_folder_records,
    accelerator_kind,
    add_set_argument,
    collect_runs,
    command_line,
    device,
    finished_run_record,
    mean_std,
    prefixed,
    read_metrics,
    synchronize,
    train_in_chain,
    write_merged,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "graph"
METHODS = ("lightgcn", "sgl", "simgcl", "lightgcl")
# LightGCN paper (He et al., SIGIR 2020), Table 3, Gowalla (the same split as the data here).
# SGL and SimGCL publish no Gowalla numbers; LightGCL's Gowalla table uses another split.
PUBLISHED = {
    ("gowalla", "lightgcn"): {"Recall@20": 0.1830, "NDCG@20": 0.1554},
}


def config_path(dataset: str, method: str) -> Path:
    return ROOT / "configs" / "graph" / f"{dataset}_{method}.yaml"


def run_dir(dataset: str, method: str, seed: int | None) -> Path:
    name = f"{dataset}_{method}" if seed is None else f"{dataset}_{method}_s{seed}"
    return RUNS / name


def run(dataset: str, method: str, seed: int | None, overrides: list[str]) -> Path | None:
    from contrastkit.recipes.graphrec import run_graphrec_training
    from contrastkit.train.config import load_config

    path = config_path(dataset, method)
    if not path.is_file():
        raise FileNotFoundError(f"no config {path}")
    seeded = [] if seed is None else [f"train.seed={seed}"]
    config = load_config(path, [*seeded, *overrides])
    output = run_dir(dataset, method, seed)
    return train_in_chain(
        output, output.name, lambda resume: run_graphrec_training(config, output, resume=resume)
    )


def time_epochs(
    datasets: list[str],
    methods: list[str],
    steps: int,
    command: str,
    overrides: list[str],
    accelerator: str = "cpu",
) -> list[dict]:
    """Seconds per training epoch of each method, from ``steps`` timed training steps (after
    one warm-up step) with the config's batch size (and ``overrides``, e.g.
    ``graphrec.core=dense``), and the seconds of one evaluation, on ``accelerator``."""
    import torch

    from contrastkit.recipes.graphrec import GraphRecTask, load_graph
    from contrastkit.train.config import load_config

    records = []
    for dataset in datasets:
        graph = None
        for method in methods:
            config = load_config(config_path(dataset, method), overrides)
            if graph is None:
                graph = load_graph(config.graphrec)
            task = GraphRecTask(config, graph, ROOT / "runs" / "timing")
            task.to(torch.device(accelerator))
            task.model.to(torch.device(accelerator))
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
                    synchronize(accelerator)
                    start = time.perf_counter()
                torch.manual_seed(k)
                optimizer.zero_grad(set_to_none=True)
                loss, logs = task.training_step(task.model, blocks[k % len(blocks)])
                loss.backward()
                optimizer.step()
            synchronize(accelerator)
            per_step = (time.perf_counter() - start) / steps
            started = time.perf_counter()
            metrics = task.ranking_metrics()
            evaluation = time.perf_counter() - started
            records.append(
                {
                    "dataset": dataset,
                    "method": method,
                    **timing_key(config),
                    "overrides": sorted(overrides),
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
                    "device": device(accelerator),
                    "command": command,
                }
            )
            print(json.dumps(records[-1]), flush=True)
    return records


def timing_key(config) -> dict:
    """What a timing depends on besides dataset and method: the contrastive loss and core."""
    contrastive = config.graphrec.method != "lightgcn"
    return {
        "loss": config.loss.name if contrastive else None,
        "core": config.graphrec.core if contrastive else None,
    }


def timing_identity(record: dict) -> tuple:
    """A timing record replaces an older one of the same dataset, method, loss, core, ``--set``
    overrides (none for the older records) and kind of device (CPU or GPU)."""
    keys = ("dataset", "method", "loss", "core")
    overrides = tuple(record.get("overrides", []))
    return (*(record.get(k) for k in keys), overrides, accelerator_kind(record))


def run_record(run: Path, command: str) -> dict | None:
    """The record of one finished run folder (``None`` for another recipe's run)."""
    from contrastkit.train.config import load_config

    config = load_config(run / "config.yaml")
    if config.recipe != "graphrec" or config.graphrec.valid_fraction is not None:
        return None  # another recipe's run, or a validation (tuning) run
    key = (config.graphrec.dataset, config.graphrec.method)
    return finished_run_record(
        run,
        command,
        lambda summary: {
            "seed": config.train.seed,
            "split": "test (no validation split: LightGCN protocol)",
            "metrics": prefixed(summary, "test_"),
            "best": prefixed(summary, "best_test_"),
        },
        published=PUBLISHED.get(key),
        config=str(config_path(*key).relative_to(ROOT)),
    )


def curve_records() -> list[dict]:
    """The evaluations so far of every graphrec run folder (finished or not), in epoch order."""
    from contrastkit.train.config import load_config

    curves = []
    for saved in sorted(RUNS.glob("*/config.yaml")):
        run = saved.parent
        config = load_config(saved)
        if config.recipe != "graphrec" or config.graphrec.valid_fraction is not None:
            continue
        epochs = read_metrics(run / "metrics.jsonl")
        evaluations = [
            {"epoch": e["epoch"], "seconds": e["seconds"], **prefixed(e, "test_")}
            for e in epochs
            if any(k.startswith("test_") for k in e)
        ]
        curves.append(
            {
                "run": run.name,
                "dataset": config.graphrec.dataset,
                "method": config.graphrec.method,
                "seed": config.train.seed,
                "finished": (run / "summary.json").is_file(),
                "epochs_done": epochs[-1]["epoch"] if epochs else 0,
                "config_epochs": config.train.epochs,
                "seconds": epochs[-1]["seconds"] if epochs else 0.0,
                "evaluations": evaluations,
            }
        )
    return curves


def plot_curves(curves: list[dict]) -> list[Path]:
    """One PNG per dataset: test Recall@20 against epochs, a line per run folder."""
    from contrastkit.eval import plot_overlaid_curves

    written = []
    for dataset in sorted({c["dataset"] for c in curves}):
        series = {
            c["run"].removeprefix(f"{dataset}_"): (
                [e["epoch"] for e in c["evaluations"]],
                [e.get("Recall@20") for e in c["evaluations"]],
            )
            for c in curves
            if c["dataset"] == dataset and c["evaluations"]
        }
        if series:
            path = RESULTS / f"graph_curves_{dataset}.png"
            plot_overlaid_curves(
                series, path, xlabel="epoch", ylabel="test Recall@20", title=dataset
            )
            written.append(path)
    return written


def curve_table(curves: list[dict], dataset: str) -> str:
    """Markdown: test Recall@20 / NDCG@20 of every evaluation (rows: epochs) of the run
    folders of ``dataset`` without a ``_s<seed>`` suffix (all of them if every one has one;
    columns: runs, named without the dataset prefix), ``—`` where a run did not evaluate; the
    last row is each run's epochs so far and whether it finished, or stopped unfinished (its
    folder is not on this machine, :func:`absent_folder_records`)."""
    runs = [c for c in curves if c["dataset"] == dataset]
    runs = [c for c in runs if not re.search(r"_s\d+$", c["run"])] or runs
    names = [c["run"].removeprefix(f"{dataset}_") for c in runs]
    cells = {
        (name, e["epoch"]): f"{e['Recall@20']:.4f} / {e['NDCG@20']:.4f}"
        for name, c in zip(names, runs, strict=True)
        for e in c["evaluations"]
        if "Recall@20" in e and "NDCG@20" in e
    }
    epochs = sorted({epoch for _, epoch in cells})
    lines = ["| epoch | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for epoch in epochs:
        row = [cells.get((name, epoch), "—") for name in names]
        lines.append(f"| {epoch} | " + " | ".join(row) + " |")
    status = [
        f"{c['epochs_done']} / {c['config_epochs']}"
        + (" (finished)" if c["finished"] else " (stopped)" if c.get("folder_absent") else "")
        for c in runs
    ]
    lines.append("| epochs done | " + " | ".join(status) + " |")
    return "\n".join(lines)


def seed_summary(records: list[dict]) -> str:
    """Mean ± sample std of the final test metrics over the seeded runs (``<run>_s<seed>``) of
    each dataset and method (the mean alone for a single seed)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if r["run"] == f"{r['dataset']}_{r['method']}_s{r['seed']}":
            groups.setdefault((r["dataset"], r["method"]), []).append(r)
    lines = [
        "| dataset | method | seeds (n) | Recall@20 | NDCG@20 | Recall@40 | NDCG@40 | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, method), runs in groups.items():
        cells = []
        for key in ("Recall@20", "NDCG@20", "Recall@40", "NDCG@40"):
            mean, std = mean_std([r["metrics"][key] for r in runs])
            cells.append(f"{mean:.4f} ± {std:.4f}" if len(runs) > 1 else f"{mean:.4f}")
        seeds = " ".join(str(r["seed"]) for r in runs) + f" ({len(runs)})"
        epochs = sorted({r["epochs"] for r in runs})
        lines.append(
            f"| {dataset} | {method} | {seeds} | {' | '.join(cells)} | "
            f"{', '.join(map(str, epochs))} |"
        )
    return "\n".join(lines)


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
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datasets", nargs="+", default=["gowalla"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--seeds", nargs="+", type=int, help="train one run per seed (default: the config's seed)"
    )
    parser.add_argument("--collect", action="store_true", help="only tabulate finished runs")
    parser.add_argument(
        "--timing", type=int, metavar="STEPS", help="instead: time STEPS training steps per method"
    )
    parser.add_argument(
        "--device", default="cpu", help="with --timing: cpu (default) or cuda (a GPU's timings)"
    )
    add_set_argument(parser)
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
    command = command_line()
    keys = {item.split("=", 1)[0].strip() for item in args.set}
    if args.seeds and "train.seed" in keys:
        parser.error("--seeds sets train.seed for each run; do not also pass train.seed in --set")
    if "graphrec.valid_fraction" in keys:
        parser.error(
            "the benchmark reports test-split runs in runs/graph/<dataset>_<method>; train "
            "validation runs (graphrec.valid_fraction) with `contrastkit train --output ...`"
        )
    if args.timing:
        records = time_epochs(
            args.datasets, args.methods, args.timing, command, args.set, args.device
        )
        write_merged(RESULTS / "graph_timing.json", records, timing_identity)
        return 0
    trained: set[Path] = set()
    if not args.collect:
        for dataset in args.datasets:
            for method in args.methods:
                for seed in args.seeds or [None]:
                    if (output := run(dataset, method, seed, args.set)) is not None:
                        trained.add(output)
    records = collect_runs(RUNS, RESULTS / "graph.json", run_record, command, trained)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "graph.json").write_text(json.dumps(records, indent=2) + "\n")
    curves = curve_records() + absent_folder_records(RESULTS / "graph_curves.json", RUNS)
    curves.sort(key=lambda c: c["run"])
    (RESULTS / "graph_curves.json").write_text(json.dumps(curves, indent=1) + "\n")
    plot_curves(curves)
    for dataset in sorted({c["dataset"] for c in curves}):
        (RESULTS / f"graph_curves_{dataset}.md").write_text(curve_table(curves, dataset) + "\n")
    text = table(records) + "\n\nMean ± sample std over seeds:\n\n" + seed_summary(records)
    (RESULTS / "graph.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
