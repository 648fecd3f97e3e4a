"""What every recipe's run function does after building its task: train with the engine,
then write ``summary.json`` and ``results.md`` (a markdown table) into the run folder."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contrastkit.train.checkpoint import atomic_write_text
from contrastkit.train.config import RunConfig
from contrastkit.train.engine import Engine, Task


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
    with Engine(config, output, task, resume=resume) as engine:  # the lock until the summary
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
