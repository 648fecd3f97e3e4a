"""Node-level graph contrastive learning benchmark: GRACE and GRACE + POT on Cora (public
Planetoid split) for several seeds, with the configs in ``configs/graph/``.

    python benchmarks/graph_nodes.py                          # both methods, seeds 0..4
    python benchmarks/graph_nodes.py --seeds 0                # one seed of each
    python benchmarks/graph_nodes.py --methods grace --epochs 50
    python benchmarks/graph_nodes.py --collect                # only re-read finished runs
    python benchmarks/graph_nodes.py --set graphnode.pot_variant=sound --tag sound
    python benchmarks/graph_nodes.py --config-suffix paper    # cora_<method>_paper.yaml
    python benchmarks/graph_nodes.py --set graphnode.probe_split=random --tag random

``--config-suffix S`` reads ``configs/graph/<dataset>_<method>_S.yaml`` instead of
``<dataset>_<method>.yaml`` (``paper``: GRACE's own Cora setting); ``S`` then leads the tag.
Each run trains into ``runs/graph_nodes/<dataset>_<method>[_<S>][_<tag>][_e<epochs>]_s<seed>`` and
resumes there when the folder holds a checkpoint (a killed benchmark continues where it
stopped; a finished run is only re-read). Writes ``benchmarks/results/graph_nodes.json`` (one
record per run: dataset, method, seed, metrics, epochs, seconds, device, command) and
``benchmarks/results/graph_nodes.md`` (mean ± std over the seeds of each dataset / method /
tag / epochs). ``--threads`` defaults to 1 (the tensors are small; on a shared 2-core CPU a
second thread mostly waits).

Metrics: the linear probe's validation and test accuracy of the final weights (``val_acc``,
``test_acc``), the probe's L2 strength (chosen on the validation nodes), and the best
validation accuracy over the evaluations with the test accuracy at that epoch. With
``graphnode.probe_split=random`` (GRACE's protocol) ``val_acc`` is the 5-fold cross-validation
accuracy on the 10 % training part and ``test_acc`` the accuracy on the other 90 %.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _runs import add_set_argument, collect_runs, command_line, device, mean_std

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "graph_nodes"
METHODS = ("grace", "grace_pot")
METRICS = ("val_acc", "test_acc", "best_val_acc", "test_acc_at_best_val", "probe_weight_decay")


SPLITS = {
    "public": "public Planetoid split (train 140 / val 500 / test 1000 on Cora)",
    "random": "random 10 % train / 90 % test split of the labelled nodes (seed = train.seed), "
    "L2 by 5-fold CV on the train part (GRACE's eval.py)",
}


def config_path(dataset: str, method: str, suffix: str | None = None) -> Path:
    name = f"{dataset}_{method}" + (f"_{suffix}" if suffix else "")
    return ROOT / "configs" / "graph" / f"{name}.yaml"


def run_dir(dataset: str, method: str, seed: int, epochs: int | None, tag: str | None) -> Path:
    name = f"{dataset}_{method}"
    if tag:
        name += f"_{tag}"
    if epochs is not None:
        name += f"_e{epochs}"
    return RUNS / f"{name}_s{seed}"


def run(
    dataset: str,
    method: str,
    seed: int,
    epochs: int | None,
    tag: str | None,
    overrides: list,
    suffix: str | None = None,
) -> tuple[Path, bool]:
    """Train (or resume) one run; returns its folder and whether it trained now (False: it had
    finished before and was only re-read). ``suffix`` picks ``<dataset>_<method>_<suffix>.yaml``
    and leads the run's tag."""
    from contrastkit.recipes.graph_nodes import run_graph_node_training
    from contrastkit.train.checkpoint import latest_checkpoint
    from contrastkit.train.config import load_config

    path = config_path(dataset, method, suffix)
    if not path.is_file():
        raise FileNotFoundError(f"no config {path}")
    extra = [f"train.seed={seed}", "train.progress=false", *overrides]
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    config = load_config(path, extra)
    output = run_dir(dataset, method, seed, epochs, "_".join(t for t in (suffix, tag) if t))
    if (output / "summary.json").is_file():
        print(f"== {output.name}: finished before, re-read", flush=True)
        return output, False
    output.mkdir(parents=True, exist_ok=True)  # which config file the run came from
    (output / "benchmark_config.txt").write_text(str(path.relative_to(ROOT)) + "\n")
    checkpoints = output / "checkpoints"
    resume = checkpoints.is_dir() and latest_checkpoint(checkpoints) is not None
    print(f"== {output.name} ({'resuming' if resume else 'new'}) -> {output}", flush=True)
    run_graph_node_training(config, output, resume=resume)
    return output, True


