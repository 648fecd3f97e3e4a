"""A/B timings of SASRec-family training steps on Beauty: two versions of one speed-up, each
exact or the same distribution, alternated so that both see the same machine load.

    python benchmarks/seqrec_ab.py dropout --methods sasrec cl4srec --steps 5 --rounds 3
    python benchmarks/seqrec_ab.py groups --methods sra_cl --steps 3 --rounds 3
    python benchmarks/seqrec_ab.py neighbours --methods sra_cl --steps 3 --rounds 3

* ``dropout``: ``nn.Dropout`` against :class:`contrastkit.encoders.dropout.FastDropout` (the
  same distribution, the mask drawn as ``rand >= p``).
* ``groups``: large batches (SRA-CL's 2,560 neighbour sequences) encoded in 8 length groups
  against one group per ``contrastkit.recipes.seqrec.GROUP_ROWS`` rows (16 there; exact:
  rows do not interact).
* ``neighbours``: SRA-CL's neighbour users found by a ``[B, users]`` similarity every step
  against looked up in the table made once per run (``SeqRecTask.pair_neighbours``; the same
  neighbours). The table is made in the first warm-up step, or read from
  ``runs/timing/sra_cl_neighbours.safetensors``, outside the timed steps.

Times ``--steps`` training steps (batch 256 of the shipped ``configs/seqrec/beauty_<method>``
config: forward, losses, backward, Adam) after two warm-up steps, alternating the two versions
for ``--rounds`` rounds, on one CPU thread. Writes ``benchmarks/results/seqrec_<comparison>.json``
(the median seconds per step of each version, "before" first; a method's new record
replaces its older one). Methods whose steps a comparison does not change are refused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from unittest import mock

from _runs import command_line, device, write_merged
from seqrec import TIMING_RUNS, time_training_steps

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def dropout_version(name: str) -> AbstractContextManager:
    """Models built inside use ``nn.Dropout`` ("nn.Dropout") or ``FastDropout``."""
    from torch import nn

    from contrastkit.encoders import sasrec

    if name != "nn.Dropout":
        return nullcontext()
    return mock.patch.object(sasrec, "FastDropout", nn.Dropout)


def groups_version(name: str) -> AbstractContextManager:
    """Steps inside encode large batches in 8 length groups ("8 groups") or in one group per
    ``GROUP_ROWS`` rows ("GROUP_ROWS")."""
    from contrastkit.recipes import seqrec

    if name != "8 groups":
        return nullcontext()
    return mock.patch.object(seqrec, "GROUP_ROWS", 10**9)  # max(8, B // GROUP_ROWS) = 8


def neighbours_version(name: str) -> AbstractContextManager:
    """SRA-CL steps inside find their pairs' neighbour users by a ``[B, users]`` similarity
    every step ("per step", as before) or look them up in the table made once ("table")."""
    from contrastkit.recipes.seqrec import SeqRecTask

    if name != "per step":
        return nullcontext()

    def per_step(self, inputs, users, indices):
        return self.neighbour_users(inputs, users)[1]

    return mock.patch.object(SeqRecTask, "step_neighbours", per_step)


# comparison -> (its two versions, before and after; the context that selects one; the
# methods whose steps it changes, the first ones the default)
COMPARISONS: dict[
    str, tuple[tuple[str, str], Callable[[str], AbstractContextManager], tuple[str, ...]]
] = {
    "dropout": (
        ("nn.Dropout", "FastDropout"),
        dropout_version,
        ("sasrec", "cl4srec", "duorec", "mclrec", "sra_cl"),
    ),
    "groups": (("8 groups", "GROUP_ROWS"), groups_version, ("sra_cl",)),
    "neighbours": (("per step", "table"), neighbours_version, ("sra_cl",)),
}
DEFAULT_METHODS = {"dropout": ["sasrec", "cl4srec"], "groups": ["sra_cl"], "neighbours": ["sra_cl"]}


def seconds_per_step(method: str, comparison: str, version: str, steps: int) -> float:
    import torch

    from contrastkit.recipes.seqrec import SeqRecTask, load_sequences
    from contrastkit.train.config import load_config

    select = COMPARISONS[comparison][1]
    with select(version):
        config = load_config(ROOT / "configs" / "seqrec" / f"beauty_{method}.yaml")
        task = SeqRecTask(config, load_sequences(config.seqrec), TIMING_RUNS / f"beauty_{method}")
        torch.manual_seed(0)
        return time_training_steps(task, config, steps)[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("comparison", choices=sorted(COMPARISONS))
    parser.add_argument(
        "--methods", nargs="+", help="default: sasrec cl4srec (dropout), sra_cl (the others)"
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    affected = COMPARISONS[args.comparison][2]
    methods = args.methods or DEFAULT_METHODS[args.comparison]
    if unaffected := [m for m in methods if m not in affected]:
        parser.error(
            f"{args.comparison} does not change the steps of {', '.join(unaffected)} (both "
            f"versions are the same code there); it changes {', '.join(affected)}"
        )
    import torch

    torch.set_num_threads(1)
    before, after = COMPARISONS[args.comparison][0]
    records = []
    for method in methods:
        times: dict[str, list[float]] = {before: [], after: []}
        for _ in range(args.rounds):
            for name in times:
                times[name].append(seconds_per_step(method, args.comparison, name, args.steps))
        medians = {name: statistics.median(values) for name, values in times.items()}
        records.append(
            {
                "comparison": args.comparison,
                "method": method,
                "dataset": "beauty",
                "seconds_per_step": {k: round(v, 4) for k, v in medians.items()},
                "all_rounds": {k: [round(x, 4) for x in v] for k, v in times.items()},
                "speedup": round(medians[before] / medians[after], 3),
                "steps": args.steps,
                "rounds": args.rounds,
                "device": device(),
                "command": command_line(),
            }
        )
        print(json.dumps(records[-1]), flush=True)
    path = RESULTS / f"seqrec_{args.comparison}.json"  # a method's new record replaces its old
    write_merged(path, records, lambda r: (r["method"], r["dataset"]))
    print(f"| method | {before} s/step | {after} s/step | speedup |")
    print("|---|---|---|---|")
    for r in records:
        s = r["seconds_per_step"]
        print(f"| {r['method']} | {s[before]} | {s[after]} | {r['speedup']}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
