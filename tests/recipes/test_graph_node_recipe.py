"""The node-level graph contrastive recipe (``recipe: graphnode``): GRACE and GRACE + POT trained
through ``run_graph_node_training`` on a tiny two-community graph written as Planetoid files by
the test (metrics, metrics.jsonl, exact resume), the CLI route, the Cora configs, bad configs,
feature normalisation, the probe's validation-only model selection and GRACE's random-split
protocol (``graphnode.probe_split=random``)."""

from __future__ import annotations

import collections
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit import cli
from contrastkit.eval.probes import linear_probe
from contrastkit.recipes import graph_nodes
from contrastkit.train.config import ConfigError, config_difference, load_config
from tests.checkpoints import assert_same_weights

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "graph"
METHODS = {
    "grace": ["graphnode.method=grace"],
    "grace_pot": ["graphnode.method=grace_pot", "graphnode.pot_variant=official"],
    "grace_pot_sound": [
        "graphnode.method=grace_pot",
        "graphnode.pot_variant=sound",
        "graphnode.drop_feature_1=0.2",  # masked features go to POT (and widen the sound set)
    ],
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


def _write_two_communities(folder: Path, n: int = 60, words: int = 16, seed: int = 0) -> Path:
    """Planetoid ``ind.toy.*`` files of a two-community graph: node ``i`` is in community
    ``i % 2``; edges inside a community with probability 0.25, across with 0.02; 0/1 features,
    each community's own 8 words with probability 0.4 and any word with 0.1. Nodes 0..39 are
    ``allx`` (train = 0..9, val = 10..19 with ``num_val=10``), 40..59 the test nodes."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(n) % 2
    own = np.zeros((n, words), dtype=bool)
    for i in range(n):
        half = slice(labels[i] * words // 2, (labels[i] + 1) * words // 2)
        own[i, half] = rng.random(words // 2) < 0.4
    feats = (own | (rng.random((n, words)) < 0.1)).astype(np.float32)
    prob = np.where(labels[:, None] == labels[None, :], 0.25, 0.02)
    upper = np.triu(rng.random((n, n)) < prob, k=1)
    graph: collections.defaultdict[int, list[int]] = collections.defaultdict(list)
    for a, b in zip(*np.nonzero(upper), strict=True):
        graph[int(a)].append(int(b))
        graph[int(b)].append(int(a))
    onehot = np.eye(2, dtype=np.int32)
    test = np.arange(40, n)
    objects = {
        "x": sp.csr_matrix(feats[:10]),
        "y": onehot[labels[:10]],
        "allx": sp.csr_matrix(feats[:40]),
        "ally": onehot[labels[:40]],
        "tx": sp.csr_matrix(feats[test]),
        "ty": onehot[labels[test]],
        "graph": graph,
    }
    for key, obj in objects.items():
        (folder / f"ind.toy.{key}").write_bytes(pickle.dumps(obj, protocol=4))
    (folder / "ind.toy.test.index").write_text("".join(f"{i}\n" for i in test))
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    pytest.importorskip("scipy")
    return _write_two_communities(tmp_path_factory.mktemp("toy"))


def _overrides(data: Path, method: str, *extra: str) -> list[str]:
    return [
        "graphnode.dataset=file",
        f"graphnode.path={data}",
        "graphnode.name=toy",
        "graphnode.num_val=10",
        "graphnode.hidden=16",
        "graphnode.proj_hidden=16",
        "graphnode.tau=0.5",
        "graphnode.probe_epochs=50",
        *METHODS[method],
        "optim.lr=0.01",
        "train.epochs=3",
        "train.eval_every=1",
        "train.checkpoint_every=1",
        "train.progress=false",
        *extra,
    ]


def _config(data: Path, method: str, *extra: str):
    return load_config(CONFIGS / "cora_grace.yaml", _overrides(data, method, *extra))


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- training runs ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_trains_and_reports_probe_accuracies(tmp_path, data_dir, method):
    run = tmp_path / "run"
    summary = graph_nodes.run_graph_node_training(_config(data_dir, method), run, echo=False)
    assert summary["data"] == {
        "nodes": 60,
        "features": 16,
        "classes": 2,
        "edges": summary["data"]["edges"],
        "train": 10,
        "val": 10,
        "test": 20,
    }
    assert summary["method"] == METHODS[method][0].split("=")[1]
    for key in ("val_acc", "test_acc", "best_val_acc", "test_acc_at_best_val"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["probe_weight_decay"] in graph_nodes.PROBE_WEIGHT_DECAYS
    assert summary["epochs"] == 3 and summary["steps"] == 3  # one full-graph step per epoch
    records = _records(run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and 0 <= r["test_acc"] <= 1 for r in records)
    best = max(records, key=lambda r: (r["val_acc"], -r["epoch"]))
    assert summary["best_epoch"] == best["epoch"]
    assert summary["test_acc_at_best_val"] == best["test_acc"]
    assert (run / "summary.json").is_file()
    assert "| toy | " in (run / "results.md").read_text()


def test_the_random_probe_protocol_trains_and_reports(tmp_path, data_dir):
    config = _config(data_dir, "grace", "graphnode.probe_split=random")
    summary = graph_nodes.run_graph_node_training(config, tmp_path / "run", echo=False)
    assert summary["probe_split"] == "random"
    assert summary["probe_nodes"] == {"train": 6, "test": 54, "folds": 5}  # 60 nodes, 10 / 90 %
    assert summary["probe_weight_decay"] in graph_nodes.RANDOM_PROBE_WEIGHT_DECAYS
    for key in ("val_acc", "test_acc", "best_val_acc", "test_acc_at_best_val"):
        assert 0.0 <= summary[key] <= 1.0, key
    public = _config(data_dir, "grace")
    assert public.graphnode.probe_split == "public"
    summary = graph_nodes.run_graph_node_training(public, tmp_path / "public", echo=False)
    assert summary["probe_split"] == "public" and "probe_nodes" not in summary


def test_grace_separates_the_two_communities(tmp_path, data_dir):
    config = _config(data_dir, "grace", "train.epochs=15", "train.eval_every=0")
    summary = graph_nodes.run_graph_node_training(config, tmp_path / "run", echo=False)
    assert summary["test_acc"] >= 0.85
    losses = [r["loss"] for r in _records(tmp_path / "run")]
    assert sum(losses[-3:]) < sum(losses[:3])


@pytest.mark.parametrize("method", ["grace", "grace_pot"])
def test_resume_continues_a_killed_run_exactly(tmp_path, data_dir, method):
    """Kill after epoch 2 (drop the epoch-3 checkpoint, summary and record), resume: the same
    losses (views re-drawn from the step seed) and the same probe results."""
    config = _config(data_dir, method)
    full = graph_nodes.run_graph_node_training(config, tmp_path / "full", echo=False)
    run = tmp_path / "part"
    graph_nodes.run_graph_node_training(config, run, echo=False)
    shutil.rmtree(run / "checkpoints" / "epoch-00003")
    (run / "checkpoints" / "latest").write_text("epoch-00002\n")
    (run / "summary.json").unlink()
    resumed = graph_nodes.run_graph_node_training(config, run, resume=True, echo=False)
    for key in ("val_acc", "test_acc", "best_val_acc", "test_acc_at_best_val", "best_epoch"):
        assert resumed[key] == full[key], key
    assert [r["loss"] for r in _records(run)] == [r["loss"] for r in _records(tmp_path / "full")]
    with pytest.raises(FileExistsError):  # a finished run is not overwritten without --resume
        graph_nodes.run_graph_node_training(config, run, echo=False)


def test_one_step_epochs_checkpoint_by_the_minute_at_epoch_ends(tmp_path, data_dir, monkeypatch):
    """An epoch is one full-graph step, so there is no step inside an epoch to checkpoint at;
    with ``train.checkpoint_every`` above the epochs, ``train.checkpoint_minutes`` still
    checkpoints the epoch ends. Killed right after epoch 2's checkpoint, resumed: the same run."""
    from contrastkit.train import engine as engine_module

    config = _config(data_dir, "grace_pot", "train.checkpoint_every=20")
    full = graph_nodes.run_graph_node_training(config, tmp_path / "full", echo=False)
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir() if p.is_dir()) == [
        "epoch-00003"  # the last epoch only: the default 10 minutes never passed
    ]
    often = load_config(
        CONFIGS / "cora_grace.yaml",
        _overrides(
            data_dir, "grace_pot", "train.checkpoint_every=20", "train.checkpoint_minutes=1e-9"
        ),
    )
    original = engine_module.Engine._save
    saved = []

    def save_then_die(self, done, step, optimizer, elapsed, partial=None):
        original(self, done, step, optimizer, elapsed, partial)
        saved.append((done, partial))
        if done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine_module.Engine, "_save", save_then_die)
    run = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        graph_nodes.run_graph_node_training(often, run, echo=False)
    assert saved == [(1, None), (2, None)]  # every epoch end, never inside an epoch
    monkeypatch.setattr(engine_module.Engine, "_save", original)
    resumed = graph_nodes.run_graph_node_training(often, run, resume=True, echo=False)
    for key in ("val_acc", "test_acc", "best_val_acc", "test_acc_at_best_val", "best_epoch"):
        assert resumed[key] == full[key], key
    assert [(r["step"], r["loss"]) for r in _records(run)] == [
        (r["step"], r["loss"]) for r in _records(tmp_path / "full")
    ]
    assert_same_weights(tmp_path / "full", run, "epoch-00003")