def record(output: Path, command: str) -> dict:
    summary = json.loads((output / "summary.json").read_text())
    config = _yaml(output / "config.yaml")
    lines = (output / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line) for line in lines if line.strip()]
    seconds = epochs[-1]["seconds"] if epochs else None
    trained = summary.get("epochs_trained")
    source = output / "benchmark_config.txt"
    if source.is_file():
        config_file = source.read_text().strip()
    else:
        config_file = str(config_path(summary["dataset"], summary["method"]).relative_to(ROOT))
    return {
        "dataset": summary["dataset"],
        "method": summary["method"],
        "pot_variant": summary.get("pot_variant"),
        "tag": _tag(output.name, summary["dataset"], summary["method"]),
        "seed": config["train"]["seed"],
        "split": SPLITS[config["graphnode"].get("probe_split", "public")],
        "metrics": {k: summary[k] for k in METRICS if k in summary},
        "best_epoch": summary.get("best_epoch"),
        "epochs": trained,
        "seconds": seconds,
        "seconds_per_epoch": round(seconds / trained, 3) if seconds and trained else None,
        "device": device(),
        "command": command,
        "config": config_file,
        "run": str(output.relative_to(ROOT)),
    }


def _tag(name: str, dataset: str, method: str) -> str | None:
    """The ``<tag>`` part of ``<dataset>_<method>_<tag>[_e<epochs>]_s<seed>`` (None if none)."""
    middle = name.removeprefix(f"{dataset}_{method}").rsplit("_s", 1)[0].strip("_")
    parts = [p for p in middle.split("_") if p and not (p[0] == "e" and p[1:].isdigit())]
    return "_".join(parts) or None


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def table(records: list[dict]) -> str:
    """Mean ± std (sample std; the value alone for one seed) over the seeds of each group,
    accuracies in %."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["dataset"], r["method"], r.get("pot_variant"), r.get("tag"), r["epochs"])
        groups.setdefault(key, []).append(r)
    lines = [
        "| dataset | method | tag | epochs | seeds | val acc | test acc | test acc at best val "
        "| s per epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, method, variant, tag, epochs), rows in sorted(
        groups.items(), key=lambda item: tuple(str(k) for k in item[0])
    ):
        cells = []
        for key in ("val_acc", "test_acc", "test_acc_at_best_val"):
            mean, std = mean_std([100 * r["metrics"][key] for r in rows])
            cells.append(f"{mean:.2f} ± {std:.2f}" if len(rows) > 1 else f"{mean:.2f}")
        per_epoch = [r["seconds_per_epoch"] for r in rows if r["seconds_per_epoch"]]
        speed = f"{sum(per_epoch) / len(per_epoch):.2f}" if per_epoch else "—"
        name = method + (f" ({variant})" if variant else "")
        seeds = ",".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"]))
        lines.append(
            f"| {dataset} | {name} | {tag or '—'} | {epochs:g} | {seeds} | "
            + " | ".join(cells)
            + f" | {speed} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datasets", nargs="+", default=["cora"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, help="train.epochs (default: the config's 200)")
    parser.add_argument("--collect", action="store_true", help="only tabulate finished runs")
    add_set_argument(parser)
    parser.add_argument("--tag", help="name part of the run folders (needed with --set)")
    parser.add_argument(
        "--config-suffix",
        help="read configs/graph/<dataset>_<method>_<SUFFIX>.yaml (e.g. paper: GRACE's setting)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    if args.set and not args.tag:
        parser.error("--set changes the runs: give them a --tag (their own run folders)")
    import torch

    torch.set_num_threads(args.threads)
    command = command_line()
    trained_now = set()
    if not args.collect:
        for dataset in args.datasets:
            for method in args.methods:
                for seed in args.seeds:
                    output, trained = run(
                        dataset,
                        method,
                        seed,
                        args.epochs,
                        args.tag,
                        args.set,
                        args.config_suffix,
                    )
                    if trained:
                        trained_now.add(output)
    path = RESULTS / "graph_nodes.json"
    # a run trained by an earlier invocation keeps that invocation's command and device
    records = collect_runs(RUNS, path, record, command, trained_now)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")
    (RESULTS / "graph_nodes.md").write_text(table(records) + "\n")
    print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
