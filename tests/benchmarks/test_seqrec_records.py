"""benchmarks/seqrec.py's records: both ranking protocols, also for runs that finished before
the recipe reported the unfiltered one (computed once from the best weights, then cached)."""

from __future__ import annotations

import json
import sys

import pytest

from contrastkit.recipes import seqrec as recipe
from contrastkit.train.config import load_config
from tests.recipes.test_seqrec import _config, _write_dataset


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("seqrec")


def test_records_carry_both_protocols_and_old_runs_get_them_from_the_best_weights(
    tmp_path, bench, monkeypatch
):
    path, attr = _write_dataset(tmp_path)
    run_dir = tmp_path / "run"
    summary = recipe.run_seqrec_training(
        _config(path, attr, "sasrec", "train.epochs=2"), run_dir, echo=False
    )
    monkeypatch.setattr(bench, "config_path", lambda *key: bench.ROOT / "configs" / "x.yaml")
    record = bench.run_record(run_dir, "python benchmarks/seqrec.py")
    assert record["metrics"]["HR@20"] == summary["test_HR@20"]
    assert "unfiltered_HR@20" not in record["metrics"]
    assert record["metrics_unfiltered"]["HR@20"] == summary["test_unfiltered_HR@20"]

    # a run that finished before the unfiltered protocol was reported
    old = {k: v for k, v in summary.items() if "unfiltered" not in k}
    (run_dir / "summary.json").write_text(json.dumps(old))
    record = bench.run_record(run_dir, "python benchmarks/seqrec.py")
    expected = {k.removeprefix("test_unfiltered_"): v for k, v in summary.items()}
    for key, value in record["metrics_unfiltered"].items():
        assert value == pytest.approx(expected[key], abs=1e-12), key
    assert (run_dir / "unfiltered_test.json").is_file()

    def fail(run_dir):
        raise AssertionError("re-evaluated although the cache is valid")

    monkeypatch.setattr(bench, "_best_weights_metrics", fail)
    again = bench.run_record(run_dir, "python benchmarks/seqrec.py")
    assert again["metrics_unfiltered"] == record["metrics_unfiltered"]

    row = bench.table([again]).splitlines()[2]
    hr, hr_all = again["metrics"]["HR@20"], again["metrics_unfiltered"]["HR@20"]
    assert f"| {hr:.4f} |" in row and f"| {hr_all:.4f} |" in row


def test_timings_keep_cpu_and_gpu_records_apart_and_time_a_tiny_task(tmp_path, bench):
    cpu = {"dataset": "beauty", "method": "sasrec", "device": "x86_64 cpu (2 threads)"}
    gpu = {"dataset": "beauty", "method": "sasrec", "device": "NVIDIA H200 (cuda)"}
    old = {"dataset": "beauty", "method": "sasrec", "device": "x86_64 cpu"}  # no overrides key
    assert bench.timing_identity(cpu) != bench.timing_identity(gpu)
    assert bench.timing_identity(cpu) == bench.timing_identity({**old, "overrides": []})
    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, "cl4srec", "train.batch_size=8")
    task = recipe.SeqRecTask(config, recipe.load_sequences(config.seqrec), tmp_path / "t")
    seconds, steps_per_epoch = bench.time_training_steps(task, config, 2, "cpu")
    assert seconds > 0 and steps_per_epoch == task.num_train() // 8