def test_the_cli_routes_the_graphnode_recipe(tmp_path, data_dir):
    out = tmp_path / "run"
    argv = ["train", "--config", str(CONFIGS / "cora_grace_pot.yaml"), "--output", str(out)]
    overrides = _overrides(data_dir, "grace_pot", "train.epochs=1")
    assert cli.main(argv + overrides) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "grace_pot" and summary["pot_variant"] == "official"
    assert cli._default_output(load_config(CONFIGS / "cora_grace_pot.yaml")).name.startswith(
        "cora-grace_pot-"
    )


# -- configs -----------------------------------------------------------------------------------
def test_the_cora_configs_load_and_differ_only_by_pot():
    grace = load_config(CONFIGS / "cora_grace.yaml")
    pot = load_config(CONFIGS / "cora_grace_pot.yaml")
    assert grace.recipe == pot.recipe == "graphnode"
    g = grace.graphnode
    assert (g.dataset, g.method, g.hidden, g.proj_hidden, g.layers, g.activation) == (
        "cora",
        "grace",
        128,
        128,
        2,
        "relu",
    )
    assert (g.drop_edge_1, g.drop_edge_2, g.drop_feature_1, g.drop_feature_2) == (0.4, 0.3, 0, 0)
    assert g.tau == graph_nodes.POT_README_OVERRIDES["tau"]
    assert (grace.optim.name, grace.optim.lr, grace.optim.weight_decay) == ("adam", 5e-4, 1e-5)
    assert grace.optim.schedule == "constant" and grace.optim.warmup_epochs == 0
    assert grace.train.epochs == 200
    assert pot.graphnode.kappa == graph_nodes.POT_GRACE_CONFIGS["Cora"]["kappa"]
    assert config_difference(grace, pot) == ["graphnode.method"]  # kappa etc. are defaults


