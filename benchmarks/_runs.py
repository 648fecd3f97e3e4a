"""What the benchmark scripts share: the device string, the command line, mean ± sample std,
and re-reading finished run folders into records (``from _runs import ...``, like
``anchors.py``)."""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path


def device(accelerator: str = "cpu") -> str:
    """``"<machine> cpu (<torch threads> threads)"``, or the GPU's name for ``"cuda"``."""
    import torch

    if accelerator.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(accelerator))} (cuda)"
    return f"{platform.machine()} cpu ({torch.get_num_threads()} threads)"


def accelerator_kind(record: dict) -> str:
    """``"cuda"`` for a record timed on a GPU, else ``"cpu"`` (also for older records)."""
    return "cuda" if "(cuda)" in record.get("device", "") else "cpu"


def synchronize(accelerator: str) -> None:
    """Wait for queued GPU work before reading a clock (nothing to wait for on the CPU)."""
    import torch

    if accelerator.startswith("cuda"):
        torch.cuda.synchronize()


def command_line() -> str:
    """How this script was started, as a shell command."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE ...``: config overrides for every run; a repeated ``--set`` adds to
    the list (``args.set``)."""
    parser.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every run (repeatable: every --set adds to the list)",
    )


def write_merged(path: Path, records: list[dict], identity: Callable[[dict], tuple]) -> None:
    """Write ``records`` to the JSON list at ``path`` after the older records kept there whose
    ``identity`` none of the new ones has (a new record replaces the one of the same setup)."""
    done = {identity(r) for r in records}
    kept = [
        r
        for r in (json.loads(path.read_text()) if path.is_file() else [])
        if identity(r) not in done
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept + records, indent=2) + "\n")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def read_metrics(path: Path) -> list[dict]:
    """The records of a run's ``metrics.jsonl``; a blank or partly written line (a run killed
    while appending) is skipped, as the engine itself does."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def prefixed(summary: dict, prefix: str) -> dict:
    """The entries of ``summary`` whose key starts with ``prefix``, without it."""
    return {k.removeprefix(prefix): v for k, v in summary.items() if k.startswith(prefix)}


def finished_run_record(
    run_dir: Path,
    command: str,
    fields: Callable[[dict], dict],
    *,
    published: dict | None,
    config: str,
) -> dict:
    """The record of a finished recommendation run folder (``summary.json`` with ``dataset``,
    ``method``, ``epochs_trained``, ``best_epoch``): run, dataset, method, then
    ``fields(summary)`` (the script's metrics), then epochs, seconds and provenance."""
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs = read_metrics(run_dir / "metrics.jsonl")
    seconds = epochs[-1]["seconds"] if epochs else None
    trained = summary.get("epochs_trained")
    return {
        "run": run_dir.name,
        "dataset": summary["dataset"],
        "method": summary["method"],
        **fields(summary),
        "best_epoch": summary.get("best_epoch"),
        "epochs": trained,
        "stopped_early": bool(epochs and epochs[-1].get("stopped_early")),
        "seconds": seconds,
        "seconds_per_epoch": round(seconds / trained, 1) if seconds and trained else None,
        "device": device(),
        "published": published,
        "command": command,
        "config": config,
    }


UNKNOWN = (
    "unknown: not trained by this invocation, absent from the earlier results file, and no "
    "command noted in the run folder"
)
COMMANDS = "benchmark_commands.jsonl"  # in a run folder: one line per start or resume


def busy_elsewhere(run_dir: Path) -> bool:
    """True (and a line on stdout) when another process is training ``run_dir`` (it holds the
    folder's :class:`~contrastkit.train.run_lock.RunLock`): a benchmark chain then skips that
    run instead of failing, and the next ``--collect`` picks it up when it is done."""
    from contrastkit.train.run_lock import LOCK_NAME, RunFolderBusyError, RunLock

    if not (run_dir / LOCK_NAME).exists():
        return False
    try:
        with RunLock(run_dir):
            return False
    except RunFolderBusyError as error:
        print(f"== skipped: {error}", flush=True)
        return True


def train_in_chain(output: Path, label: str, train: Callable[[bool], object]) -> Path | None:
    """One run of a benchmark chain: skip it when another process trains ``output``, else
    resume it if it holds a checkpoint, note the command and call ``train(resume)``. Returns
    ``output``, or ``None`` for a run skipped as busy (also when another process took the folder
    between the check and the start)."""
    from contrastkit.train.checkpoint import latest_checkpoint
    from contrastkit.train.run_lock import RunFolderBusyError

    if busy_elsewhere(output):
        return None
    checkpoints = output / "checkpoints"
    resume = checkpoints.is_dir() and latest_checkpoint(checkpoints) is not None
    print(f"== {label} ({'resuming' if resume else 'new'}) -> {output}", flush=True)
    note_command(output, command_line(), fresh=not resume)
    try:
        train(resume)
    except RunFolderBusyError as error:
        print(f"== skipped: {error}", flush=True)
        return None
    return output


def note_command(run_dir: Path, command: str, *, fresh: bool) -> None:
    """Note ``command`` and this machine's device in the run folder's :data:`COMMANDS` (called
    by a benchmark script each time it starts or resumes the run), so that a later
    ``--collect`` can name the command that started the run. ``fresh`` (a new run: no
    checkpoint) replaces the notes of an earlier attempt that never reached a checkpoint;
    a resume appends."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / COMMANDS, "w" if fresh else "a") as handle:
        handle.write(json.dumps({"command": command, "device": device()}) + "\n")


def noted_command(run_dir: Path) -> dict | None:
    """The first command noted in the run folder: the one that started the run (a later
    resume, usually the same command, is appended after it), or ``None``."""
    for record in read_metrics(run_dir / COMMANDS):
        if "command" in record:
            return {"command": record["command"], "device": record.get("device", UNKNOWN)}
    return None


def collect_runs(
    runs: Path,
    results: Path,
    record: Callable[[Path, str], dict | None],
    command: str,
    trained_now: set[Path],
) -> list[dict]:
    """``record(run_dir, command)`` of every finished run under ``runs`` (a ``summary.json``).
    A run not trained by this invocation keeps the command and device of its record in the
    earlier ``results`` file (matched by the record's ``run``), else those noted in the run
    folder (:func:`note_command`); without either both are :data:`UNKNOWN` rather than this
    invocation's (which did not train it). ``record`` may return ``None`` to skip a folder
    (another recipe's run).

    A record of the earlier ``results`` file whose run folder is not on this machine (a fresh
    checkout: ``runs/`` is not in git) is kept as it was, marked ``"folder_absent": true``,
    instead of vanishing from the table (:func:`absent_folder_records`). Once a folder of that
    name exists again, the old record is dropped: the folder is collected if it finished (and
    by a script's own rule for unfinished runs, if it has one)."""
    previous = {}
    if results.is_file():
        previous = {r["run"]: r for r in json.loads(results.read_text()) if "run" in r}
    records = []
    for summary_path in sorted(runs.glob("*/summary.json")):
        output = summary_path.parent
        rec = record(output, command)
        if rec is None:
            continue
        if output not in trained_now:
            fallback = noted_command(output) or {"command": UNKNOWN, "device": UNKNOWN}
            old = previous.get(rec["run"], fallback)
            rec["command"], rec["device"] = old["command"], old["device"]
        records.append(rec)
    return records + absent_folder_records(results, runs)


def absent_folder_records(path: Path, runs: Path) -> list[dict]:
    """The records of the JSON list at ``path`` (if any) whose run folder is not on this
    machine, marked ``"folder_absent": true``. A record's ``run`` names its folder in ``runs``
    by the last part (scripts write either the folder's name or its path from the repository
    root). ``runs/`` is not in git, so a fresh checkout has none of the folders behind the
    committed results: a script rewriting a results file from its run folders keeps these
    records rather than dropping them."""
    if not path.is_file():
        return []
    return [
        {**r, "folder_absent": True}
        for r in json.loads(path.read_text())
        if "run" in r and not (runs / Path(r["run"]).name).exists()
    ]
