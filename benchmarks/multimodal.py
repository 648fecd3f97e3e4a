"""Multimodal (CLIP-style) benchmark: every objective on MovieLens-100k items (title / genres /
ratings, cross-modal retrieval) and CLIP vs CWCL vs SigLIP on Fashion-MNIST (LiT setting,
zero-shot accuracy), several seeds each, with the configs in ``configs/multimodal/``.

    python benchmarks/multimodal.py                       # everything (~35 min on one thread)
    python benchmarks/multimodal.py --datasets movielens  # MovieLens only (~8 min)
    python benchmarks/multimodal.py --methods clip cwcl --seeds 0 1
    python benchmarks/multimodal.py --collect             # only re-read finished runs
    python benchmarks/multimodal.py --methods siglip --replace-stale  # retrain changed configs

Each run trains into ``runs/multimodal/<dataset>_<method>_s<seed>``; a folder with a
``summary.json`` is only re-read, one with a checkpoint is resumed (a killed benchmark continues
where it stopped), but only if its ``config.yaml`` equals the config the benchmark builds now
(else it stops with the differing keys; ``--replace-stale`` renames the stale folder to
``<name>.stale-<time>`` and trains afresh). Writes ``benchmarks/results/multimodal.json`` (one
record per dataset and method: metrics as mean, sample std and per-seed values; seeds; seconds;
device; the command; records of methods not run this time are kept from the previous file) and
``benchmarks/results/multimodal.md`` (the tables), and prints the tables.

Methods are a config plus overrides (``METHODS``): the objectives with the shipped configs, and
CLIP variants: label smoothing 0.1 (``clip_ls``), the intra-modal NT-Xent term with weight 0.5
(``clip_intra``), a learnt temperature (``clip_learnt_tau``) and, on MovieLens, the title
through a trainable MLP head instead of frozen (``clip_title_head``, D = 128). Nothing was tuned
per objective (there is no validation split of the held-out movies): the softmax objectives run
at CLIP's temperature 0.07 and, as ``<method>_tau03``, at 0.3 (the multi-view papers' range
0.1-0.5; DHEL's value), a value taken from the papers, not chosen on the test movies; SigLIP
learns its temperature and bias from the paper's initial values (0.1, -10).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

from _runs import device, mean_std

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "multimodal"
KS = (1, 5, 10)

# method -> (config name, overrides)
METHODS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "movielens": {
        "clip": ("movielens_clip", []),
        "clip_tau03": ("movielens_clip", ["multimodal.temperature=0.3"]),
        "clip_ls": ("movielens_clip", ["multimodal.label_smoothing=0.1"]),
        "clip_intra": ("movielens_clip", ["multimodal.intra_weight=0.5"]),
        "clip_learnt_tau": ("movielens_clip", ["multimodal.learnable_temperature=true"]),
        "clip_title_head": ("movielens_clip", ["multimodal.frozen=[]"]),
        "mv_infonce": ("movielens_mv_infonce", []),
        "mv_infonce_tau03": ("movielens_mv_infonce", ["multimodal.temperature=0.3"]),
        "mv_dhel": ("movielens_mv_dhel", []),
        "mv_dhel_tau03": ("movielens_mv_dhel", ["multimodal.temperature=0.3"]),
        "cwcl": ("movielens_cwcl", []),
        "cwcl_tau03": ("movielens_cwcl", ["multimodal.temperature=0.3"]),
        "siglip": ("movielens_siglip", []),
    },
    "fashion_mnist": {
        "clip": ("fashion_mnist_clip", []),
        "clip_tau03": ("fashion_mnist_clip", ["multimodal.temperature=0.3"]),
        "clip_ls": ("fashion_mnist_clip", ["multimodal.label_smoothing=0.1"]),
        "cwcl": ("fashion_mnist_cwcl", []),
        "cwcl_tau03": ("fashion_mnist_cwcl", ["multimodal.temperature=0.3"]),
        "siglip": ("fashion_mnist_siglip", []),
    },
}
DEFAULT_SEEDS = {"movielens": [0, 1, 2, 3, 4], "fashion_mnist": [0, 1, 2]}


def run_dir(dataset: str, method: str, seed: int) -> Path:
    return RUNS / f"{dataset}_{method}_s{seed}"


def build_config(dataset: str, method: str, seed: int):
    from contrastkit.train.config import load_config

    config_name, overrides = METHODS[dataset][method]
    path = ROOT / "configs" / "multimodal" / f"{config_name}.yaml"
    return load_config(path, [f"train.seed={seed}", "train.progress=false", *overrides])


def stale_keys(dataset: str, method: str, seed: int) -> list[str]:
    """Keys in which a run folder's ``config.yaml`` differs from the config built now
    (``[]``: the same, or no folder / no config.yaml yet)."""
    from contrastkit.train.config import config_difference, load_config
    from contrastkit.train.engine import RESUMABLE_CHANGES  # what does not change a run

    saved = run_dir(dataset, method, seed) / "config.yaml"
    if not saved.is_file():
        return []
    return config_difference(
        load_config(saved), build_config(dataset, method, seed), ignore=RESUMABLE_CHANGES
    )


def check_fresh(dataset: str, method: str, seed: int, *, replace: bool) -> None:
    """Refuse a run folder made with another config, or (``replace``) move it aside."""
    output = run_dir(dataset, method, seed)
    differences = stale_keys(dataset, method, seed)
    if not differences:
        return
    if not replace:
        raise SystemExit(
            f"{output} was made with a different config (differs in: {', '.join(differences)}); "
            "rerun with --replace-stale to move it aside and retrain"
        )
    stale = output.with_name(f"{output.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"== {output.name}: stale ({', '.join(differences)}), moved to {stale.name}")
    shutil.move(str(output), str(stale))


def run(dataset: str, method: str, seed: int, *, replace_stale: bool = False) -> dict:
    """Train (or resume, or re-read) one run; returns its summary."""
    from contrastkit.recipes.multimodal import run_multimodal_training
    from contrastkit.train.checkpoint import latest_checkpoint

    config = build_config(dataset, method, seed)
    output = run_dir(dataset, method, seed)
    check_fresh(dataset, method, seed, replace=replace_stale)
    if (output / "summary.json").is_file():
        print(f"== {output.name}: finished before, re-read", flush=True)
        return json.loads((output / "summary.json").read_text())
    checkpoints = output / "checkpoints"
    resume = checkpoints.is_dir() and latest_checkpoint(checkpoints) is not None
    print(f"== {output.name} ({'resuming' if resume else 'new'})", flush=True)
    return run_multimodal_training(config, output, resume=resume, echo=False)


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
        mean, std = mean_std(values)
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
        "device": device(),
    }
    if dataset == "movielens":
        record["chance"] = summaries[0]["chance"]
        record["ceiling"] = summaries[0]["ceiling"]
        record["data"] = summaries[0]["data"]
    else:
        record["data"] = summaries[0]["data"]
    return record


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
        # the chance of a random scorer under pessimistic ties, per ordered pair (runs made
        # before it was computed per pair hold k / m, which ignores the ties)
        chance_of = next(
            (r["chance"] for r in movielens if any("->" in key for key in r["chance"])),
            first["chance"],
        )
        chance = " | ".join(f"{100 * chance_of[f'R@{k}']:.2f}" for k in KS)
        out.append(f"| chance (random scorer, ties) | — | {chance} | — |")
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
        if all(f"{p}/R@{k}" in chance_of for p in pairs for k in KS):
            cells = [" / ".join(f"{100 * chance_of[f'{p}/R@{k}']:.2f}" for k in KS) for p in pairs]
            out.append("| chance (random scorer, ties) | " + " | ".join(cells) + " |")
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
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datasets", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--methods", nargs="+", help="subset of the methods (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, help="MovieLens seeds (default 0..4)")
    parser.add_argument(
        "--fashion-seeds", nargs="+", type=int, help="Fashion-MNIST seeds (default 0 1 2)"
    )
    parser.add_argument("--collect", action="store_true", help="only tabulate finished runs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--replace-stale",
        action="store_true",
        help="move run folders made with another config aside and retrain them",
    )
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
        if path.is_file()
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
                    summary_path = run_dir(dataset, method, seed) / "summary.json"
                    if not summary_path.is_file():
                        continue
                    check_fresh(dataset, method, seed, replace=False)
                    summaries.append(json.loads(summary_path.read_text()))
                else:
                    summaries.append(run(dataset, method, seed, replace_stale=args.replace_stale))
                done.append(seed)
            if summaries:
                record = group_record(dataset, method, done, summaries)
                record["command"] = command
                old = previous.get((dataset, method))
                if (
                    args.collect and old is not None and old["seeds"] == done
                ):  # --collect keeps the training run's
                    record["command"], record["device"] = old["command"], old["device"]
                records.append(record)
    if not records:
        print("no finished run to tabulate", file=sys.stderr)
        return 1
    # keep the previous records of the methods not run this time, in METHODS order
    fresh = {(r["dataset"], r["method"]): r for r in records}
    merged = {**previous, **fresh}
    records = [merged[(d, m)] for d in METHODS for m in METHODS[d] if (d, m) in merged]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")
    text = tables(records)
    minutes = (time.perf_counter() - started) / 60
    runs = {}
    for r in records:
        runs.setdefault((r["command"], r["device"]), []).append(f"{r['dataset']}/{r['method']}")
    footer = "\n\nCommands:\n\n" + "\n".join(
        f"- `{command}` ({device}): {', '.join(names)}" for (command, device), names in runs.items()
    )
    if not args.collect:
        footer += f"\n\nThis invocation: {minutes:.1f} min"
    (RESULTS / "multimodal.md").write_text(text + footer + "\n")
    print(text + footer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