def test_the_paper_configs_are_grace_own_cora_setting():
    grace = load_config(CONFIGS / "cora_grace_paper.yaml")
    pot = load_config(CONFIGS / "cora_grace_pot_paper.yaml")
    paper = graph_nodes.GRACE_CONFIGS["Cora"]
    g = grace.graphnode
    assert (g.method, g.hidden, g.proj_hidden, g.layers, g.activation, g.tau) == (
        "grace",
        paper["num_hidden"],
        paper["num_proj_hidden"],
        2,
        paper["activation"],
        paper["tau"],
    )
    assert (g.drop_edge_1, g.drop_edge_2) == paper["drop_edge_rates"]
    assert (g.drop_feature_1, g.drop_feature_2) == paper["drop_feature_rates"]
    assert (grace.optim.lr, grace.optim.weight_decay) == (
        paper["learning_rate"],
        paper["weight_decay"],
    )
    assert grace.train.epochs == paper["num_epochs"] and g.probe_split == "public"
    assert pot.graphnode.kappa == 0.4 and pot.graphnode.pot_variant == "official"
    assert config_difference(grace, pot) == ["graphnode.method"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("graphnode.method=dgi", "graphnode.method"),
        ("graphnode.pot_variant=loose", "graphnode.pot_variant"),
        ("graphnode.drop_edge_1=1.0", "graphnode.drop_edge_1"),
        ("graphnode.drop_feature_2=-0.1", "graphnode.drop_feature_2"),
        ("graphnode.tau=0", "graphnode.tau"),
        ("graphnode.kappa=1.5", "graphnode.kappa"),
        ("graphnode.core=fast", "graphnode.core"),
        ("graphnode.dataset=pubmed", "graphnode.dataset"),
        ("graphnode.hidden=0", "graphnode.hidden"),
        ("graphnode.probe_weight_decay=-1", "graphnode.probe_weight_decay"),
        ("graphnode.probe_split=planetoid", "graphnode.probe_split"),
        ("graphnode.activation=elu", "activation"),  # POT's relaxation: ReLU-like only
        ("graphnode.layers=3", "layers"),  # POT's bound: 2 layers
        ("graphnode.hiden=64", "did you mean graphnode.hidden"),
    ],
)
def test_bad_configs_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(CONFIGS / "cora_grace_pot.yaml", [override])


