"""Image benchmark: losses x views x seeds at equal wall time, with linear, kNN, effective rank.

    python benchmarks/images.py                       # Fashion-MNIST, 10k train images, 60 s/run
    python benchmarks/images.py --budget 20 --seeds 0 # a quicker look

Each run gets the same training-time budget: a few timed steps estimate the step time of the
(loss, V) pair, and ``train.max_steps`` is set so that training fits the budget (the cosine
schedule ends at that step). Run it on an otherwise idle machine: the probe and the runs time
the CPU. Writes ``benchmarks/results/images.json`` (one record per run: dataset, loss, views,
seed, metrics, epochs, seconds, device, command) and ``benchmarks/results/images.md`` (mean ±
std over seeds, next to the raw-pixel and untrained-encoder baselines).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from contrastkit.recipes.images import (
    SUMMARY_METRICS,
    ImageContrastiveTask,
    load_dataset,
    run_image_training,
)
from contrastkit.train.config import load_config
from contrastkit.train.optim import build_optimizer

RESULTS = Path(__file__).parent / "results"


def seconds_per_step(overrides: list[str], repeats: int = 3) -> tuple[float, int]:
    """Measured training-step time of a configuration, and its steps per epoch."""
    config = load_config(None, overrides)
    task = ImageContrastiveTask(config, load_dataset(config))
    optimizer = build_optimizer(
        "adam", task.model.parameters(), lr=1e-3, weight_decay=0.0, momentum=0.9
    )
    n = task.num_train()
    batch = min(config.train.batch_size, n)
    times = []
    for k in range(repeats + 1):
        indices = torch.randperm(n)[:batch]
        start = time.perf_counter()
        loss, _ = task.training_step(task.model, indices)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if k:  # the first step warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times), max(1, n // batch)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per run")
    parser.add_argument("--losses", nargs="+", default=["info_nce", "dcl", "mv_infonce", "mv_dhel"])
    parser.add_argument("--views", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="benchmarks/runs/images")
    parser.add_argument("--name", default="images", help="results file stem")
    parser.add_argument("overrides", nargs="*", help="extra key=value config overrides")
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)

    records = []
    results_path = RESULTS / f"{args.name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    for loss in args.losses:
        for views in args.views:
            if loss in ("dcl", "dclw", "dhel") and views != 2:
                print(f"skip {loss} V={views}: a two-view loss", file=sys.stderr)
                continue
            base = [
                f"data.name={args.dataset}",
                f"data.train_limit={args.train_limit}",
                f"loss.name={loss}",
                f"views.views={views}",
                "train.progress=false",
                "train.eval_every=0",
                *args.overrides,
            ]
            step_time, steps_per_epoch = seconds_per_step(base)
            steps = max(1, round(args.budget / step_time))
            epochs = math.ceil(steps / steps_per_epoch)
            for seed in args.seeds:
                config = load_config(
                    None,
                    [
                        *base,
                        f"train.seed={seed}",
                        f"train.epochs={epochs}",
                        f"train.max_steps={steps}",
                    ],
                )
                out = Path(args.output) / f"{loss}-v{views}-s{seed}"
                if out.exists():
                    shutil.rmtree(out)
                summary = run_image_training(config, out, echo=False)
                last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
                record = {
                    "dataset": args.dataset,
                    "train_images": args.train_limit,
                    "loss": loss,
                    "views": views,
                    "seed": seed,
                    "metrics": {k: summary[k] for k in SUMMARY_METRICS},
                    "baselines": summary["baselines"],
                    "epochs": summary["epochs_trained"],
                    "steps": steps,
                    "measured_seconds_per_step": round(step_time, 4),
                    "seconds": last["seconds"],
                    "budget_seconds": args.budget,
                    "seconds_with_evaluation": summary["wall_seconds"],
                    "device": f"cpu ({platform.processor() or platform.machine()}, "
                    f"{torch.get_num_threads()} threads)",
                    "command": command,
                }
                records.append(record)
                print(
                    json.dumps(
                        {
                            k: record[k]
                            for k in ("loss", "views", "seed", "epochs", "seconds", "metrics")
                        }
                    ),
                    flush=True,
                )
                results_path.write_text(json.dumps(records, indent=2) + "\n")
    table = markdown_table(records)
    (RESULTS / f"{args.name}.md").write_text(f"{table}\n\nCommand: `{command}`\n")
    print(table)
    return 0


def markdown_table(records: list[dict]) -> str:
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        groups.setdefault((r["loss"], r["views"]), []).append(r)

    def cell(values: list[float], digits: int) -> str:
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    lines = [
        "| loss | V | epochs | linear acc | kNN acc | effective rank | uniformity | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (loss, views), rs in groups.items():
        m = [r["metrics"] for r in rs]
        lines.append(
            f"| {loss} | {views} | {rs[0]['epochs']} | {cell([x['linear_acc'] for x in m], 4)} | "
            f"{cell([x['knn_acc'] for x in m], 4)} | {cell([x['effective_rank'] for x in m], 1)} | "
            f"{cell([x['uniformity'] for x in m], 3)} | "
            f"{statistics.fmean(r['seconds'] for r in rs):.0f} |"
        )
    if records:
        b = records[0]["baselines"]
        lines.append(
            f"| raw pixels | — | — | {b['raw_linear_acc']:.4f} | {b['raw_knn_acc']:.4f} "
            "| — | — | — |"
        )
        lines.append(
            f"| untrained encoder | — | — | {b['untrained_linear_acc']:.4f} | "
            f"{b['untrained_knn_acc']:.4f} | {b['untrained_effective_rank']:.1f} | — | — |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
