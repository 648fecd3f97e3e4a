"""The README's main job, timed: ``contrastkit train`` with no arguments (digits, MV-DHEL, V=4).

    python benchmarks/default_run.py

Runs the command in a subprocess (so the time includes start-up and imports), then writes
``benchmarks/results/default_run.json`` with the wall time, the run's summary and the targets
(finish within 120 s on 2 CPU cores; linear and kNN >= 0.98; kNN >= untrained kNN + 0.03).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "default_run.json"
OUTPUT = Path("benchmarks/runs/default")


def contrastkit_executable() -> str:
    """The ``contrastkit`` script of this interpreter's environment (so the benchmark times
    the installed project even when that environment is not activated), else the one on PATH."""
    beside = Path(sys.executable).with_name("contrastkit")
    if beside.is_file():
        return str(beside)
    found = shutil.which("contrastkit")
    if found is None:
        raise SystemExit("contrastkit is not installed here: pip install -e . first")
    return found


def main() -> int:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    shutil.rmtree(OUTPUT, ignore_errors=True)
    command = [
        contrastkit_executable(),
        "train",
        "--output",
        str(OUTPUT),
        "--train.progress",
        "false",
    ]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        print(completed.stderr, file=sys.stderr)
        return completed.returncode
    summary = json.loads((OUTPUT / "summary.json").read_text())
    base = summary["baselines"]
    record = {
        "command": " ".join(["contrastkit", *command[1:]]),
        "process_wall_seconds": round(wall, 1),
        "summary": {k: v for k, v in summary.items() if k != "score_history"},
        "targets": {
            "within_120_s": wall <= 120,
            "linear_at_least_0.98": summary["linear_acc"] >= 0.98,
            "knn_at_least_0.98": summary["knn_acc"] >= 0.98,
            "knn_3_points_above_untrained": summary["knn_acc"] >= base["untrained_knn_acc"] + 0.03,
        },
        "table": completed.stdout.split("\n\nrun folder")[0],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(record["table"])
    print(json.dumps(record["targets"], indent=2), f"\nprocess wall time {wall:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
