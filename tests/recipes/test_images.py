"""The image recipe and the CLI end to end on tiny digits runs: the run-folder contract, exact
resume after a kill, re-evaluation, the comparison grid, and one-line errors on bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from contrastkit.cli import main
from contrastkit.recipes import images as recipe
from contrastkit.train import engine as engine_module
from contrastkit.train.config import load_config
from tests.checkpoints import assert_same_weights

TINY = [
    "data.train_limit=256",
    "data.test_limit=128",
    "train.batch_size=64",
    "train.epochs=4",
    "train.eval_every=2",
    "train.progress=false",
    "model.width=8",
    "model.head_hidden=32",
    "model.head_out=16",
    "views.views=3",
    "eval.linear_epochs=20",
]


def _cli_overrides(overrides):
    words = []
    for item in overrides:
        key, value = item.split("=", 1)
        words += [f"--{key}", value]
    return words


def test_train_writes_the_run_folder_contract(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--output", str(out), *_cli_overrides(TINY)]) == 0
    printed = capsys.readouterr().out
    assert "| metric | trained | untrained encoder | raw pixels |" in printed
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "linear_acc",
        "knn_acc",
        "effective_rank",
        "alignment",
        "uniformity",
        "wall_seconds",
    ):
        assert isinstance(summary[key], float), key
    for key in ("untrained_linear_acc", "untrained_knn_acc", "raw_linear_acc", "raw_knn_acc"):
        assert 0.0 <= summary["baselines"][key] <= 1.0
    assert 0.0 <= summary["linear_acc"] <= 1.0 and summary["epochs"] == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert "knn_acc" in records[1] and "knn_acc" not in records[0]
    assert load_config(out / "config.yaml").views.views == 3
    assert (out / "checkpoints" / "latest").read_text().strip() == "epoch-00004"
    for png in ("score_histograms.png", "loss.png", "accuracy.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((out / "tensorboard").iterdir())
    assert [r["epoch"] for r in summary["score_history"]] == [0, 2, 4]


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    config = load_config(None, TINY)
    full = recipe.run_image_training(config, tmp_path / "full", echo=False)

    original_save = engine_module.Engine._save

    def save_then_die(self, epoch, *args, **kwargs):
        original_save(self, epoch, *args, **kwargs)
        if epoch == 2:
            raise KeyboardInterrupt  # killed right after the epoch-2 checkpoint

    monkeypatch.setattr(engine_module.Engine, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        recipe.run_image_training(config, tmp_path / "killed", echo=False)
    assert not (tmp_path / "killed" / "summary.json").exists()
    monkeypatch.setattr(engine_module.Engine, "_save", original_save)

    resumed = recipe.run_image_training(config, tmp_path / "killed", resume=True, echo=False)
    for key in ("linear_acc", "knn_acc", "effective_rank", "alignment", "uniformity"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-6, abs=1e-9), key
    assert_same_weights(tmp_path / "full", tmp_path / "killed", "epoch-00004")
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_moco_killed_inside_an_epoch_resumes_at_that_step_exactly(tmp_path, die_inside_epoch):
    """A checkpoint after every step; killed two steps into epoch 2, resumed: the same weights
    (the MoCo queue and momentum encoder are buffers of the checkpointed model)."""
    overrides = [*TINY, "views.views=2", "loss.name=info_nce", "moco.enabled=true"]
    overrides += ["moco.queue_size=128", "loss.temperature=0.2", "train.epochs=2"]
    full = recipe.run_image_training(load_config(None, overrides), tmp_path / "full", echo=False)
    often = load_config(None, [*overrides, "train.checkpoint_minutes=1e-9"])
    arm, disarm = die_inside_epoch
    arm(epoch=2, epoch_steps=2)
    with pytest.raises(KeyboardInterrupt):
        recipe.run_image_training(often, tmp_path / "killed", echo=False)
    disarm()
    resumed = recipe.run_image_training(often, tmp_path / "killed", resume=True, echo=False)
    assert resumed["knn_acc"] == pytest.approx(full["knn_acc"], rel=1e-6, abs=1e-9)
    weights = assert_same_weights(tmp_path / "full", tmp_path / "killed", "epoch-00002")
    assert any(k.startswith("queue.") for k in weights)


def test_eval_command_reproduces_the_final_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    summary = recipe.run_image_training(load_config(None, TINY), out, echo=False)
    assert main(["eval", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["knn_acc"] == pytest.approx(summary["knn_acc"])
    assert metrics["linear_acc"] == pytest.approx(summary["linear_acc"])
    assert main(["eval", str(out), "--weights", "best"]) == 2
    assert "image runs keep no best weights" in capsys.readouterr().err


def test_eval_command_refuses_recipes_without_a_re_evaluation(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(load_config(None, ["recipe=text"]).to_yaml())
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "re-evaluates images, seqrec and graphrec runs" in err and "'text'" in err


def test_compare_prints_mean_and_std(tmp_path, capsys):
    args = [
        "compare",
        "--output",
        str(tmp_path / "grid"),
        "--losses",
        "info_nce",
        "--views",
        "2",
        "--seeds",
        "0",
        "1",
        *_cli_overrides([*TINY[:-1], "train.epochs=1"]),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| info_nce | 2 |" in out and " ± " in out
    rows = json.loads((tmp_path / "grid" / "compare.json").read_text())
    assert rows[0]["seeds"] == 2


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--train.epoch", "3"], "unknown config key 'train.epoch' (did you mean train.epochs?)"),
        (["--loss", "dcl", "--views", "4"], "loss 'dcl' with views.views=4"),
        (["--loss", "supcon"], "needs extra inputs (labels)"),
        (["--loss", "nope"], "loss.name 'nope' is not a loss"),
        (["--dataset", "cifar10"], "cifar10"),
        (["--model.backbone", "vgg"], "model.backbone must be small_cnn, resnet18 or resnet50"),
        (["--loss.params.sigmaa", "0.5", "--loss", "dclw", "--views", "2"], "sigmaa"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_run_folder(tmp_path, capsys, words, message):
    out = tmp_path / "run"
    assert main(["train", "--output", str(out), *words]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("contrastkit: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_resume_with_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    recipe.run_image_training(load_config(None, TINY), out, echo=False)
    words = [*_cli_overrides(TINY), "--loss", "info_nce"]
    assert main(["train", "--resume", "--output", str(out), *words]) == 2
    assert "different config (differs in: loss.name)" in capsys.readouterr().err
    assert main(["train", "--output", str(out), *_cli_overrides(TINY)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err


def test_moco_with_feature_transformation_trains_and_resumes_exactly(tmp_path, monkeypatch):
    overrides = [
        *TINY,
        "views.views=2",
        "loss.name=info_nce",
        "moco.enabled=true",
        "moco.queue_size=128",
        "moco.pos_extrapolation=2.0",
        "moco.neg_interpolation=1.6",
        "loss.temperature=0.2",
    ]
    config = load_config(None, overrides)
    full = recipe.run_image_training(config, tmp_path / "full", echo=False)
    assert 0.0 <= full["knn_acc"] <= 1.0
    weights = load_file(
        str(tmp_path / "full" / "checkpoints" / "epoch-00004" / "model.safetensors")
    )
    assert any(k.startswith("queue.") for k in weights) and any(
        k.startswith("momentum.") for k in weights
    )

    original_save = engine_module.Engine._save

    def save_then_die(self, epoch, *args, **kwargs):
        original_save(self, epoch, *args, **kwargs)
        if epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine_module.Engine, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        recipe.run_image_training(config, tmp_path / "killed", echo=False)
    monkeypatch.setattr(engine_module.Engine, "_save", original_save)
    resumed = recipe.run_image_training(config, tmp_path / "killed", resume=True, echo=False)
    assert resumed["knn_acc"] == pytest.approx(full["knn_acc"])
    assert resumed["linear_acc"] == pytest.approx(full["linear_acc"])
    b = load_file(str(tmp_path / "killed" / "checkpoints" / "epoch-00004" / "model.safetensors"))
    for name in weights:  # online, momentum encoder and queue all bit-identical
        torch.testing.assert_close(weights[name], b[name], rtol=0, atol=0)


def test_moco_needs_two_views_and_info_nce(tmp_path, capsys):
    assert main(["train", "--output", str(tmp_path / "r"), "--moco.enabled", "true"]) == 2
    assert "moco.enabled needs views.views=2 and loss.name=info_nce" in capsys.readouterr().err


def test_shipped_configs_load_and_their_losses_fit_their_views():
    from pathlib import Path

    paths = sorted(Path("configs").rglob("*.yaml"))
    assert len(paths) >= 5
    for path in paths:
        config = load_config(path)
        recipe._check_views(config, recipe.build_loss(config))


def test_a_batch_that_does_not_split_over_the_devices_is_refused(tmp_path, capsys):
    words = ["--train.devices", "2", "--train.batch_size", "255"]
    assert main(["train", "--output", str(tmp_path / "r"), *words]) == 2
    assert "must be divisible by train.devices=2" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_two_process_training_through_the_cli(tmp_path):
    """train.devices=2 on the CPU: Fabric starts a second process running the same command;
    the loss sees the gathered global batch; only rank 0 writes the run folder."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    words = _cli_overrides([*TINY, "train.devices=2", "train.accelerator=cpu"])
    from pathlib import Path

    command = str(Path(sys.executable).parent / "contrastkit")  # Fabric re-runs this command
    done = subprocess.run(
        [command, "train", "--output", str(out), *words],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("| metric | trained |") == 1  # printed once, by rank 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 16 and 0.0 <= summary["knn_acc"] <= 1.0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]


def test_grad_cache_training_runs_and_refuses_moco(tmp_path, capsys):
    config = load_config(None, [*TINY, "train.grad_cache_chunk=16"])
    summary = recipe.run_image_training(config, tmp_path / "gc", echo=False)
    records = [
        json.loads(line) for line in (tmp_path / "gc" / "metrics.jsonl").read_text().splitlines()
    ]
    assert summary["steps"] == 16 and all(r["loss"] == r["loss"] for r in records)
    assert records[-1]["loss"] < records[0]["loss"]  # it trains
    words = [
        "--train.grad_cache_chunk",
        "8",
        "--moco.enabled",
        "true",
        "--loss",
        "info_nce",
        "--views",
        "2",
    ]
    assert main(["train", "--output", str(tmp_path / "m"), *words]) == 2
    assert "grad_cache_chunk does not apply to MoCo" in capsys.readouterr().err


def test_a_loss_with_learnable_parameters_is_refused(tmp_path, capsys):
    assert main(["train", "--output", str(tmp_path / "r"), "--loss", "siglip"]) == 2
    assert "has learnable parameters" in capsys.readouterr().err
