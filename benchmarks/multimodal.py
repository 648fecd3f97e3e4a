"""Multimodal (CLIP-style) benchmark: every objective on MovieLens-100k items (title / genres /
ratings, cross-modal retrieval) and CLIP vs CWCL vs SigLIP on Fashion-MNIST (LiT setting,
zero-shot accuracy), several seeds each, with the configs in ``configs/multimodal/``.

    python benchmarks/multimodal.py                       # everything (~20 min on one thread)
    python benchmarks/multimodal.py --datasets movielens  # MovieLens only (~5 min)
    python benchmarks/multimodal.py --methods clip cwcl --seeds 0 1
    python benchmarks/multimodal.py --collect             # only re-read finished runs

Each run trains into ``runs/multimodal/<dataset>_<method>_s<seed>``; a folder with a
``summary.json`` is only re-read, one with a checkpoint is resumed (a killed benchmark continues
where it stopped). Writes ``benchmarks/results/multimodal.json`` (one record per dataset and
method: metrics as mean, sample std and per-seed values; seeds; seconds; device; the command)
and ``benchmarks/results/multimodal.md`` (the tables), and prints the tables.

Methods are a config plus overrides (``METHODS``): the objectives with the shipped configs, and
CLIP variants: label smoothing 0.1 (``clip_ls``), the intra-modal NT-Xent term with weight 0.5
(``clip_intra``), a learnt temperature (``clip_learnt_tau``) and, on MovieLens, the title
through a trainable MLP head instead of frozen (``clip_title_head``, D = 128). Nothing was tuned
per objective (there is no validation split of the held-out movies): one temperature (0.07) for
the softmax objectives, SigLIP's initial values (0.1, bias -10).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "multimodal"
KS = (1, 5, 10)

# method -> (config name, overrides)
METHODS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "movielens": {
        "clip": ("movielens_clip", []),
        "clip_ls": ("movielens_clip", ["multimodal.label_smoothing=0.1"]),
        "clip_intra": ("movielens_clip", ["multimodal.intra_weight=0.5"]),
        "clip_learnt_tau": ("movielens_clip", ["multimodal.learnable_temperature=true"]),
        "clip_title_head": ("movielens_clip", ["multimodal.frozen=[]"]),
        "mv_infonce": ("movielens_mv_infonce", []),
        "mv_dhel": ("movielens_mv_dhel", []),
        "cwcl": ("movielens_cwcl", []),
        "siglip": ("movielens_siglip", []),
    },
    "fashion_mnist": {
        "clip": ("fashion_mnist_clip", []),
        "clip_ls": ("fashion_mnist_clip", ["multimodal.label_smoothing=0.1"]),
        "cwcl": ("fashion_mnist_cwcl", []),
        "siglip": ("fashion_mnist_siglip", []),
    },
}
DEFAULT_SEEDS = {"movielens": [0, 1, 2, 3, 4], "fashion_mnist": [0, 1, 2]}


def run_dir(dataset: str, method: str, seed: int) -> Path:
    return RUNS / f"{dataset}_{method}_s{seed}"


def run(dataset: str, method: str, seed: int) -> dict:
    """Train (or resume, or re-read) one run; returns its summary."""
    from contrastkit.recipes.multimodal import run_multimodal_training
    from contrastkit.train.checkpoint import latest_checkpoint
    from contrastkit.train.config import load_config

    config_name, overrides = METHODS[dataset][method]
    path = ROOT / "configs" / "multimodal" / f"{config_name}.yaml"
    config = load_config(path, [f"train.seed={seed}", "train.progress=false", *overrides])
    output = run_dir(dataset, method, seed)
    if (output / "summary.json").is_file():
        print(f"== {output.name}: finished before, re-read", flush=True)
        return json.loads((output / "summary.json").read_text())
    checkpoints = output / "checkpoints"
    resume = checkpoints.is_dir() and latest_checkpoint(checkpoints) is not None
    print(f"== {output.name} ({'resuming' if resume else 'new'})", flush=True)
    return run_multimodal_training(config, output, resume=resume, echo=False)


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def metric_keys(summary: dict) -> list[str]:
    if summary["dataset"] == "fashion_mnist":
        return ["zero_shot_acc"]
    names = summary["modalities"]
    pairs = [f"{a}->{b}" for a in names for b in names if a != b]
    return [f"R@{k}" for k in KS] + [f"{p}/R@{k}" for p in pairs for k in KS]


def group_record(dataset: str, method: str, seeds: list[int], summaries: list[dict]) -> dict:
    config_name, overrides = METHODS[dataset][method]
    metrics = {}
    for key in metric_keys(summaries[0]):
        values = [float(s[key]) for s in summaries]
        mean, std = _mean_std(values)
        metrics[key] = {"mean": mean, "std": std, "values": values}
    record = {
        "dataset": dataset,
        "method": method,
        "config": f"configs/multimodal/{config_name}.yaml",
        "overrides": overrides,
        "seeds": seeds,
        "metrics": metrics,
        "seconds": round(sum(float(s["total_seconds"]) for s in summaries), 1),
        "train_seconds_per_run": round(
            sum(float(s["wall_seconds"]) for s in summaries) / len(summaries), 2
        ),
        "device": f"{platform.machine()} cpu ({_threads()} thread(s))",
    }
    if dataset == "movielens":
        record["chance"] = summaries[0]["chance"]
        record["ceiling"] = summaries[0]["ceiling"]
        record["data"] = summaries[0]["data"]
    else:
        record["data"] = summaries[0]["data"]
    return record


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _cell(metric: dict, scale: float = 100.0) -> str:
    return f"{scale * metric['mean']:.2f} ± {scale * metric['std']:.2f}"


def tables(records: list[dict]) -> str:
    """The MovieLens tables (mean over modality pairs; per pair) and the Fashion-MNIST table,
    mean ± sample std over seeds, in %."""
    out = []
    movielens = [r for r in records if r["dataset"] == "movielens"]
    if movielens:
        first = movielens[0]
        test = first["data"]["test"]
        out += [
            f"MovieLens-100k, {test} held-out movies: Recall@k of cross-modal retrieval, mean over "
            "the 6 ordered modality pairs (title*, genres, ratings; * = frozen MiniLM), %",
            "",
            "| method | seeds | R@1 | R@5 | R@10 | train s / run |",
            "|---|---|---|---|---|---|",
        ]
        for r in movielens:
            cells = " | ".join(_cell(r["metrics"][f"R@{k}"]) for k in KS)
            out.append(
                f"| {r['method']} | {len(r['seeds'])} | {cells} | {r['train_seconds_per_run']} |"
            )
        chance = " | ".join(f"{100 * first['chance'][f'R@{k}']:.2f}" for k in KS)
        out.append(f"| chance | — | {chance} | — |")
        pairs = list(dict.fromkeys(key.split("/")[0] for key in first["metrics"] if "->" in key))
        out += [
            "",
            "Per ordered pair (query->gallery), R@1 / R@5 / R@10, mean ± std over seeds, %",
            "",
            "| method | " + " | ".join(pairs) + " |",
            "|---|" + "---|" * len(pairs),
        ]
        for r in movielens:
            cells = [" / ".join(_cell(r["metrics"][f"{p}/R@{k}"]) for k in KS) for p in pairs]
            out.append(f"| {r['method']} | " + " | ".join(cells) + " |")
        galleries = [p.split("->")[1] for p in pairs]
        ceiling = [
            " / ".join(f"{100 * first['ceiling'][f'{g}/R@{k}']:.2f}" for k in KS) for g in galleries
        ]
        out.append("| ceiling (ties) | " + " | ".join(ceiling) + " |")
    fashion = [r for r in records if r["dataset"] == "fashion_mnist"]
    if fashion:
        data = fashion[0]["data"]
        out += [
            "",
            f"Fashion-MNIST, zero-shot accuracy on the {data['test']} test images (SmallCNN vs "
            f"frozen MiniLM descriptions, {data['train']} training images), %",
            "",
            "| method | seeds | zero-shot acc | train s / run |",
            "|---|---|---|---|",
        ]
        for r in fashion:
            out.append(
                f"| {r['method']} | {len(r['seeds'])} | {_cell(r['metrics']['zero_shot_acc'])} "
                f"| {r['train_seconds_per_run']} |"
            )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--methods", nargs="+", help="subset of the methods (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, help="MovieLens seeds (default 0..4)")
    parser.add_argument(
        "--fashion-seeds", nargs="+", type=int, help="Fashion-MNIST seeds (default 0 1 2)"
    )
    parser.add_argument("--collect", action="store_true", help="only tabulate finished runs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    seeds = {
        "movielens": args.seeds or DEFAULT_SEEDS["movielens"],
        "fashion_mnist": args.fashion_seeds or DEFAULT_SEEDS["fashion_mnist"],
    }
    started = time.perf_counter()
    path = RESULTS / "multimodal.json"
    previous = (
        {(r["dataset"], r["method"]): r for r in json.loads(path.read_text())}
        if (args.collect and path.is_file())
        else {}
    )
    records = []
    for dataset in args.datasets:
        for method in METHODS[dataset]:
            if args.methods and method not in args.methods:
                continue
            summaries, done = [], []
            for seed in seeds[dataset]:
                if args.collect:
                    path = run_dir(dataset, method, seed) / "summary.json"
                    if not path.is_file():
                        continue
                    summaries.append(json.loads(path.read_text()))
                else:
                    summaries.append(run(dataset, method, seed))
                done.append(seed)
            if summaries:
                record = group_record(dataset, method, done, summaries)
                record["command"] = command
                old = previous.get((dataset, method))
                if old is not None and old["seeds"] == done:  # --collect keeps the training run's
                    record["command"], record["device"] = old["command"], old["device"]
                records.append(record)
    if not records:
        print("no finished run to tabulate", file=sys.stderr)
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")
    text = tables(records)
    minutes = (time.perf_counter() - started) / 60
    footer = f"\n\nCommand: `{records[0]['command']}` ({records[0]['device']})"
    if not args.collect:
        footer += f"; {minutes:.1f} min in all"
    (RESULTS / "multimodal.md").write_text(text + footer + "\n")
    print(text + footer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
