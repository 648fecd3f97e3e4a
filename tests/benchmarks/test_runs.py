"""The benchmark scripts' run-folder records (benchmarks/_runs.py): which command a collected
record names."""

from __future__ import annotations

import json

import torch
from benchmarks._runs import (
    UNKNOWN,
    busy_elsewhere,
    collect_runs,
    note_command,
    noted_command,
    train_in_chain,
)

from contrastkit.train.checkpoint import save_checkpoint
from contrastkit.train.run_lock import RunLock


def _finished(run_dir, name):
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"name": name}))


def _record(run_dir, command):
    return {"run": run_dir.name, "command": command, "device": "this machine"}


def test_a_collected_run_names_the_command_that_trained_it(tmp_path):
    runs = tmp_path / "runs"
    results = tmp_path / "results.json"
    for name in ("a", "b", "c", "d"):
        _finished(runs / name, name)
    note_command(runs / "b", "python bench.py --set killed-before-a-checkpoint", fresh=True)
    note_command(runs / "b", "python bench.py --methods b", fresh=True)  # started again
    note_command(runs / "b", "python bench.py --methods b --resume-again", fresh=False)
    note_command(runs / "c", "python bench.py --methods c", fresh=True)
    results.write_text(json.dumps([{"run": "c", "command": "from results", "device": "gpu"}]))
    records = {
        r["run"]: r
        for r in collect_runs(runs, results, _record, "python bench.py --collect", {runs / "a"})
    }
    assert records["a"]["command"] == "python bench.py --collect"  # trained by this invocation
    assert records["b"]["command"] == "python bench.py --methods b"  # noted when it started
    assert records["c"]["command"] == "from results"  # the earlier results file wins
    assert records["d"]["command"] == UNKNOWN and records["d"]["device"] == UNKNOWN


def test_noted_command_skips_a_half_written_line(tmp_path):
    run = tmp_path / "run"
    assert noted_command(run) is None
    run.mkdir()
    (run / "benchmark_commands.jsonl").write_text('{"comm\n{"command": "python x.py"}\n')
    assert noted_command(run)["command"] == "python x.py"


def test_a_repeated_set_adds_to_the_overrides():
    import argparse

    from benchmarks._runs import add_set_argument

    parser = argparse.ArgumentParser()
    add_set_argument(parser)
    assert parser.parse_args(["--set", "a=1", "b=2", "--set", "c=3"]).set == ["a=1", "b=2", "c=3"]
    assert parser.parse_args([]).set == []


def test_write_merged_replaces_only_records_of_the_same_identity(tmp_path):
    from benchmarks._runs import write_merged

    path = tmp_path / "results" / "timing.json"

    def identity(record):
        return record["method"], tuple(record.get("overrides", []))

    write_merged(path, [{"method": "a", "s": 1}, {"method": "b", "s": 2}], identity)
    write_merged(
        path, [{"method": "a", "s": 3}, {"method": "a", "overrides": ["x"], "s": 4}], identity
    )
    assert json.loads(path.read_text()) == [
        {"method": "b", "s": 2},
        {"method": "a", "s": 3},
        {"method": "a", "overrides": ["x"], "s": 4},
    ]


def test_a_chain_skips_a_run_that_another_process_trains(tmp_path, capsys):
    run_dir = tmp_path / "beauty_mclrec"
    assert not busy_elsewhere(run_dir)  # no folder yet
    with RunLock(run_dir):
        assert busy_elsewhere(run_dir)
        assert "== skipped:" in capsys.readouterr().out
    assert not busy_elsewhere(run_dir)  # released: the chain trains it


def test_train_in_chain_resumes_skips_busy_runs_and_notes_the_command(tmp_path):
    from contrastkit.train.run_lock import RunFolderBusyError

    calls = []
    out = tmp_path / "run"
    assert train_in_chain(out, "run", calls.append) == out and calls == [False]
    save_checkpoint(out / "checkpoints", "epoch-00001", weights={"w": torch.zeros(1)}, state={})
    assert train_in_chain(out, "run", calls.append) == out and calls == [False, True]
    assert noted_command(out) is not None
    with RunLock(out):
        assert train_in_chain(out, "run", calls.append) is None and len(calls) == 2

    def taken(resume):
        raise RunFolderBusyError("taken meanwhile")

    assert train_in_chain(out, "run", taken) is None


def test_a_record_whose_folder_is_gone_is_kept_and_marked(tmp_path):
    """A fresh checkout has no ``runs/``: the earlier results file's records stay (marked
    ``folder_absent``) instead of vanishing; a folder that exists again decides instead."""
    runs = tmp_path / "runs"
    results = tmp_path / "results.json"
    old = [
        {"run": "gone", "command": "python bench.py --methods gone", "device": "cpu", "x": 1},
        {"run": "back", "command": "python bench.py --methods back", "device": "cpu", "x": 2},
        {"run": "running", "command": "python bench.py", "device": "cpu", "x": 3},
    ]
    results.write_text(json.dumps(old))
    _finished(runs / "back", "back")
    (runs / "running").mkdir()  # trained again, not finished yet: its old record is stale
    records = {r["run"]: r for r in collect_runs(runs, results, _record, "python c.py", set())}
    assert records["gone"] == {**old[0], "folder_absent": True}
    assert records["back"] == {
        "run": "back",
        "command": "python bench.py --methods back",  # the earlier record's command
        "device": "cpu",
    }
    assert "running" not in records


def test_a_record_naming_its_folder_by_path_is_not_kept_twice(tmp_path):
    """text.py and graph_nodes.py name a run by its path from the repository root
    (``runs/text/x_s0``): a folder that is here is collected once, however often."""
    runs = tmp_path / "runs" / "text"
    results = tmp_path / "results.json"

    def record(run_dir, command):
        return {"run": f"runs/text/{run_dir.name}", "command": command, "device": "cpu"}

    _finished(runs / "here_s0", "here")
    results.write_text(json.dumps([{"run": "runs/text/gone_s0", "command": "c", "device": "d"}]))
    for _ in range(3):
        records = collect_runs(runs, results, record, "python c.py", set())
        results.write_text(json.dumps(records))
    assert [(r["run"], r.get("folder_absent", False)) for r in records] == [
        ("runs/text/here_s0", False),
        ("runs/text/gone_s0", True),
    ]
