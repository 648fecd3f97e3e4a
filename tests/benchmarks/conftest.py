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
def load_benchmark(monkeypatch, tmp_path) -> Iterator[Callable[[str], ModuleType]]:
    """``load_benchmark("seqrec")``: the script as a fresh module (it imports its sibling
    ``_runs``, so ``benchmarks/`` goes on the path); forgotten again after the test. Its
    ``RESULTS`` and ``RUNS`` folders point into the test's temporary folder, so that no test
    reads or writes the repository's results files or run folders by mistake."""
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        monkeypatch.syspath_prepend(str(BENCHMARKS))
        sys.modules.pop(name, None)
        loaded.append(name)
        module = importlib.import_module(name)
        for folder in ("RESULTS", "RUNS"):
            if hasattr(module, folder):
                monkeypatch.setattr(module, folder, tmp_path / f"benchmark_{folder.lower()}")
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
