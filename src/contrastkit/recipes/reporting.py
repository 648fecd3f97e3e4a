"""What every recipe's run function does after building its task: train with the engine,
then write ``summary.json`` and ``results.md`` (a markdown table) into the run folder."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from contrastkit.train.checkpoint import (
    atomic_write_text,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
)
from contrastkit.train.config import RunConfig, load_config
from contrastkit.train.engine import Engine, Task

WEIGHTS = ("best", "latest")  # what ``contrastkit eval --weights`` can load


def fit_and_summarize(
    config: RunConfig,
    output: Path,
    task: Task,
    *,
    header: dict[str, Any],
    table: Callable[[list[dict[str, Any]]], str],
    started: float,
    resume: bool = False,
    echo: bool = True,
) -> dict[str, Any]:
    """Train ``task`` into ``output`` (a folder holding a run is refused unless ``resume``)
    and return ``header`` + the engine's scalar results + ``total_seconds`` since
    ``started`` (a ``time.perf_counter()`` value); rank 0 writes ``summary.json`` and
    ``results.md`` (``table([summary])``) and prints the table when ``echo``."""
    with Engine(
        config, output, task, resume=resume, echo=echo
    ) as engine:  # the lock until the summary
        result = engine.fit()
        summary = {
            **header,
            **{k: v for k, v in result.items() if not isinstance(v, dict)},
            "total_seconds": round(time.perf_counter() - started, 1),
        }
        if engine.is_main:
            atomic_write_text(output / "summary.json", json.dumps(summary, indent=2) + "\n")
            atomic_write_text(output / "results.md", table([summary]) + "\n")
            if echo:
                print(table([summary]))
    return summary


def run_config(run_dir: Path) -> RunConfig:
    """The config of a run folder (``config.yaml``), or a clear error for another folder."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
    return load_config(path)


def run_weights(run_dir: Path, which: str) -> tuple[dict[str, Tensor], str]:
    """Weights of a run folder and their name: ``"best"`` (``best.safetensors``, the best-valid
    weights of the recommendation recipes) or ``"latest"`` (the latest complete checkpoint)."""
    run_dir = Path(run_dir)
    if which not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}; got {which!r}")
    if which == "best":
        best = run_dir / "best.safetensors"
        if not best.is_file():
            has_checkpoint = latest_checkpoint(run_dir / "checkpoints") is not None
            hint = (
                "use --weights latest for the latest checkpoint"
                if has_checkpoint
                else "the run has not finished an evaluation or a checkpoint yet"
            )
            raise FileNotFoundError(f"{best} does not exist ({hint})")
        return load_weights(best), best.name
    folder = latest_checkpoint(run_dir / "checkpoints")
    if folder is None:
        raise FileNotFoundError(f"{run_dir / 'checkpoints'} holds no complete checkpoint")
    return load_checkpoint(folder)[0], folder.name


def load_into(model: nn.Module, weights: dict[str, Tensor], source: str) -> None:
    """``model.load_state_dict(weights)`` with a one-line error naming ``source``."""
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ValueError(f"{source} does not fit this run's model: {first}") from None


def load_run_task(
    run_dir: str | Path, recipe: str, build: Callable[[RunConfig, Path], Any], weights: str
) -> tuple[Any, str]:
    """The task of a ``recipe`` run folder with the run's weights loaded (``weights``: see
    :func:`run_weights`), and the weights' name. ``build(config, run_dir)`` makes the task."""
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    if config.recipe != recipe:
        raise ValueError(f"{run_dir} holds a {config.recipe!r} run, not a {recipe} run")
    state, source = run_weights(run_dir, weights)
    task = build(config, run_dir)
    load_into(task.model, state, str(run_dir / source))
    return task, source
