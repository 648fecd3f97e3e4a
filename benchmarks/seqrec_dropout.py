"""SASRec-family training steps on Beauty with ``nn.Dropout`` against
:class:`contrastkit.encoders.dropout.FastDropout` (the same distribution, the mask drawn as
``rand >= p``).

    python benchmarks/seqrec_dropout.py --methods sasrec cl4srec --steps 5 --rounds 3

Times ``--steps`` training steps (batch 256 of the shipped ``configs/seqrec/beauty_<method>``
config: forward, losses, backward, Adam) after two warm-up steps, alternating the two dropout
modules for ``--rounds`` rounds so that both see the same machine load, on one CPU thread.
Writes ``benchmarks/results/seqrec_dropout.json`` (the median seconds per step of each).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from _runs import command_line, device
from seqrec import time_training_steps

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def seconds_per_step(method: str, dropout: str, steps: int) -> float:
    import torch
    from torch import nn

    from contrastkit.encoders import sasrec
    from contrastkit.encoders.dropout import FastDropout
    from contrastkit.recipes.seqrec import SeqRecTask, load_sequences
    from contrastkit.train.config import load_config

    sasrec.FastDropout = nn.Dropout if dropout == "nn.Dropout" else FastDropout
    try:
        config = load_config(ROOT / "configs" / "seqrec" / f"beauty_{method}.yaml")
        task = SeqRecTask(config, load_sequences(config.seqrec), ROOT / "runs" / "timing")
    finally:
        sasrec.FastDropout = FastDropout
    torch.manual_seed(0)
    return time_training_steps(task, config, steps)[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--methods", nargs="+", default=["sasrec", "cl4srec"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    records = []
    for method in args.methods:
        times: dict[str, list[float]] = {"nn.Dropout": [], "FastDropout": []}
        for _ in range(args.rounds):
            for name in times:
                times[name].append(seconds_per_step(method, name, args.steps))
        medians = {name: statistics.median(values) for name, values in times.items()}
        records.append(
            {
                "method": method,
                "dataset": "beauty",
                "seconds_per_step": {k: round(v, 4) for k, v in medians.items()},
                "all_rounds": {k: [round(x, 4) for x in v] for k, v in times.items()},
                "speedup": round(medians["nn.Dropout"] / medians["FastDropout"], 3),
                "steps": args.steps,
                "rounds": args.rounds,
                "device": device(),
                "command": command_line(),
            }
        )
        print(json.dumps(records[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "seqrec_dropout.json").write_text(json.dumps(records, indent=2) + "\n")
    print("| method | nn.Dropout s/step | FastDropout s/step | speedup |")
    print("|---|---|---|---|")
    for r in records:
        s = r["seconds_per_step"]
        print(f"| {r['method']} | {s['nn.Dropout']} | {s['FastDropout']} | {r['speedup']}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