def test_a_variant_run_is_labelled_from_its_saved_settings(tmp_path, bench, monkeypatch):
    """A run trained with a variant's settings (``rec_loss=bce``) is the ``sasrec_bce`` row,
    whatever its folder is called, with SASRec's published numbers and the variant's config; a
    folder named like the variant but trained with ``ce`` is plain ``sasrec``."""
    path, attr = _write_dataset(tmp_path)
    for label, (method, settings) in bench.VARIANTS.items():
        loaded = load_config(bench.config_path("beauty", label))
        assert bench.run_label(loaded.seqrec) == label and loaded.seqrec.method == method
        assert all(getattr(loaded.seqrec, k) == v for k, v in settings.items())
    assert bench.run_label(load_config(bench.config_path("beauty", "sasrec")).seqrec) == "sasrec"
    monkeypatch.setattr(bench, "PUBLISHED", {("file", "sasrec"): {"HR@20": 0.5, "NDCG@20": 0.25}})
    rows = {}
    for folder, rec_loss in (("file_sasrec", "bce"), ("file_sasrec_bce", "ce")):
        run_dir = tmp_path / folder
        config = _config(path, attr, "sasrec", "train.epochs=1", f"seqrec.rec_loss={rec_loss}")
        recipe.run_seqrec_training(config, run_dir, echo=False)
        rows[folder] = bench.run_record(run_dir, "python benchmarks/seqrec.py")
    assert rows["file_sasrec"]["label"] == "sasrec_bce"
    assert rows["file_sasrec"]["config"] == "configs/seqrec/file_sasrec_bce.yaml"
    assert rows["file_sasrec_bce"]["label"] == "sasrec"
    assert all(r["method"] == "sasrec" and r["published"]["HR@20"] == 0.5 for r in rows.values())
    table = bench.table(list(rows.values()))
    assert "| file | sasrec_bce | " in table and "| file | sasrec | " in table
    assert table.count("0.5000 / 0.2500") == 2


def test_timing_records_of_a_variant_keep_its_method_and_label_apart(bench):
    base = {"dataset": "beauty", "method": "sasrec", "overrides": [], "device": "x86_64 cpu"}
    plain, variant = {**base, "label": "sasrec"}, {**base, "label": "sasrec_bce"}
    assert bench.timing_identity(plain) != bench.timing_identity(variant)
    assert bench.timing_identity(plain) == bench.timing_identity(base)  # older records


def test_a_missing_variant_config_stops_before_anything_trains(bench, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["seqrec.py", "--datasets", "toys", "--methods", "sasrec_bce"])
    monkeypatch.setattr(bench, "run", lambda *a: pytest.fail("trained before checking configs"))
    with pytest.raises(SystemExit):
        bench.main()
    err = capsys.readouterr().err
    assert "no config" in err and "toys_sasrec_bce.yaml" in err


def test_paired_comparison_of_two_tiny_runs(tmp_path, bench, monkeypatch):
    """Two runs of one dataset: one pair row (the later method minus the earlier), whose means
    are the runs' own unfiltered test metrics and whose interval holds the difference; a
    folder whose settings do not match its name (a copy named like a variant), one without a
    config.yaml, and a run on other test users (as many of them) are left out."""
    import shutil

    path, attr = _write_dataset(tmp_path)
    runs = tmp_path / "runs"
    monkeypatch.setattr(bench, "RUNS", runs)
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    summaries = {}
    for method in ("sasrec", "cl4srec"):
        config = _config(path, attr, method, "train.epochs=2")
        summaries[method] = recipe.run_seqrec_training(config, runs / f"file_{method}", echo=False)
    (runs / "file_cl4srec" / "summary.json").unlink()  # as if still running: compared too
    records = bench.paired_comparison(["file"], "python benchmarks/seqrec.py --paired", 500)
    assert len(records) == 1
    (r,) = records
    assert (r["a"], r["b"]) == ("cl4srec", "sasrec") and r["finished"] == [False, True]
    for metric in ("HR@20", "NDCG@20"):
        m = r[metric]
        assert m["a"] == pytest.approx(summaries["cl4srec"][f"test_unfiltered_{metric}"])
        assert m["b"] == pytest.approx(summaries["sasrec"][f"test_unfiltered_{metric}"])
        assert m["interval"][0] <= m["difference"] <= m["interval"][1]
    table = bench.paired_table(records)
    assert "| file | cl4srec (running) − sasrec | " in table

    assert r["best_epochs"] == [
        summaries["cl4srec"]["best_epoch"],
        summaries["sasrec"]["best_epoch"],
    ]

    # the per-user places are kept: a run whose folder is gone is still compared
    stored = json.loads((tmp_path / "results" / "seqrec_per_user.json").read_text())
    assert [s["run"] for s in stored] == ["file_cl4srec", "file_sasrec"]
    shutil.move(runs / "file_sasrec", tmp_path / "moved")
    (again,) = bench.paired_comparison(["file"], "c", 500)
    assert again["folders_absent"] == [False, True] and r["folders_absent"] == [False, False]
    for metric in ("HR@20", "NDCG@20"):
        assert again[metric]["a"] == pytest.approx(r[metric]["a"], abs=1e-12)
        assert again[metric]["b"] == pytest.approx(r[metric]["b"], abs=1e-12)
    assert "| file | cl4srec (running) − sasrec | " in bench.paired_table([again])
    shutil.move(tmp_path / "moved", runs / "file_sasrec")

    shutil.copytree(runs / "file_sasrec", runs / "file_sasrec_bce")  # same weights, ce: skipped
    (runs / "file_copy").mkdir()  # weights without a config.yaml: not a run, skipped
    shutil.copy(runs / "file_sasrec" / "best.safetensors", runs / "file_copy")
    (tmp_path / "other").mkdir()
    other, _ = _write_dataset(tmp_path / "other", seed=1)  # other test users: not compared
    config = _config(other, attr, "duorec", "train.epochs=1")
    recipe.run_seqrec_training(config, runs / "file_duorec", echo=False)
    assert len(bench.paired_comparison(["file"], "c", 100)) == 1


