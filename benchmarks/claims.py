"""Small-scale checks of the papers' image claims, on digits (fixed epochs, several seeds).

    python benchmarks/claims.py                 # all three experiments, about 10 minutes on 2 cores
    python benchmarks/claims.py --only batch    # one experiment: batch | temperature | moco

* ``batch``: DCL is less sensitive to small batches than InfoNCE (Yeh et al.): NT-Xent and DCL
  at batch 32 and 256.
* ``temperature``: the temperature trades uniformity against tolerance (Wang & Liu): NT-Xent at
  several temperatures, with uniformity (lower = more uniform) and tolerance (mean cosine of
  same-class pairs).
* ``moco``: positive extrapolation and negative interpolation help MoCo (Zhu et al.): MoCo v2
  with and without the feature transformations.

Writes ``benchmarks/results/claims.json`` (one record per run, with the command) and
``benchmarks/results/claims.md`` (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
from pathlib import Path

from contrastkit.recipes.images import SUMMARY_METRICS, run_image_training
from contrastkit.train.config import load_config

RESULTS = Path(__file__).parent / "results"
BASE = ["train.progress=false", "train.eval_every=0", "eval.baselines=false"]
METRICS = SUMMARY_METRICS

EXPERIMENTS: dict[str, list[tuple[str, list[str]]]] = {
    "batch": [
        (
            f"{loss} batch {batch}",
            [
                f"loss.name={loss}",
                "views.views=2",
                f"train.batch_size={batch}",
                "train.epochs=40",
                "loss.temperature=0.1",
            ],
        )
        for loss in ("info_nce", "dcl")
        for batch in (32, 256)
    ],
    "temperature": [
        (
            f"info_nce tau {tau}",
            ["loss.name=info_nce", "views.views=2", f"loss.temperature={tau}", "train.epochs=60"],
        )
        for tau in (0.05, 0.1, 0.2, 0.5, 1.0)
    ],
    "moco": [
        (
            name,
            [
                "loss.name=info_nce",
                "views.views=2",
                "moco.enabled=true",
                "moco.queue_size=1024",
                "loss.temperature=0.2",
                "train.epochs=100",
                *extra,
            ],
        )
        for name, extra in (
            ("moco v2", []),
            ("moco v2 + FT", ["moco.pos_extrapolation=2.0", "moco.neg_interpolation=1.6"]),
        )
    ],
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", nargs="+", choices=sorted(EXPERIMENTS), default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="benchmarks/runs/claims")
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    path = RESULTS / "claims.json"
    records = json.loads(path.read_text()) if path.exists() else []
    chosen = args.only or sorted(EXPERIMENTS)
    records = [r for r in records if r["experiment"] not in chosen]
    for experiment in chosen:
        for name, overrides in EXPERIMENTS[experiment]:
            for seed in args.seeds:
                config = load_config(None, [*BASE, *overrides, f"train.seed={seed}"])
                out = Path(args.output) / experiment / f"{name.replace(' ', '_')}-s{seed}"
                shutil.rmtree(out, ignore_errors=True)
                summary = run_image_training(config, out, echo=False)
                record = {
                    "experiment": experiment,
                    "setting": name,
                    "seed": seed,
                    "dataset": "digits",
                    "overrides": overrides,
                    "metrics": {k: summary[k] for k in METRICS},
                    "epochs": summary["epochs"],
                    "seconds": summary["wall_seconds"],
                    "device": "cpu",
                    "command": command,
                }
                records.append(record)
                print(
                    json.dumps({k: record[k] for k in ("setting", "seed", "metrics")}), flush=True
                )
                RESULTS.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(records, indent=2) + "\n")
    table = markdown(records)
    (RESULTS / "claims.md").write_text(f"{table}\n\nCommand: `{command}`\n")
    print(table)
    return 0


def markdown(records: list[dict]) -> str:
    lines = []
    for experiment in sorted({r["experiment"] for r in records}):
        lines += [
            f"\n### {experiment}\n",
            "| setting | " + " | ".join(METRICS) + " |",
            "|---" * (len(METRICS) + 1) + "|",
        ]
        settings = []
        for r in records:
            if r["experiment"] == experiment and r["setting"] not in settings:
                settings.append(r["setting"])
        for setting in settings:
            rs = [r for r in records if r["experiment"] == experiment and r["setting"] == setting]
            cells = []
            for key in METRICS:
                values = [r["metrics"][key] for r in rs]
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.fmean(values):.4f} ± {std:.4f}")
            lines.append(f"| {setting} (n={len(rs)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
