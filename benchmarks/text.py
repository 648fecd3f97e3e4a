"""Sentence-embedding benchmark: contrastive fine-tuning of all-MiniLM-L6-v2, STS-B Spearman.

    python benchmarks/text.py                         # every variant, seeds 0 1 2
    python benchmarks/text.py --variants sup_simcse --seeds 0
    python benchmarks/text.py --collect               # only re-read finished runs

Each variant is ``configs/text/stsb_unsup_simcse.yaml`` plus overrides (below). A run trains
into ``runs/text/<variant>_s<seed>`` and resumes there when the folder holds a checkpoint.
Writes ``benchmarks/results/text.json`` (one record per run: dataset, method, loss, seed,
metrics, epochs, seconds, device, command) and ``benchmarks/results/text.md`` (mean ± std over
seeds of STS-B Spearman ×100: the starting model's dev / test and the fine-tuned model's best
dev and its test). The contrastive search / SimCTG records of ``benchmarks/text_decoding.py``
(``results/text_decoding.json``) are appended to both files when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _runs import collect_runs, command_line, device, mean_std

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "text"
CONFIG = ROOT / "configs" / "text" / "stsb_unsup_simcse.yaml"
UNSUP = ["text.max_sentences=4096"]  # 64 steps of 64 sentences: ~5 min per run on one thread
SUP = ["text.method=sup", "text.min_score=4.0", "train.epochs=3"]  # 1,406 pairs, 22 steps/epoch
VARIANTS: dict[str, list[str]] = {
    "unsup_simcse": [*UNSUP],
    "unsup_info_nce": [*UNSUP, "loss.name=info_nce"],
    "unsup_dcl": [*UNSUP, "loss.name=dcl"],
    "unsup_supcon": [*UNSUP, "loss.name=supcon"],
    "unsup_mv_infonce_v4": [*UNSUP, "loss.name=mv_infonce", "text.num_views=4"],
    "sup_simcse": [*SUP],
    "sup_simcse_hardneg": [*SUP, "text.hard_negatives=true"],
    "sup_info_nce": [*SUP, "loss.name=info_nce"],
}
METRICS = (
    "start_dev_spearman",
    "start_test_spearman",
    "best_dev_spearman",
    "test_spearman",
    "best_epoch",
)


def run(variant: str, seed: int) -> tuple[Path, bool]:
    from contrastkit.recipes.text import run_text_training
    from contrastkit.train.checkpoint import latest_checkpoint
    from contrastkit.train.config import load_config

    config = load_config(CONFIG, [*VARIANTS[variant], f"train.seed={seed}", "train.progress=false"])
    output = RUNS / f"{variant}_s{seed}"
    if (output / "summary.json").is_file():
        print(f"== {output.name}: finished before, re-read", flush=True)
        return output, False
    checkpoints = output / "checkpoints"
    resume = checkpoints.is_dir() and latest_checkpoint(checkpoints) is not None
    print(f"== {output.name} ({'resuming' if resume else 'new'}) -> {output}", flush=True)
    run_text_training(config, output, resume=resume)
    return output, True


def record(output: Path, command: str) -> dict:
    summary = json.loads((output / "summary.json").read_text())
    variant, seed = output.name.rsplit("_s", 1)
    lines = (output / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line) for line in lines if line.strip()]
    return {
        "dataset": "stsb",
        "part": "sentence embeddings",
        "variant": variant,
        "method": summary["method"],
        "loss": summary["loss"],
        "views": summary.get("views"),
        "model": "all-MiniLM-L6-v2",
        "train_examples": summary.get("train_examples"),
        "seed": int(seed),
        "metrics": {k: summary[k] for k in METRICS if k in summary},
        "epochs": summary.get("epochs_trained"),
        "seconds": epochs[-1]["seconds"] if epochs else None,
        "device": device(),
        "command": command,
        "overrides": VARIANTS.get(variant),
        "run": str(output.relative_to(ROOT)),
    }


def _mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f}" if len(values) < 2 else f"{mean:.2f} ± {std:.2f}"


def table(records: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["variant"], []).append(r)
    lines = [
        "| variant | method | loss | views | seeds | start dev | start test | best dev | test "
        "| Δ test | s per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, rows in groups.items():
        m = [r["metrics"] for r in rows]
        cells = [
            _mean_std([100 * x[k] for x in m])
            for k in ("start_dev_spearman", "start_test_spearman", "best_dev_spearman")
        ]
        cells.append(_mean_std([100 * x["test_spearman"] for x in m]))
        cells.append(_mean_std([100 * (x["test_spearman"] - x["start_test_spearman"]) for x in m]))
        seconds = [r["seconds"] for r in rows if r["seconds"]]
        seeds = ",".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"]))
        first = rows[0]
        lines.append(
            f"| {variant} | {first['method']} | {first['loss']} | {first['views']} | {seeds} | "
            + " | ".join(cells)
            + f" | {sum(seconds) / max(len(seconds), 1):.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--collect", action="store_true", help="only tabulate finished runs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    command = command_line()
    trained_now = set()
    if not args.collect:
        for seed in args.seeds:
            for variant in args.variants:
                output, trained = run(variant, seed)
                if trained:
                    trained_now.add(output)
    path = RESULTS / "text.json"
    records = collect_runs(RUNS, path, record, command, trained_now)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = table(records)
    decoding = RESULTS / "text_decoding.json"  # written by benchmarks/text_decoding.py
    if decoding.is_file():
        records += [{"part": "decoding", **r} for r in json.loads(decoding.read_text())]
        text += "\n\n" + (RESULTS / "text_decoding.md").read_text().strip()
    path.write_text(json.dumps(records, indent=2) + "\n")
    (RESULTS / "text.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