def test_seeds_train_into_their_own_folders_and_are_summarised(tmp_path, bench, monkeypatch):
    """``--seeds``: the config's own seed trains into ``<dataset>_<method>`` (no second copy),
    another seed into ``..._s<seed>`` with ``train.seed`` set; the table names the seeded row,
    the seed summary is the mean ± sample std over both runs, and the paired comparison
    leaves the seeded folder out (one run per method there)."""
    import math

    path, attr = _write_dataset(tmp_path)
    config_file = tmp_path / "file_sasrec.yaml"
    config_file.write_text(
        _config(path, attr, "sasrec", "train.epochs=1", "train.seed=7").to_yaml()
    )
    monkeypatch.setattr(bench, "config_path", lambda *key: config_file)
    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    assert bench.run("file", "sasrec", [], 7) == tmp_path / "runs" / "file_sasrec"
    assert bench.run("file", "sasrec", [], 8) == tmp_path / "runs" / "file_sasrec_s8"
    saved = {
        name: load_config(tmp_path / "runs" / name / "config.yaml").train.seed
        for name in ("file_sasrec", "file_sasrec_s8")
    }
    assert saved == {"file_sasrec": 7, "file_sasrec_s8": 8}
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == list(saved)

    monkeypatch.setattr(bench, "config_path", lambda *key: bench.ROOT / "configs" / "x.yaml")
    records = [bench.run_record(tmp_path / "runs" / name, "c") for name in saved]
    assert [r["seed"] for r in records] == [7, 8]
    rows = bench.table(records).splitlines()[2:]
    assert rows[0].startswith("| file | sasrec | ") and rows[1].startswith(
        "| file | sasrec (seed 8) |"
    )

    spread = bench.seed_summary(records).splitlines()
    assert len(spread) == 3 and spread[2].startswith("| file | sasrec | 7 8 (2) | ")
    values = [r["metrics_unfiltered"]["HR@20"] for r in records]
    mean = sum(values) / 2
    std = math.sqrt(sum((v - mean) ** 2 for v in values))  # sample std of two: n - 1 = 1
    assert f"| {mean:.4f} ± {std:.4f} |" in spread[2]
    assert bench.seed_summary(records[:1]) == ""  # one seed: no summary
    copy = {**records[1], "run": "file_sasrec_copy"}  # a copy of the seed-8 run: not pooled
    assert bench.seed_summary([*records, copy]) == bench.seed_summary(records)
    assert bench.seed_summary([records[0], copy]) == ""
    assert bench.results_markdown(records[:1]) == bench.table(records[:1])
    assert "Mean ± sample std over seeds" in bench.results_markdown(records)

    paired = bench.paired_comparison(["file"], "c", 100)
    assert paired == []  # the seeded run is not a second method