def test_dataset_file_needs_a_path_and_a_missing_folder_is_reported(tmp_path):
    with pytest.raises(ConfigError, match=r"graphnode\.path"):
        load_config(None, ["recipe=graphnode", "graphnode.dataset=file"])
    config = load_config(
        None, ["recipe=graphnode", "graphnode.dataset=file", f"graphnode.path={tmp_path}"]
    )
    with pytest.raises(FileNotFoundError, match="Planetoid"):
        graph_nodes.run_graph_node_training(config, tmp_path / "run", echo=False)


# -- pieces ------------------------------------------------------------------------------------
def test_normalize_features_matches_pyg_normalize_features():
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    expected = torch.tensor([[1 / 3, 0, 1 / 3, 1 / 3], [0, 0, 0, 0], [0, 1, 0, 0]])
    torch.testing.assert_close(graph_nodes.normalize_features(x), expected)


def test_the_probe_strength_is_chosen_on_the_validation_nodes_only():
    gen = torch.Generator().manual_seed(0)
    n = 90
    labels = torch.arange(n) % 3
    z = torch.randn(n, 6, generator=gen) + 2 * torch.nn.functional.one_hot(labels, 6).float()
    train = torch.arange(n) < 30
    val = (torch.arange(n) >= 30) & (torch.arange(n) < 60)
    test = torch.arange(n) >= 60
    wd, result = graph_nodes.node_probe_selected(z, labels, train, val, test, epochs=30)
    scrambled = labels.clone()
    scrambled[test] = torch.roll(labels[test], 1)  # other test labels: the same choice
    wd2, result2 = graph_nodes.node_probe_selected(z, scrambled, train, val, test, epochs=30)
    assert wd == wd2 and result.val.accuracy == result2.val.accuracy
    fixed = graph_nodes.node_linear_probe(z, labels, train, val, test, weight_decay=wd, epochs=30)
    assert result.test.accuracy == fixed.test.accuracy


def test_the_random_split_is_disjoint_seeded_and_sized():
    labels = torch.arange(103) % 4
    labels[[5, 17, 80]] = -1  # unlabelled nodes (CiteSeer's isolated test nodes) are left out
    train, test = graph_nodes.random_node_split(labels, seed=3)
    assert train.dtype == test.dtype == torch.int64
    assert (train.numel(), test.numel()) == (10, 90)  # train_test_split: ceil(0.9 * 100) tests
    assert not set(train.tolist()) & set(test.tolist())
    assert set(train.tolist()) | set(test.tolist()) == set(
        torch.nonzero(labels >= 0).flatten().tolist()
    )
    again = graph_nodes.random_node_split(labels, seed=3)
    assert torch.equal(again[0], train) and torch.equal(again[1], test)
    other = graph_nodes.random_node_split(labels, seed=4)
    assert not torch.equal(other[0], train)
    cora = torch.zeros(2708, dtype=torch.int64)
    assert [t.numel() for t in graph_nodes.random_node_split(cora, 0)] == [270, 2438]
    with pytest.raises(ValueError, match="train_ratio"):
        graph_nodes.random_node_split(labels, 0, train_ratio=1.0)


def test_the_cross_validated_strength_never_looks_at_test_nodes():
    gen = torch.Generator().manual_seed(0)
    n = 300
    labels = torch.arange(n) % 3
    z = torch.randn(n, 6, generator=gen) + 1.5 * torch.nn.functional.one_hot(labels, 6).float()
    train, test = graph_nodes.random_node_split(labels, seed=0)
    grid = (1e-4, 1e-2, 1.0, 10.0)
    wd, cv, result = graph_nodes.node_probe_cross_validated(z, labels, train, test, grid, epochs=30)
    assert wd in grid and 0.0 <= cv <= 1.0 and result.predictions.shape == (test.numel(),)
    scrambled, shuffled = labels.clone(), z.clone()
    scrambled[test] = (labels[test] + 1) % 3  # other test labels and test embeddings
    shuffled[test] = torch.randn(test.numel(), 6, generator=gen)
    wd2, cv2, result2 = graph_nodes.node_probe_cross_validated(
        shuffled, scrambled, train, test, grid, epochs=30
    )
    assert (wd2, cv2) == (wd, cv)
    assert result2.accuracy != result.accuracy
    # the reported test accuracy is one fit on every training node, L2-normalised, unscaled
    zn = torch.nn.functional.normalize(z, dim=1)
    fixed = linear_probe(
        zn[train],
        labels[train],
        zn[test],
        labels[test],
        weight_decay=wd,
        epochs=30,
        standardize=False,
        num_classes=3,
    )
    assert fixed.accuracy == result.accuracy
    with pytest.raises(ValueError, match="folds"):
        graph_nodes.node_probe_cross_validated(z, labels, train[:3], test, grid)
