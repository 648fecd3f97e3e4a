"""The multimodal recipe (``recipe: multimodal``): every objective trained through
``run_multimodal_training`` on a tiny MovieLens-format item table and a tiny Fashion-MNIST
written by the test (metrics, metrics.jsonl, exact resume), the objective hookups on a
hand-checkable batch, the CLI route, the shipped configs and bad configs."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import contrastkit.losses as L
from contrastkit import cli
from contrastkit.eval.retrieval import random_ranking_recall
from contrastkit.recipes import multimodal
from contrastkit.train.config import ConfigError, config_difference, load_config
from tests.checkpoints import assert_same_weights, kill_inside_epoch

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "multimodal"
TOPICS = ("space", "love", "war", "cartoon", "crime", "horse")


def write_tiny_movielens(folder: Path, *, movies: int = 36, users: int = 24, seed: int = 0) -> Path:
    """``u.item`` / ``u.genre`` / ``u.data`` of ``movies`` films in 6 topics: movie ``i`` has
    topic ``i % 6`` (its title word, its genre flag ``1 + i % 6``, 30%: a random extra flag);
    user ``u`` rates the movies of topic ``u % 6`` with probability 0.8, others with 0.05."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    genres = ["unknown", "Sci-Fi", "Romance", "War", "Animation", "Crime", "Western", "Drama"]
    (folder / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(genres)) + "\n")
    lines = []
    for i in range(movies):
        flags = [0] * len(genres)
        flags[1 + i % 6] = 1
        if rng.random() < 0.3:  # else movies of a topic share their genres (ties)
            flags[int(rng.integers(1, len(genres)))] = 1
        title = f"A {TOPICS[i % 6]} story number {i} ({1990 + i % 9})"
        lines.append(f"{i + 1}|{title}|01-Jan-1995||http://x|" + "|".join(map(str, flags)))
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    ratings, stamp = [], 880000000
    for u in range(users):
        for i in range(movies):
            if rng.random() < (0.8 if i % 6 == u % 6 else 0.05):
                stamp += 1
                ratings.append(f"{u + 1}\t{i + 1}\t{int(rng.integers(1, 6))}\t{stamp}")
    (folder / "u.data").write_text("\n".join(ratings) + "\n")
    return folder


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 8, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_tiny_fashion(folder: Path, *, train: int = 120, test: int = 60, seed: int = 0) -> Path:
    """Fashion-MNIST IDX files (gzipped) of 28x28 images: class ``c`` is a bright 2-row band at
    rows ``2c + 4`` on noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        for k, c in enumerate(labels):
            images[k, 2 * c + 4 : 2 * c + 6] = 250
        return images.astype(np.uint8), labels.astype(np.uint8)

    for prefix, n in (("train", train), ("t10k", test)):
        images, labels = split(n)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return folder


@pytest.fixture(scope="module")
def movielens_dir(tmp_path_factory) -> Path:
    return write_tiny_movielens(tmp_path_factory.mktemp("ml"))


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    return write_tiny_fashion(tmp_path_factory.mktemp("fashion"))


def _movielens(path: Path, objective: str = "clip", *extra: str):
    config_file = CONFIGS / f"movielens_{objective}.yaml"
    return load_config(
        config_file,
        [
            f"multimodal.path={path}",
            "multimodal.hidden=32",
            "multimodal.test_fraction=0.25",
            "train.batch_size=12",
            "train.epochs=3",
            "train.eval_every=1",
            "train.checkpoint_every=1",
            "train.progress=false",
            "optim.warmup_epochs=0",
            *extra,
        ],
    )


def _fashion(path: Path, objective: str = "clip", *extra: str):
    return load_config(
        CONFIGS / f"fashion_mnist_{objective}.yaml",
        [
            f"multimodal.path={path}",
            "multimodal.hidden=16",
            "multimodal.cnn_width=4",
            "train.batch_size=40",
            "train.epochs=2",
            "train.eval_every=1",
            "train.checkpoint_every=1",
            "train.progress=false",
            *extra,
        ],
    )


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- training runs ---------------------------------------------------------------------------
MOVIELENS_RUNS = {
    "clip": ("clip",),
    "clip_smoothing_intra_learnable": (
        "clip",
        "multimodal.label_smoothing=0.1",
        "multimodal.intra_weight=0.5",
        "multimodal.intra_noise=0.05",
        "multimodal.learnable_temperature=true",
    ),
    "clip_trainable_title": ("clip", "multimodal.frozen=[]", "multimodal.embed_dim=16"),
    "mv_infonce": ("mv_infonce",),
    "mv_dhel": ("mv_dhel",),
    "cwcl": ("cwcl",),
    "siglip_learnable": ("siglip", "multimodal.learnable_temperature=true"),
    "two_modalities": ("clip", "multimodal.modalities=[genres, ratings]", "multimodal.frozen=[]"),
}


@pytest.mark.parametrize("run_name", list(MOVIELENS_RUNS))
def test_each_objective_trains_on_movielens_and_reports_recall(tmp_path, movielens_dir, run_name):
    objective, *extra = MOVIELENS_RUNS[run_name]
    config = _movielens(movielens_dir, objective, *extra)
    run = tmp_path / "run"
    summary = multimodal.run_multimodal_training(config, run, echo=False)
    names = config.multimodal.modality_names
    assert summary["objective"] == objective and summary["modalities"] == names
    assert summary["data"]["movies"] == 36 and summary["data"]["test"] == 9
    assert summary["data"]["train"] == 27 and summary["data"]["users"] == 24
    if config.multimodal.frozen:  # a frozen modality sets D (MiniLM: 384)
        assert summary["embed_dim"] == 384
    else:
        assert summary["embed_dim"] == config.multimodal.embed_dim
    pairs = [(a, b) for a in names for b in names if a != b]
    for k in multimodal.RECALL_KS:
        values = [summary[f"{a}->{b}/R@{k}"] for a, b in pairs]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert summary[f"R@{k}"] == pytest.approx(sum(values) / len(values))
        # chance depends on the gallery's duplicate rows (pessimistic ties), not just k / 9
        chances = [summary["chance"][f"{a}->{b}/R@{k}"] for a, b in pairs]
        assert summary["chance"][f"R@{k}"] == pytest.approx(sum(chances) / len(chances))
        assert all(0.0 < c <= min(k, 9) / 9 + 1e-12 for c in chances)
    assert summary["R@1"] <= summary["R@5"] <= summary["R@10"]
    records = _records(run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert summary["steps"] == 3 * (27 // 12)
    assert all(math.isfinite(r["loss"]) and "R@5" in r for r in records)
    assert "| movielens | " in (run / "results.md").read_text()
    if "learnable" in run_name:  # the temperature is a trained parameter
        assert summary["temperature"] != config.multimodal.temperature


def test_clip_learns_the_tiny_movielens_topics(tmp_path):
    folder = write_tiny_movielens(tmp_path / "ml", movies=72, users=48)
    extra = ("train.epochs=15", "train.eval_every=0", "train.batch_size=24")
    config = _movielens(folder, "clip", *extra)
    summary = multimodal.run_multimodal_training(config, tmp_path / "run", echo=False)
    assert summary["data"]["test"] == 18
    assert summary["R@5"] > 2.5 * summary["chance"]["R@5"]  # seeds 0..3: 3.0-3.3x
    losses = [r["loss"] for r in _records(tmp_path / "run")]
    assert sum(losses[-3:]) < sum(losses[:3])


def test_the_chance_line_is_the_random_scorer_under_ties_per_pair(movielens_dir):
    data = multimodal.MovieLensData(_movielens(movielens_dir).multimodal)
    chance = data.chance()
    names = data.names
    for a in names:
        for b in names:
            if a == b:
                continue
            expected = random_ranking_recall(data.test_inputs(b), multimodal.RECALL_KS)
            for key, value in expected.items():
                assert chance[f"{a}->{b}/{key}"] == pytest.approx(value)
    # the tiny genres gallery has duplicate rows: its chance is below k / m
    genres = random_ranking_recall(data.test_inputs("genres"), (1,))["R@1"]
    assert torch.unique(data.test_inputs("genres"), dim=0).shape[0] < 9
    assert genres < 1 / 9


def test_cwcl_teacher_is_the_frozen_modality_when_it_is_not_first(movielens_dir):
    config = _movielens(movielens_dir, "cwcl", "multimodal.modalities=[genres, title, ratings]")
    data = multimodal.MovieLensData(config.multimodal)
    task = multimodal.MultimodalTask(config, data)
    assert task.names == ["genres", "title", "ratings"] and task.frozen_index == 1
    indices = torch.arange(12)
    torch.manual_seed(0)
    loss, _ = task.training_step(task.model, indices)
    inputs = {name: data.train_inputs(name, indices) for name in task.names}
    out = task.model(inputs)  # BatchNorm in training mode: the same batch statistics
    torch.testing.assert_close(out["title"], F.normalize(inputs["title"], dim=-1))
    expected = (
        L.cwcl(torch.stack([out["title"], out["genres"]], dim=1), temperature=0.07)
        + L.cwcl(torch.stack([out["title"], out["ratings"]], dim=1), temperature=0.07)
    ) / 2
    torch.testing.assert_close(loss, expected)
    wrong = L.cwcl_multimodal(
        torch.stack([out[n] for n in task.names], dim=1), frozen=0, temperature=0.07
    )
    assert abs(float(wrong.detach()) - float(expected.detach())) > 1e-4  # tells them apart


def test_the_ceiling_counts_duplicate_gallery_vectors_against_the_query(movielens_dir):
    data = multimodal.MovieLensData(_movielens(movielens_dir).multimodal)
    ceiling = data.ceiling()
    genres = data.test_inputs("genres")
    duplicates = (genres[:, None, :] == genres[None, :, :]).all(-1).sum(1)  # incl. itself
    assert ceiling["genres/R@1"] == pytest.approx(float((duplicates == 1).float().mean()))
    assert ceiling["genres/R@1"] < 1.0  # the tiny table has movies with the same genres
    assert ceiling["ratings/R@10"] == 1.0  # 9 held-out movies


@pytest.mark.parametrize("objective", ["clip", "cwcl", "siglip"])
def test_fashion_zero_shot_runs(tmp_path, fashion_dir, objective):
    config = _fashion(fashion_dir, objective)
    summary = multimodal.run_multimodal_training(config, tmp_path / "run", echo=False)
    assert summary["data"] == {"train": 120, "test": 60, "classes": 10, "descriptions": 50}
    assert 0.0 <= summary["zero_shot_acc"] <= 1.0
    assert [r["epoch"] for r in _records(tmp_path / "run")] == [1, 2]
    assert summary["steps"] == 2 * 3


def test_fashion_descriptions_are_drawn_from_the_image_class(fashion_dir):
    config = _fashion(fashion_dir, "clip")
    data = multimodal.FashionTextData(config.multimodal)
    torch.manual_seed(0)
    indices = torch.arange(120)
    text = data.train_inputs("text", indices)
    drawn = (text @ data.descriptions.T).argmax(1)  # which description each row is
    assert torch.equal(data.description_class[drawn], data.train_labels)
    assert len(set(drawn.tolist())) > 10  # several descriptions per class are used


@pytest.mark.parametrize("dataset", ["movielens", "fashion_mnist"])
def test_resume_continues_a_killed_run_exactly(tmp_path, movielens_dir, fashion_dir, dataset):
    """Kill after epoch 2 (drop the epoch-3 checkpoint, summary and record), resume: the same
    losses (random views and descriptions re-drawn from the step seed) and metrics."""
    if dataset == "movielens":
        extra = ("multimodal.intra_weight=0.5", "multimodal.learnable_temperature=true")
        config, key = _movielens(movielens_dir, "clip", *extra), "R@5"
    else:
        config, key = _fashion(fashion_dir, "cwcl", "train.epochs=3"), "zero_shot_acc"
    full = multimodal.run_multimodal_training(config, tmp_path / "full", echo=False)
    run = tmp_path / "part"
    multimodal.run_multimodal_training(config, run, echo=False)
    shutil.rmtree(run / "checkpoints" / "epoch-00003")
    (run / "checkpoints" / "latest").write_text("epoch-00002\n")
    (run / "summary.json").unlink()
    resumed = multimodal.run_multimodal_training(config, run, resume=True, echo=False)
    assert resumed[key] == full[key]
    assert [r["loss"] for r in _records(run)] == [r["loss"] for r in _records(tmp_path / "full")]
    with pytest.raises(FileExistsError):
        multimodal.run_multimodal_training(config, run, echo=False)


@pytest.mark.parametrize("dataset", ["movielens", "fashion_mnist"])
def test_a_run_killed_inside_an_epoch_resumes_at_that_step_exactly(
    tmp_path, movielens_dir, fashion_dir, dataset, die_inside_epoch
):
    """A checkpoint after every step (3 steps an epoch); killed two steps into epoch 2,
    resumed: the same weights (learnt temperature included), losses and metrics (the intra-modal
    views and the drawn descriptions come from the step seed)."""
    if dataset == "movielens":  # 27 training movies: 3 batches of 8
        extra = ("multimodal.intra_weight=0.5", "multimodal.learnable_temperature=true")
        config, key = _movielens(movielens_dir, "clip", *extra, "train.batch_size=8"), "R@5"
    else:  # 120 training images: 3 batches of 40
        config, key = _fashion(fashion_dir, "cwcl", "train.epochs=3"), "zero_shot_acc"
    full = multimodal.run_multimodal_training(config, tmp_path / "full", echo=False)
    run = tmp_path / "part"
    often = kill_inside_epoch(multimodal.run_multimodal_training, config, run, die_inside_epoch)
    assert [r["epoch"] for r in _records(run)] == [1]
    assert (run / "checkpoints" / "latest").read_text().strip() == "epoch-00001.step-000000005"
    resumed = multimodal.run_multimodal_training(often, run, resume=True, echo=False)
    assert resumed[key] == full[key] and resumed["temperature"] == full["temperature"]
    assert [(r["step"], r["loss"]) for r in _records(run)] == [
        (r["step"], r["loss"]) for r in _records(tmp_path / "full")
    ]
    assert_same_weights(tmp_path / "full", run, "epoch-00003")


def test_the_cli_routes_the_multimodal_recipe(tmp_path, movielens_dir):
    out = tmp_path / "run"
    argv = ["train", "--config", str(CONFIGS / "movielens_mv_dhel.yaml"), "--output", str(out)]
    overrides = [f"multimodal.path={movielens_dir}", "train.epochs=1", "train.batch_size=12"]
    assert cli.main([*argv, *overrides, "train.progress=false", "multimodal.hidden=16"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "mv_dhel" and summary["frozen"] == ["title"]
    default = cli._default_output(load_config(CONFIGS / "movielens_cwcl.yaml"))
    assert default.name.startswith("movielens-cwcl-")
    bad = ["train", "--output", str(tmp_path / "bad"), "recipe=multimodal"]
    assert cli.main([*bad, "multimodal.objective=cwcl"]) == 2  # cwcl without a frozen modality


# -- the objective hookups on a hand-checkable batch -------------------------------------------
def _one_hot_batch(m: int) -> torch.Tensor:
    """z [2, m, 2]: every modality of instance i is e_i (aligned, orthogonal instances)."""
    return torch.eye(2, dtype=torch.float64)[:, None, :].expand(2, m, 2).contiguous()


TAU = 0.5


@pytest.mark.parametrize("m", [2, 3])
def test_objectives_on_aligned_orthogonal_instances(m):
    z = _one_hot_batch(m)
    a = 1 / TAU  # logit of a positive pair; negatives have logit 0

    def value(objective: str, **kw) -> float:
        frozen = 0 if objective == "cwcl" else None
        return float(
            multimodal.cross_modal_objective(
                z, objective, temperature=TAU, frozen_index=frozen, **kw
            )
        )

    # CLIP: every direction is log(e^a + 1) - a
    assert value("clip") == pytest.approx(math.log1p(math.exp(-a)))
    # label smoothing eps: (1 - eps)(LSE - a) + eps(LSE - a/2)
    lse = math.log(math.exp(a) + 1)
    assert value("clip", label_smoothing=0.2) == pytest.approx(
        0.8 * (lse - a) + 0.2 * (lse - a / 2)
    )
    # MV-InfoNCE: pos = log(m(m-1)) + a; each anchor row: (m-1) positives, m negatives (logit 0)
    pos = math.log(m * (m - 1)) + a
    neg = math.log(m * ((m - 1) * math.exp(a) + m))
    assert value("mv_infonce") == pytest.approx(neg - pos)
    # MV-DHEL: pos = log(m(m-1)/2) + a; uniformity = sum over m views of LSE over 1 negative = 0
    assert value("mv_dhel") == pytest.approx(-(math.log(m * (m - 1) / 2) + a))
    # CWCL (frozen modality 0, weights (1 + cos)/2: 1 on the diagonal, 1/2 off): per direction
    # LSE - (2/3 a + 1/3 * 0), the same for every trainable modality
    assert value("cwcl") == pytest.approx(lse - 2 * a / 3)
    # SigLIP (bias b): -log sigmoid(a + b) - log sigmoid(-b) per instance and pair
    b = -1.0
    expected = -math.log(1 / (1 + math.exp(-(a + b)))) - math.log(1 / (1 + math.exp(b)))
    assert value("siglip", bias=b) == pytest.approx(expected)


def test_objective_hookups_call_the_library_losses():
    z = torch.randn(6, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    calls = {
        "clip": L.info_nce(z, temperature=0.2, same_view_negatives=False),
        "mv_infonce": L.mv_infonce(z, temperature=0.2),
        "mv_dhel": L.mv_dhel(z, temperature=0.2),
        "cwcl": (L.cwcl(z[:, [1, 0]], temperature=0.2) + L.cwcl(z[:, [1, 2]], temperature=0.2)) / 2,
        "siglip": L.siglip(z, temperature=0.2, bias=-3.0),
    }
    for objective, expected in calls.items():
        got = multimodal.cross_modal_objective(
            z, objective, temperature=0.2, frozen_index=1, bias=-3.0
        )
        torch.testing.assert_close(got, expected, msg=objective)
    with pytest.raises(ValueError, match="label_smoothing"):
        multimodal.cross_modal_objective(z, "mv_dhel", temperature=0.2, label_smoothing=0.1)
    with pytest.raises(ValueError, match="frozen"):
        multimodal.cross_modal_objective(z, "cwcl", temperature=0.2)


def test_intra_modal_term_without_noise_is_nt_xent_of_identical_views():
    x = torch.eye(3, dtype=torch.float64)
    value = multimodal.intra_modal_loss(lambda v: v, x, temperature=TAU, dropout=0.0, noise=0.0)
    # anchor row: positive logit a, 4 negatives (2 per view) of logit 0
    a = 1 / TAU
    assert float(value) == pytest.approx(math.log(math.exp(a) + 4) - a)
    torch.manual_seed(0)
    views = multimodal.feature_view(torch.ones(1000), dropout=0.5, noise=0.0)
    assert set(views.unique().tolist()) == {0.0, 2.0}  # inverted dropout


# -- configs -----------------------------------------------------------------------------------
def test_the_shipped_configs_load_and_differ_only_by_objective():
    base = {
        "movielens": load_config(CONFIGS / "movielens_clip.yaml"),
        "fashion_mnist": load_config(CONFIGS / "fashion_mnist_clip.yaml"),
    }
    assert base["movielens"].multimodal.frozen == ["title"]
    assert base["fashion_mnist"].multimodal.frozen == ["text"]
    files = sorted(CONFIGS.glob("*.yaml"))
    assert len(files) == 8
    for path in files:
        config = load_config(path)
        assert config.recipe == "multimodal"
        dataset = "movielens" if path.stem.startswith("movielens") else "fashion_mnist"
        objective = path.stem.removeprefix(f"{dataset}_")
        assert config.multimodal.dataset == dataset and config.multimodal.objective == objective
        allowed = {"multimodal.objective"}
        if objective == "siglip":
            allowed |= {"multimodal.temperature", "multimodal.learnable_temperature"}
            assert config.multimodal.learnable_temperature  # SigLIP learns tau and the bias
        assert set(config_difference(base[dataset], config)) <= allowed, path.name


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["multimodal.objective=cwcl", "multimodal.frozen=[]"], "exactly one frozen"),
        (
            ["multimodal.objective=cwcl", "multimodal.frozen=[title, genres]"],
            "exactly one frozen",
        ),
        (["multimodal.objective=mv_dhel", "multimodal.label_smoothing=0.1"], "objective clip"),
        (["multimodal.label_smoothing=1.0"], r"label_smoothing must be in \[0, 1\)"),
        (["multimodal.modalities=[title, plot]"], "distinct modalities"),
        (["multimodal.modalities=[title, title]"], "distinct modalities"),
        (["multimodal.modalities=[title]", "multimodal.frozen=[]"], "at least 2"),
        (["multimodal.modalities=[genres, ratings]"], "not in multimodal.modalities"),
        (["multimodal.frozen=[title, genres, ratings]"], "nothing would be trained"),
        (["multimodal.frozen=title"], "must be a list"),
        (["multimodal.dataset=cifar"], "multimodal.dataset"),
        (["multimodal.objective=clap"], "multimodal.objective"),
        (["multimodal.temperature=0"], "multimodal.temperature"),
        (["multimodal.intra_dropout=1.0"], "intra_dropout"),
        (["multimodal.intra_weight=-1"], "intra_weight"),
        (["multimodal.test_fraction=1.0"], "test_fraction"),
        (["multimodal.embeddim=8"], "did you mean multimodal.embed_dim"),
        (["multimodal.siglip_bias=.nan"], "siglip_bias must be a finite"),
        (["multimodal.siglip_bias=-.inf"], "siglip_bias must be a finite"),
    ],
)
def test_bad_configs_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(CONFIGS / "movielens_clip.yaml", overrides)


def test_fashion_images_cannot_be_frozen():
    with pytest.raises(ConfigError, match="image has no fixed embedding"):
        load_config(CONFIGS / "fashion_mnist_clip.yaml", ["multimodal.frozen=[image]"])


def test_frozen_modalities_of_different_dimensions_and_missing_data_are_reported(
    tmp_path, movielens_dir
):
    config = _movielens(movielens_dir, "clip", "multimodal.frozen=[genres, ratings]")
    with pytest.raises(ValueError, match="different feature dimensions"):
        multimodal.run_multimodal_training(config, tmp_path / "run", echo=False)
    config = _movielens(tmp_path / "nowhere", "clip")
    with pytest.raises(FileNotFoundError, match=r"u\.item"):
        multimodal.run_multimodal_training(config, tmp_path / "run2", echo=False)