def test_seeds_and_a_seed_override_are_refused_together(bench, monkeypatch, capsys):
    argv = ["seqrec.py", "--methods", "sasrec", "--seeds", "1", "2", "--set", "train.seed=3"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(bench, "run", lambda *a: pytest.fail("trained although refused"))
    with pytest.raises(SystemExit):
        bench.main()
    assert "--seeds sets train.seed" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["seqrec.py", "--methods", "sasrec", "--seeds", "1", "-2"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "--seeds must be non-negative" in capsys.readouterr().err


def test_runs_whose_folders_are_gone_keep_their_rows_as_stopped(tmp_path, bench, monkeypatch):
    """On a fresh checkout (no ``runs/``) the earlier results' rows stay: an unfinished run is
    "(stopped)", not "(running)", in both tables, and the records sort finished first; earlier
    pairs are kept only while neither of their folders is here (else they are stale)."""
    runs = tmp_path / "runs"
    monkeypatch.setattr(bench, "RUNS", runs)
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bench, "plot_curves", lambda: [])
    metrics = {"HR@20": 0.1, "NDCG@20": 0.05}
    base = {"split": "test", "metrics": metrics, "metrics_unfiltered": metrics, "published": None}
    earlier = [
        {
            **base,
            "run": "file_mclrec",
            "dataset": "file",
            "method": "mclrec",
            "finished": False,
            "best_epoch": 4,
            "epochs": 5,
            "seconds_per_epoch": None,
            "command": "a",
            "device": "d",
        },
        {
            **base,
            "run": "file_sasrec",
            "dataset": "file",
            "method": "sasrec",
            "best_epoch": 3,
            "epochs": 8,
            "seconds_per_epoch": 9.0,
            "command": "b",
            "device": "d",
        },
    ]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "seqrec.json").write_text(json.dumps(earlier))
    monkeypatch.setattr(sys, "argv", ["seqrec.py", "--datasets", "file", "--collect"])
    monkeypatch.setattr(bench, "config_path", lambda *key: tmp_path / "x.yaml")
    (tmp_path / "x.yaml").write_text("")
    assert bench.main() == 0
    records = json.loads((tmp_path / "results" / "seqrec.json").read_text())
    assert [r["run"] for r in records] == ["file_sasrec", "file_mclrec"]  # finished first
    assert all(r["folder_absent"] for r in records)
    rows = bench.table(records).splitlines()[2:]
    assert rows[0].endswith("| 3 / 8 | 9.0 |") and rows[1].endswith("| 4 / 5 (stopped) | — |")
    assert bench.run_state(False, False) == " (running)" and bench.run_state(True, True) == ""

    pair = {
        "dataset": "file",
        "a": "mclrec",
        "b": "sasrec",
        "finished": [False, True],
        "runs": ["file_mclrec", "file_sasrec"],
    }
    paired = tmp_path / "results" / "seqrec_paired.json"
    paired.write_text(json.dumps([pair, {**pair, "dataset": "other"}]))
    kept = bench.kept_pairs(paired, ["file"])
    assert kept == [{**pair, "folders_absent": [True, True]}]
    side = {
        "a": 0.1,
        "b": 0.1,
        "difference": 0.0,
        "interval": [-0.01, 0.01],
        "relative": 0.0,
        "relative_interval": [-0.1, 0.1],
        "resolved": False,
    }
    row = bench.paired_table([{**kept[0], "HR@20": side, "NDCG@20": side}]).splitlines()[2]
    assert row.startswith("| file | mclrec (stopped) − sasrec | ")
    (runs / "file_sasrec").mkdir(parents=True)  # trained again: the old pair is stale
    assert bench.kept_pairs(paired, ["file"]) == []


def test_curves_of_runs_whose_folders_are_gone_are_kept(tmp_path, bench, monkeypatch):
    """``seqrec_curves.json`` keeps the series of a run folder that is not here and draws it
    beside the folders' own; a folder that is here replaces its earlier series."""
    path, attr = _write_dataset(tmp_path)
    runs, results = tmp_path / "runs", tmp_path / "results"
    monkeypatch.setattr(bench, "RUNS", runs)
    monkeypatch.setattr(bench, "RESULTS", results)
    run = runs / "file_sasrec"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(_config(path, attr, "sasrec").to_yaml())
    rows = [{"epoch": e, "valid_NDCG@20": 0.1 * e} for e in (1, 2)]
    rows.append({"epoch": 2, "valid_NDCG@20": 0.2, "test_NDCG@20": 0.3})  # the final line
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gone = {"run": "file_mclrec", "dataset": "file", "epoch": [1], "valid_NDCG@20": [0.05]}
    stale = {"run": "file_sasrec", "dataset": "file", "epoch": [1], "valid_NDCG@20": [0.9]}
    results.mkdir()
    (results / "seqrec_curves.json").write_text(json.dumps([gone, stale]))
    assert bench.plot_curves() == [results / "seqrec_curves_file.png"]
    assert (results / "seqrec_curves_file.png").stat().st_size > 0
    assert json.loads((results / "seqrec_curves.json").read_text()) == [
        {**gone, "folder_absent": True},
        {"run": "file_sasrec", "dataset": "file", "epoch": [1, 2], "valid_NDCG@20": [0.1, 0.2]},
    ]


