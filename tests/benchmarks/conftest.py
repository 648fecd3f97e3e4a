"""Import a benchmark script (``benchmarks/<name>.py``) as a module for its tests."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def load_benchmark(monkeypatch) -> Iterator[Callable[[str], ModuleType]]:
    """``load_benchmark("seqrec")``: the script as a fresh module (it imports its sibling
    ``_runs``, so ``benchmarks/`` goes on the path); forgotten again after the test."""
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        monkeypatch.syspath_prepend(str(BENCHMARKS))
        sys.modules.pop(name, None)
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
