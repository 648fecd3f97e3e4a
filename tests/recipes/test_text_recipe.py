"""The text recipe on a tiny BERT and tiny files written here: every method / loss hookup
trains and reports STS Spearman, the hard-negative miner, exact resume, the CLI route, the
export, and bad configs."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from contrastkit.cli import main as cli_main
from contrastkit.encoders.text import TextEncoder
from contrastkit.recipes import text as text_recipe
from contrastkit.train.config import ConfigError, load_config
from tests.checkpoints import assert_same_weights
from tests.text_models import WORDS, tiny_bert_folder

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "text" / "stsb_unsup_simcse.yaml"


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS[:-2]) for _ in range(rng.randint(3, 8))) + " ."


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    (root / "sentences.txt").write_text("\n".join(_sentence(rng) for _ in range(40)) + "\n")
    stsb = root / "stsb"
    stsb.mkdir()
    for split, n in (("train", 40), ("dev", 12), ("test", 12)):
        rows = []
        for i in range(n):
            a = _sentence(rng)
            score = rng.choice([0.0, 1.0, 2.5, 4.0, 4.5, 5.0])
            b = a if score >= 4 else _sentence(rng)
            rows.append(f"g\tf\t2012\t{i:04d}\t{score}\t{a}\t{b}")
        (stsb / f"sts-{split}.csv").write_text("\n".join(rows) + "\n")
    return {
        "bert": tiny_bert_folder(root / "bert"),
        "sentences": root / "sentences.txt",
        "stsb": stsb,
    }


def _config(files, *extra: str):
    return load_config(
        CONFIG,
        [
            f"text.model={files['bert']}",
            f"text.sentences={files['sentences']}",
            f"text.stsb={files['stsb']}",
            "text.max_length=12",
            "train.epochs=2",
            "train.batch_size=8",
            "train.progress=false",
            "optim.lr=1e-3",
            *extra,
        ],
    )


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


CASES = {
    "unsup_simcse": [],
    "unsup_info_nce": ["loss.name=info_nce"],
    "unsup_dcl": ["loss.name=dcl"],
    "unsup_supcon": ["loss.name=supcon"],
    "unsup_mv_infonce_v3": ["loss.name=mv_infonce", "text.num_views=3"],
    "sup_simcse": ["text.method=sup"],
    "sup_hardneg": ["text.method=sup", "text.hard_negatives=true"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_hookup_trains_and_reports_sts_spearman(tmp_path, files, case):
    run = tmp_path / "run"
    summary = text_recipe.run_text_training(_config(files, *CASES[case]), run, echo=False)
    for key in ("start_dev_spearman", "start_test_spearman", "best_dev_spearman", "test_spearman"):
        assert -1.0 <= summary[key] <= 1.0, key
    records = _records(run)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert summary["best_dev_spearman"] == max(r["dev_spearman"] for r in records)
    expected_views = {"sup_simcse": 2, "sup_hardneg": 3, "unsup_mv_infonce_v3": 3}
    assert summary["views"] == expected_views.get(case, 2)
    high = sum(s >= 4.0 for s in text_recipe.stsb_split("train", files["stsb"]).scores)
    assert summary["train_examples"] == (40 if case.startswith("unsup") else high)
    assert (run / "sentence_transformer" / "modules.json").is_file()


def test_the_loss_sees_v_dropout_views_of_each_sentence(files):
    config = _config(files, "loss.name=mv_infonce", "text.num_views=3", "text.dropout=0.0")
    task = text_recipe.TextTask(config, Path("unused"))
    seen = {}

    def spy(z, *inputs):
        seen["z"] = z
        return z.sum()

    task.criterion = spy
    task.training_step(task.model, torch.tensor([0, 5, 7]))
    z = seen["z"]
    assert z.shape == (3, 3, 16)
    torch.testing.assert_close(z[:, 0], z[:, 2])  # no dropout: the views coincide
    expected = task.encoder.encode([task.columns[0][i] for i in (0, 5, 7)])
    torch.testing.assert_close(z[:, 1], expected, rtol=1e-5, atol=1e-6)


def test_supervised_pairs_are_the_high_score_training_pairs(files):
    task = text_recipe.TextTask(
        _config(files, "text.method=sup", "text.min_score=4.5"), Path("unused")
    )
    train = text_recipe.stsb_split("train", files["stsb"])
    expected = [a for a, s in zip(train.first, train.scores, strict=True) if s >= 4.5]
    assert task.columns[0] == expected and len(task.columns) == 2


def test_hard_negatives_are_the_most_similar_pool_sentences_but_never_the_pair():
    class Fixed(TextEncoder):
        def __init__(self):  # no model: encode() is replaced
            torch.nn.Module.__init__(self)

        def encode(self, texts, *, batch_size=128, normalize=False):
            table = {"a": [1.0, 0.0], "p": [1.0, 0.0], "x": [0.9, 0.1], "y": [0.0, 1.0]}
            z = torch.tensor([table[t] for t in texts])
            return torch.nn.functional.normalize(z, dim=-1) if normalize else z

    mined = text_recipe.mine_hard_negatives(Fixed(), ["a", "y"], ["p", "x"], ["a", "p", "x", "y"])
    # "a"/"p" excluded for the first; "y"/"x" for the second, whose tie a/p goes to the first
    assert mined == ["x", "a"]
    with pytest.raises(ValueError, match="pool of candidate sentences is empty"):
        text_recipe.mine_hard_negatives(Fixed(), ["a"], ["p"], [])


def test_resume_continues_a_killed_run_exactly(tmp_path, files):
    config = _config(files, "train.epochs=3", "train.keep_checkpoints=2")
    full = text_recipe.run_text_training(config, tmp_path / "full", echo=False)
    run = tmp_path / "part"
    text_recipe.run_text_training(config, run, echo=False)
    shutil.rmtree(run / "checkpoints" / "epoch-00003")
    (run / "checkpoints" / "latest").write_text("epoch-00002\n")
    (run / "summary.json").unlink()
    scored_without_start = []
    original = text_recipe.TextTask.score

    def score(self, pairs):
        scored_without_start.append(not self.start)
        return original(self, pairs)

    text_recipe.TextTask.score = score
    try:
        resumed = text_recipe.run_text_training(config, run, resume=True, echo=False)
    finally:
        text_recipe.TextTask.score = original
    assert scored_without_start and not any(scored_without_start)  # start scores restored
    for key in ("start_test_spearman", "best_dev_spearman", "test_spearman", "best_epoch"):
        assert resumed[key] == full[key], key
    assert [r["loss"] for r in _records(run)] == [r["loss"] for r in _records(tmp_path / "full")]


@pytest.mark.parametrize("epoch", [1, 2])
def test_a_run_killed_inside_an_epoch_resumes_at_that_step_exactly(
    tmp_path, files, epoch, die_inside_epoch
):
    """A checkpoint after every step (5 steps an epoch); killed two steps into ``epoch``,
    resumed: the same weights, losses and scores (dropout masks from the step seed; killed in
    epoch 1, the starting model's scores come from the checkpoint, not from the trained
    model)."""
    config = _config(files, "train.epochs=3")
    full = text_recipe.run_text_training(config, tmp_path / "full", echo=False)
    often = _config(files, "train.epochs=3", "train.checkpoint_minutes=1e-9")
    arm, disarm = die_inside_epoch
    arm(epoch=epoch, epoch_steps=2)
    run = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        text_recipe.run_text_training(often, run, echo=False)
    assert [r["epoch"] for r in _records(run)] == list(range(1, epoch))
    assert (run / "checkpoints" / "latest").read_text().strip() == (
        f"epoch-{epoch - 1:05d}.step-{5 * (epoch - 1) + 2:09d}"
    )
    disarm()
    resumed = text_recipe.run_text_training(often, run, resume=True, echo=False)
    for key in ("start_dev_spearman", "start_test_spearman", "best_dev_spearman", "test_spearman"):
        assert resumed[key] == full[key], key
    assert resumed["best_epoch"] == full["best_epoch"]
    assert [(r["step"], r["loss"]) for r in _records(run)] == [
        (r["step"], r["loss"]) for r in _records(tmp_path / "full")
    ]
    assert_same_weights(tmp_path / "full", run, "epoch-00003")


def test_the_cli_routes_the_text_recipe(tmp_path, files, capsys):
    out = tmp_path / "cli"
    code = cli_main(
        [
            "train",
            "--config",
            str(CONFIG),
            "--output",
            str(out),
            f"text.model={files['bert']}",
            f"text.sentences={files['sentences']}",
            f"text.stsb={files['stsb']}",
            "train.epochs=1",
            "train.batch_size=8",
            "train.progress=false",
            "text.max_length=12",
        ]
    )
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["method"] == "unsup"
    assert "| unsup | simcse |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("text.method=self", "text.method must be one of"),
        ("text.pooling=max", "text.pooling must be one of"),
        ("text.num_views=1", "text.num_views must be >= 2"),
        ("text.dropout=1.0", "text.dropout must be in"),
        ("text.hard_negatives=true", "text.hard_negatives needs text.method=sup"),
    ],
)
def test_bad_configs_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(CONFIG, [override])


def test_losses_the_recipe_cannot_feed_are_refused(files):
    with pytest.raises(ValueError, match=r"use text\.num_views=2"):
        text_recipe.TextTask(_config(files, "text.num_views=3"), Path("unused"))
    with pytest.raises(ValueError, match="needs inputs"):
        text_recipe.TextTask(_config(files, "loss.name=soft_supcon"), Path("unused"))
    with pytest.raises(ValueError, match=r"hard_negatives needs loss\.name=simcse"):
        text_recipe.TextTask(
            _config(files, "text.method=sup", "text.hard_negatives=true", "loss.name=info_nce"),
            Path("unused"),
        )