def test_places_give_back_the_per_user_hits_and_ndcg(bench):
    import torch

    place = torch.tensor([0, 1, 2, 7, 20, 0], dtype=torch.float64)
    hit = (place > 0).double()
    ndcg = torch.where(place > 0, 1 / torch.log2(place.clamp(min=1) + 1), 0.0)
    text = bench.encode_places({"HR@20": hit, "NDCG@20": ndcg})
    assert text == "0127k0"  # 20 is k, the last character
    back = bench.decode_places(text)
    assert torch.equal(back["HR@20"], hit)
    assert torch.allclose(back["NDCG@20"], ndcg, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="disagree"):  # a hit without a place
        bench.encode_places({"HR@20": hit, "NDCG@20": torch.zeros(6, dtype=torch.float64)})
    with pytest.raises(ValueError, match="disagree"):  # not 1 / log2 of a place
        bench.encode_places({"HR@20": hit[:2], "NDCG@20": torch.tensor([0.0, 0.9])})


def test_paired_rows_of_other_datasets_stay_and_rows_follow_the_published_order(tmp_path, bench):
    """``--paired --datasets beauty`` rewrites beauty's rows only: toys' rows stay; a kept
    pair that was scored again appears once; rows follow the published order of methods."""

    def pair(dataset, a, b, **extra):
        return {
            "dataset": dataset,
            "a": a,
            "b": b,
            "runs": [f"{dataset}_{a}", f"{dataset}_{b}"],
            "finished": [True, True],
            **extra,
        }

    path = tmp_path / "seqrec_paired.json"
    earlier = [
        pair("toys", "duorec", "sasrec"),
        pair("beauty", "mclrec", "sasrec", old=True),  # scored again now
        pair("beauty", "sra_cl", "cl4srec", old=True),  # both folders gone: kept
    ]
    path.write_text(json.dumps(earlier))
    scored = [pair("beauty", "mclrec", "sasrec"), pair("beauty", "cl4srec", "sasrec")]
    rows = bench.merged_pairs(scored, path, ["beauty"])
    assert [(r["dataset"], r["a"], r["b"], r.get("old", False)) for r in rows] == [
        ("toys", "duorec", "sasrec", False),
        ("beauty", "cl4srec", "sasrec", False),
        ("beauty", "mclrec", "sasrec", False),
        ("beauty", "sra_cl", "cl4srec", True),
    ]
    assert rows[3]["folders_absent"] == [True, True] and "folders_absent" not in rows[0]


def test_stored_places_of_a_restarted_folder_are_dropped(tmp_path, bench, monkeypatch):
    """The places file keeps absent runs and other datasets' runs, replaces the runs scored
    now, and drops a run of the scored datasets whose folder is here without best weights."""
    runs = tmp_path / "runs"
    monkeypatch.setattr(bench, "RUNS", runs)
    (runs / "beauty_duorec").mkdir(parents=True)  # started again, no best weights yet
    (runs / "toys_sasrec").mkdir()  # another dataset's folder, not scored now
    path = tmp_path / "seqrec_per_user.json"

    def entry(run, places):
        return {"run": run, "dataset": run.split("_")[0], "places": places}

    path.write_text(
        json.dumps(
            [
                entry("beauty_duorec", "1"),
                entry("beauty_mclrec", "2"),
                entry("beauty_sasrec", "3"),
                entry("toys_sasrec", "4"),
            ]
        )
    )
    bench.keep_places(path, [entry("beauty_sasrec", "5")], ["beauty"])
    assert json.loads(path.read_text()) == [
        entry("beauty_mclrec", "2"),
        entry("beauty_sasrec", "5"),
        entry("toys_sasrec", "4"),
    ]
    with pytest.raises(ValueError, match="not places"):
        bench.decode_places("12z")
