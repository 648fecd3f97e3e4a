"""benchmarks/graph.py's curve table: one row per evaluated epoch, a column per run folder."""

from __future__ import annotations

import pytest


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("graph")


def _curve(run, evaluations, done, total, finished=False):
    return {
        "run": run,
        "dataset": run.split("_")[0],
        "method": run.split("_")[1],
        "seed": 2020,
        "finished": finished,
        "epochs_done": done,
        "config_epochs": total,
        "seconds": 1.0,
        "evaluations": [
            {"epoch": e, "Recall@20": r, "NDCG@20": n, "Recall@10": 0.0} for e, r, n in evaluations
        ],
    }


def test_curve_table_aligns_epochs_and_marks_missing_and_finished(bench):
    curves = [
        _curve("gowalla_sgl", [(1, 0.1, 0.05), (2, 0.2, 0.1)], 2, 1000),
        _curve("gowalla_lightgcn", [(2, 0.3, 0.15)], 5, 20, finished=True),
        _curve("gowalla_lightgcn_s1", [(2, 0.9, 0.9)], 5, 20),  # seeded: left out
        _curve("ml100k_sgl", [(1, 0.7, 0.7)], 1, 1),  # another dataset
    ]
    lines = bench.curve_table(curves, "gowalla").splitlines()
    assert lines[0] == "| epoch | sgl | lightgcn |"
    assert lines[2] == "| 1 | 0.1000 / 0.0500 | — |"
    assert lines[3] == "| 2 | 0.2000 / 0.1000 | 0.3000 / 0.1500 |"
    assert lines[4] == "| epochs done | 2 / 1000 | 5 / 20 (finished) |"
    assert len(lines) == 5
    seeded_only = bench.curve_table([curves[2]], "gowalla").splitlines()
    assert seeded_only[0] == "| epoch | lightgcn_s1 |"  # all seeded: all shown


def test_an_unfinished_curve_whose_folder_is_gone_is_marked_stopped(bench):
    curves = [
        {**_curve("gowalla_lightgcl", [(1, 0.1, 0.05)], 7, 100), "folder_absent": True},
        {**_curve("gowalla_sgl", [(1, 0.2, 0.1)], 3, 20, finished=True), "folder_absent": True},
    ]
    last = bench.curve_table(curves, "gowalla").splitlines()[-1]
    assert last == "| epochs done | 7 / 100 (stopped) | 3 / 20 (finished) |"
