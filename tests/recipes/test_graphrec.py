"""The graph-recommendation recipe: a few-step training run per method (metrics, metrics.jsonl,
best weights, resume), LightGCN on a planted structure, the SVD view against numpy, the
contrastive terms against explicit float64 formulas, the negative sampler, SGL's views, and the
configs (tiny LightGCN-format files written by the tests)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrastkit import cli
from contrastkit import losses as loss_lib
from contrastkit.data.graphs import load_lightgcn_dataset
from contrastkit.recipes import graphrec
from contrastkit.train.config import ConfigError, load_config
from tests.checkpoints import kill_inside_epoch

METHODS = ("lightgcn", "sgl", "simgcl", "lightgcl")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "graph"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


def _write_dataset(folder: Path, users=48, items=60, groups=4, seed=0) -> Path:
    """Users of group g interact with items of block g only: 6 training and 2 test items each."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    per = items // groups
    train, test = [], []
    for u in range(users):
        block = np.arange((u % groups) * per, (u % groups + 1) * per)
        chosen = rng.permutation(block)[:8]
        train.append(" ".join(map(str, [u, *sorted(chosen[:6])])))
        test.append(" ".join(map(str, [u, *sorted(chosen[6:])])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    return folder


LOSS = {
    "lightgcn": [],
    "sgl": ["loss.params={same_view_negatives: false, normalize: true}"],
    "simgcl": [
        "loss.params={same_view_negatives: false, normalize: true}",
        "graphrec.cl_negatives=batch",
    ],
    "lightgcl": [
        "loss.params={same_view_negatives: false, normalize: false}",
        "graphrec.layers=2",
        "graphrec.edge_dropout=0.0",
        "graphrec.reg_weight=1e-7",
    ],
}


def _config(folder, method, *extra):
    return load_config(
        None,
        [
            "recipe=graphrec",
            "graphrec.dataset=file",
            f"graphrec.path={folder}",
            f"graphrec.method={method}",
            "graphrec.dim=16",
            "graphrec.eval_batch=20",
            "loss.name=info_nce",
            "loss.temperature=0.2",
            *LOSS[method],
            "optim.lr=0.01",
            "optim.weight_decay=0.0",
            "optim.warmup_epochs=0.0",
            "optim.schedule=constant",
            "train.batch_size=64",
            "train.epochs=2",
            "train.eval_every=1",
            "train.progress=false",
            *extra,
        ],
    )


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- training runs ---------------------------------------------------------------------------
def test_lightgcn_learns_with_the_uniform_user_sampler_too(tmp_path):
    """As the planted-structure test below, with ``graphrec.sampler=users``."""
    data = _write_dataset(tmp_path / "data", users=80, items=120)
    config = _config(
        data, "lightgcn", "train.epochs=8", "train.eval_every=0", "graphrec.sampler=users"
    )
    summary = graphrec.run_graphrec_training(config, tmp_path / "run", echo=False)
    assert summary["test_Recall@20"] > 0.6


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_reports_full_ranking_metrics(tmp_path, method):
    data = _write_dataset(tmp_path / "data")
    summary = graphrec.run_graphrec_training(_config(data, method), tmp_path / "run", echo=False)
    for prefix in ("test_", "best_test_"):
        recalls = [summary[f"{prefix}Recall@{k}"] for k in (10, 20, 40)]
        assert 0.0 <= recalls[0] <= recalls[1] <= recalls[2] <= 1.0
        for k in (10, 20, 40):
            assert 0.0 <= summary[f"{prefix}NDCG@{k}"] <= 1.0
    assert summary["data"] == {"users": 48, "items": 60, "train": 288, "test": 96}
    records = _records(tmp_path / "run")
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss"]) and "test_Recall@20" in r for r in records)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["epoch"] == summary["best_epoch"]
    assert (
        best["score"] == summary["best_test_Recall@20"] == max(r["test_Recall@20"] for r in records)
    )
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert f"| file | {method} |" in (tmp_path / "run" / "results.md").read_text()


def test_a_validation_split_is_held_out_of_the_training_items(tmp_path):
    """valid_fraction: the validation items are a seeded part of each user's training items,
    never trained on; the run reports valid_* metrics only, selects and early-stops on them."""
    data = _write_dataset(tmp_path / "data")
    plain = graphrec.load_graph(_config(data, "lightgcn").graphrec)
    config = _config(data, "lightgcn", "graphrec.valid_fraction=0.25", "graphrec.patience=5")
    split = graphrec.load_graph(config.graphrec)
    for u in range(plain.num_users):
        train, valid = set(split.train[u].tolist()), set(split.test[u].tolist())
        assert not train & valid and train | valid == set(plain.train[u].tolist())
        assert len(valid) == round(0.25 * len(plain.train[u]))
    assert graphrec.load_graph(config.graphrec).test[3].tolist() == split.test[3].tolist()
    summary = graphrec.run_graphrec_training(config, tmp_path / "run", echo=False)
    assert summary["evaluated_on"] == "valid"
    assert summary["data"] == {"users": 48, "items": 60, "train": 192, "valid": 96}
    assert "valid_Recall@20" in summary and "best_valid_NDCG@20" in summary
    assert not any(key.startswith(("test_", "best_test_")) for key in summary)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["score"] == max(r["valid_Recall@20"] for r in _records(tmp_path / "run"))
    assert f"| {summary['valid_Recall@10']:.4f} |" in (tmp_path / "run" / "results.md").read_text()
    # early stopping on the validation metric (nothing improves at this learning rate)
    stopping = _config(
        data,
        "lightgcn",
        "graphrec.valid_fraction=0.25",
        "graphrec.patience=1",
        "optim.lr=1e-9",
        "train.epochs=20",
    )
    stopped = graphrec.run_graphrec_training(stopping, tmp_path / "stop", echo=False)
    assert stopped["epochs"] == 2 and _records(tmp_path / "stop")[-1]["stopped_early"] is True
    # split_seed (allowed on file datasets with a validation split) draws another split
    other = graphrec.load_graph(
        _config(data, "lightgcn", "graphrec.valid_fraction=0.25", "graphrec.split_seed=7").graphrec
    )
    assert any(
        set(a.tolist()) != set(b.tolist()) for a, b in zip(other.test, split.test, strict=True)
    )


def test_a_validation_split_that_holds_nothing_out_is_refused(tmp_path):
    data = _write_dataset(tmp_path / "data")
    config = _config(data, "lightgcn", "graphrec.valid_fraction=0.01")
    with pytest.raises(ValueError, match=r"valid_fraction=0\.01 holds out no training item"):
        graphrec.GraphRecTask(config, graphrec.load_graph(config.graphrec), tmp_path / "run")


def test_lightgcn_learns_the_planted_structure(tmp_path):
    """Test items come from the user's own block of 15 items: far above the random Recall@20
    (about 20 / 54 of the 54 unexcluded items, and most of them outside the block)."""
    data = _write_dataset(tmp_path / "data", users=80, items=120)
    config = _config(data, "lightgcn", "train.epochs=8", "train.eval_every=0")
    summary = graphrec.run_graphrec_training(config, tmp_path / "run", echo=False)
    assert summary["test_Recall@20"] > 0.6
    assert summary["test_Recall@20"] > 3 * 20 / 114


@pytest.mark.parametrize("method", METHODS)
def test_resume_continues_a_killed_run_exactly(tmp_path, method):
    """Kill after epoch 2 (drop the epoch-3 checkpoint and record), resume: the same run (SGL's
    views come from the epoch generator, SimGCL's noise and the negatives from the step seed)."""
    data = _write_dataset(tmp_path / "data")
    config = _config(data, method, "train.epochs=3")
    full = graphrec.run_graphrec_training(config, tmp_path / "full", echo=False)
    run = tmp_path / "part"
    graphrec.run_graphrec_training(config, run, echo=False)
    shutil.rmtree(run / "checkpoints" / "epoch-00003")
    (run / "checkpoints" / "latest").write_text("epoch-00002\n")
    (run / "summary.json").unlink()
    resumed = graphrec.run_graphrec_training(config, run, resume=True, echo=False)
    for key in ("test_Recall@20", "test_NDCG@20", "best_test_Recall@40", "best_epoch"):
        assert resumed[key] == full[key], key
    assert [r["loss"] for r in _records(run)] == [r["loss"] for r in _records(tmp_path / "full")]


def test_sgl_killed_inside_an_epoch_resumes_at_that_step_exactly(tmp_path, die_inside_epoch):
    """A checkpoint after every step; killed two steps into epoch 2, resumed: the same run
    (SGL's two views of epoch 2 are drawn again from the epoch generator)."""
    data = _write_dataset(tmp_path / "data")
    config = _config(data, "sgl", "train.epochs=3", "train.batch_size=32")
    full = graphrec.run_graphrec_training(config, tmp_path / "full", echo=False)
    run = tmp_path / "part"
    often = kill_inside_epoch(graphrec.run_graphrec_training, config, run, die_inside_epoch)
    assert [r["epoch"] for r in _records(run)] == [1]
    resumed = graphrec.run_graphrec_training(often, run, resume=True, echo=False)
    for key in ("test_Recall@20", "test_NDCG@20", "best_test_Recall@40", "best_epoch"):
        assert resumed[key] == full[key], key
    assert [(r["step"], r["loss"]) for r in _records(run)] == [
        (r["step"], r["loss"]) for r in _records(tmp_path / "full")
    ]


def test_early_stopping_on_the_test_metric_and_resume_of_a_stopped_run(tmp_path):
    data = _write_dataset(tmp_path / "data")
    # lr so small nothing improves after the first evaluation: patience 1 stops at epoch 2
    config = _config(data, "lightgcn", "train.epochs=20", "graphrec.patience=1", "optim.lr=1e-9")
    summary = graphrec.run_graphrec_training(config, tmp_path / "run", echo=False)
    records = _records(tmp_path / "run")
    assert len(records) == 2 and records[-1]["stopped_early"] is True
    assert summary["epochs"] == 2 and summary["best_epoch"] == 1
    again = graphrec.run_graphrec_training(config, tmp_path / "run", resume=True, echo=False)
    assert again["test_Recall@20"] == summary["test_Recall@20"]  # finished: nothing retrained
    assert len(_records(tmp_path / "run")) == 2


def test_the_cli_routes_the_graphrec_recipe(tmp_path):
    data = _write_dataset(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["train", "--config", str(CONFIGS / "gowalla_lightgcn.yaml"), "--output", str(out)]
    overrides = [
        "graphrec.dataset=file",
        f"graphrec.path={data}",
        "graphrec.dim=8",
        "train.epochs=1",
        "train.progress=false",
    ]
    assert cli.main(argv + overrides) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "lightgcn" and "test_Recall@20" in summary


# -- pieces against explicit formulas ---------------------------------------------------------
def _task(tmp_path, method, *extra):
    data = _write_dataset(tmp_path / "data")
    config = _config(data, method, *extra)
    return graphrec.GraphRecTask(config, graphrec.load_graph(config.graphrec), tmp_path / "run")


def _normalised_matrix(graph) -> np.ndarray:
    """Â_ui = 1 / sqrt(d_u d_i) of the training interactions, dense float64 (numpy)."""
    r = np.zeros((graph.num_users, graph.num_items))
    for u, items in enumerate(graph.train):
        r[u, items] = 1.0
    du, di = r.sum(1), r.sum(0)
    with np.errstate(divide="ignore"):
        inv_u = np.where(du > 0, 1 / np.sqrt(du), 0.0)
        inv_i = np.where(di > 0, 1 / np.sqrt(di), 0.0)
    return inv_u[:, None] * r * inv_i[None, :]


def test_svd_view_reconstructs_numpys_truncated_svd_of_the_normalised_matrix(tmp_path):
    """Four complete user-item blocks of different sizes plus two cross-block edges: a clear
    gap after the 4th singular value, so the randomised ``svd_lowrank`` (q = 4, as LightGCL
    calls it) finds the top-4 subspace; ``U S Vᵀ`` equals numpy's rank-4 reconstruction (signs
    and rotations within the subspace do not matter), and it is the SVD of the normalised
    matrix, not of the 0/1 one."""
    folder = tmp_path / "data"
    folder.mkdir()
    sizes = [(6, 5), (8, 7), (10, 9), (12, 11)]  # (users, items) per block
    train, user, item = [], 0, 0
    for users, items in sizes:
        for _ in range(users):
            train.append([user, *range(item, item + items)])
            user += 1
        item += items
    train[0].append(item - 1)  # cross-block edges
    train[-1].append(0)
    (folder / "train.txt").write_text("\n".join(" ".join(map(str, r)) for r in train) + "\n")
    (folder / "test.txt").write_text("0 7\n")
    graph = load_lightgcn_dataset(folder)
    adjacency = graph.normalized_adjacency(dtype=torch.float64)
    block = graphrec.user_item_block(graph, adjacency)
    a = _normalised_matrix(graph)
    np.testing.assert_allclose(block.to_dense().numpy(), a, atol=1e-12)
    u, s, v = graphrec.svd_view(block, 4, seed=0)
    ours = ((u * s) @ v.T).numpy()
    left, sigma, right = np.linalg.svd(a)
    assert sigma[4] < 0.11 * sigma[3]  # the gap
    expected = (left[:, :4] * sigma[:4]) @ right[:4]
    # randomised subspace iteration (niter=2): error ~ (σ5/σ4)^5 ≈ 1e-5 of the largest entries
    np.testing.assert_allclose(ours, expected, atol=2e-5)
    np.testing.assert_allclose(s.numpy(), sigma[:4], rtol=1e-6)
    raw = np.linalg.svd((a > 0).astype(float))
    raw_reconstruction = (raw[0][:, :4] * raw[1][:4]) @ raw[2][:4]
    assert np.abs(ours - raw_reconstruction).max() > 0.5
    again = graphrec.svd_view(block, 4, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(again, (u, s, v), strict=True))  # seeded


def test_lightgcl_views_follow_the_official_propagation(tmp_path):
    """E = Σ_{l=0..L} Â^l E⁰ (sums), G_u = E⁰_u + Σ_{l=1..L} US Vᵀ E_i^(l-1) (and the item
    side), from the main view's E^(l-1): dense float64 numpy with the task's own SVD factors."""
    task = _task(tmp_path, "lightgcl", "graphrec.layers=3", "graphrec.svd_rank=3")
    task.model.double()
    task.adj = task.graph.normalized_adjacency(dtype=torch.float64)
    u, s, v = graphrec.svd_view(graphrec.user_item_block(task.graph, task.adj), 3, seed=0)
    task.svd = (u * s, v * s, u, v)
    e_users, e_items, g_users, g_items = (t.detach().numpy() for t in task.lightgcl_views(0.0))
    graph = task.graph
    n_u = graph.num_users
    a = _normalised_matrix(graph)
    bip = np.block([[np.zeros((n_u, n_u)), a], [a.T, np.zeros((a.shape[1], a.shape[1]))]])
    r = ((u * s) @ v.T).numpy()  # U S Vᵀ, [users, items]
    layers = [task.model.ego_embeddings().detach().numpy()]
    for _ in range(3):
        layers.append(bip @ layers[-1])
    total = sum(layers)
    np.testing.assert_allclose(e_users, total[:n_u], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(e_items, total[n_u:], rtol=1e-10, atol=1e-12)
    g_u = layers[0][:n_u] + sum(r @ layers[l][n_u:] for l in range(3))
    g_i = layers[0][n_u:] + sum(r.T @ layers[l][:n_u] for l in range(3))
    np.testing.assert_allclose(g_users, g_u, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_items, g_i, rtol=1e-10, atol=1e-12)


def _symmetric_terms(a, b, tau, anchors):
    """½ (LSE_v a_u·b_v/τ - a_u·b_u/τ) + ½ (LSE_v b_u·a_v/τ - b_u·a_u/τ) per anchor u."""
    out = []
    for u in anchors:
        first = torch.logsumexp(a[u] @ b.T / tau, 0) - a[u] @ b[u] / tau
        second = torch.logsumexp(b[u] @ a.T / tau, 0) - b[u] @ a[u] / tau
        out.append((first + second) / 2)
    return torch.stack(out)


@pytest.mark.parametrize("core", ["dense", "tiled"])
def test_sgl_term_all_nodes_as_candidates_repeats_counted(tmp_path, core):
    """SGL-Torch: cosine logits, the batch's rows (with repeats) as anchors, every node of the
    other view in the denominator; the library loss averages both directions."""
    task = _task(tmp_path, "sgl", f"graphrec.core={core}")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 8, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(30, 8, generator=g, dtype=torch.float64)
    ids = torch.tensor([4, 9, 4, 4, 17, 0])
    ours = task.contrastive(a, b, ids)
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
    expected = _symmetric_terms(an, bn, 0.2, ids.tolist()).mean()
    torch.testing.assert_close(ours, expected)
    (grad,) = torch.autograd.grad(ours, a)
    (expected_grad,) = torch.autograd.grad(expected, a)
    torch.testing.assert_close(grad, expected_grad)


def test_simgcl_term_distinct_batch_nodes_in_batch_negatives(tmp_path):
    """SELFRec's InfoNCE: the batch's distinct nodes, negatives the other distinct nodes."""
    task = _task(tmp_path, "simgcl")
    g = torch.Generator().manual_seed(1)
    a = torch.randn(30, 8, generator=g, dtype=torch.float64)
    b = torch.randn(30, 8, generator=g, dtype=torch.float64)
    ids = torch.tensor([4, 9, 4, 4, 17, 0])
    distinct = [0, 4, 9, 17]
    an, bn = F.normalize(a[distinct], dim=1), F.normalize(b[distinct], dim=1)
    expected = _symmetric_terms(an, bn, 0.2, range(4)).mean()
    torch.testing.assert_close(task.contrastive(a, b, ids), expected)


def test_lightgcl_term_is_the_library_loss_plus_a_clamped_positive(tmp_path):
    """No normalisation, all nodes as candidates, repeats counted, the positive logit clamped to
    [-5, 5] (the rows are scaled so that some positives are far outside)."""
    task = _task(tmp_path, "lightgcl")
    g = torch.Generator().manual_seed(2)
    e = torch.randn(30, 8, generator=g, dtype=torch.float64)
    gv = e + 0.3 * torch.randn(30, 8, generator=g, dtype=torch.float64)
    gv[:10] *= 2.0  # g_u·e_u / 0.2 well above 5 for these
    ids = torch.tensor([1, 1, 3, 12, 25, 25, 25])
    tau, c = 0.2, 5.0
    rows = []
    for u in ids.tolist():
        lse = 0.5 * torch.logsumexp(gv[u] @ e.T / tau, 0)
        lse = lse + 0.5 * torch.logsumexp(e[u] @ gv.T / tau, 0)
        rows.append(lse - torch.clamp(gv[u] @ e[u] / tau, -c, c))
    expected = torch.stack(rows).mean()
    assert (gv[ids] * e[ids]).sum(1).div(tau).abs().max() > 2 * c
    torch.testing.assert_close(task.lightgcl_contrastive(gv, e, ids), expected)
    # without the clamp it is exactly the library's symmetric cross-view InfoNCE
    task.cfg.positive_clamp = 1e9
    criterion = loss_lib.get(
        "info_nce", temperature=tau, same_view_negatives=False, normalize=False, reduction="none"
    )
    per_node = criterion(torch.stack([gv, e], dim=1))
    torch.testing.assert_close(task.lightgcl_contrastive(gv, e, ids), per_node[ids].mean())


def _shipped_loss(method: str) -> list[str]:
    """The loss and core settings of ``configs/graph/gowalla_<method>.yaml`` as overrides."""
    shipped = load_config(CONFIGS / f"gowalla_{method}.yaml")
    params = ", ".join(f"{k}: {str(v).lower()}" for k, v in shipped.loss.params.items())
    return [
        f"loss.name={shipped.loss.name}",
        f"loss.temperature={shipped.loss.temperature}",
        f"loss.params={{{params}}}",
        f"graphrec.core={shipped.graphrec.core}",
    ]


def test_shipped_sgl_config_computes_sgl_torchs_one_directional_term(tmp_path):
    """SGL-Torch's SSL term (``ssl_mode='both_side'``): per batch row u (repeats counted),
    LSE_v cos(a_u, b_v)/τ - cos(a_u, b_u)/τ with view-1 anchors only, every node of view 2 as a
    candidate. The shipped config reaches it through ``simcse`` (one direction)."""
    task = _task(tmp_path, "sgl", *_shipped_loss("sgl"))
    assert task.cfg.core == "tiled"
    g = torch.Generator().manual_seed(3)
    a = torch.randn(30, 8, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(30, 8, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([4, 9, 4, 4, 17, 0, 29])
    ours = task.contrastive(a, b, ids)
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
    rows = [torch.logsumexp(an[u] @ bn.T / 0.2, 0) - an[u] @ bn[u] / 0.2 for u in ids.tolist()]
    expected = torch.stack(rows).mean()
    torch.testing.assert_close(ours, expected)
    grads = torch.autograd.grad(ours, (a, b))
    expected_grads = torch.autograd.grad(expected, (a, b))
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)
    # the direction matters: swapping the views gives a different value
    assert not torch.isclose(task.contrastive(b, a, ids), ours)


def test_shipped_lightgcl_config_computes_the_official_loss(tmp_path):
    """HKUDS/LightGCL ``model.py``: mean_u log Σ_v exp(g_u·e_v/τ) - mean_u clamp(g_u·e_u/τ, ±5),
    SVD-view anchors only, dot products (the official ``+1e-8`` inside the log aside)."""
    task = _task(tmp_path, "lightgcl", *_shipped_loss("lightgcl"))
    g = torch.Generator().manual_seed(4)
    e = torch.randn(30, 8, generator=g, dtype=torch.float64, requires_grad=True)
    gv = e.detach() + 0.3 * torch.randn(30, 8, generator=g, dtype=torch.float64)
    gv[:10] *= 2.0
    gv.requires_grad_(True)
    ids = torch.tensor([1, 1, 3, 12, 25, 25, 25])
    tau, c = 0.2, 5.0
    rows = [
        torch.logsumexp(gv[u] @ e.T / tau, 0) - torch.clamp(gv[u] @ e[u] / tau, -c, c)
        for u in ids.tolist()
    ]
    expected = torch.stack(rows).mean()
    ours = task.lightgcl_contrastive(gv, e, ids)
    torch.testing.assert_close(ours, expected)
    grads = torch.autograd.grad(ours, (gv, e))
    expected_grads = torch.autograd.grad(expected, (gv, e))
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


# -- sampler and views -----------------------------------------------------------------------
def test_negative_sampler_never_returns_a_training_item(tmp_path):
    task = _task(tmp_path, "lightgcn")
    users = task.edge_users.repeat(20)
    torch.manual_seed(0)
    neg = task.sampler.sample(users)
    train = {(u, int(i)) for u, items in enumerate(task.graph.train) for i in items}
    assert not any((int(u), int(i)) in train for u, i in zip(users, neg, strict=True))
    assert len(set(neg.tolist())) > 50  # spread over the 54 items a user may draw
    torch.manual_seed(0)
    assert torch.equal(task.sampler.sample(users), neg)  # from the (engine-seeded) global RNG


@pytest.mark.parametrize("loss", ["supcon", "siglip"])
def test_losses_with_extra_inputs_or_parameters_are_refused(tmp_path, loss):
    with pytest.raises(ValueError, match="two views of the node embeddings only"):
        _task(tmp_path, "sgl", f"loss.name={loss}", "loss.params={}")


def test_a_user_with_every_item_is_refused(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.txt").write_text("0 0 1 2\n1 0\n")
    (folder / "test.txt").write_text("0\n1 1\n")
    config = _config(folder, "lightgcn")
    with pytest.raises(ValueError, match="no negative item"):
        graphrec.GraphRecTask(config, graphrec.load_graph(config.graphrec), tmp_path / "run")


def test_sgl_views_drop_edges_per_epoch_and_renormalise(tmp_path):
    task = _task(tmp_path, "sgl", "graphrec.edge_dropout=0.25")
    order = task.epoch_order(torch.Generator().manual_seed(1), 64)
    assert sorted(order.tolist()) == list(range(288))
    first, second = task.views
    keep = int(288 * 0.75)
    assert first.layout == second.layout == torch.sparse_csr  # for the symmetric propagation
    first, second = (v.to_sparse().coalesce() for v in (first, second))
    for view in (first, second):
        assert view._nnz() == 2 * keep  # both directions of each kept edge
        dense = view.to_dense()
        torch.testing.assert_close(dense, dense.T)
        degree = (dense > 0).sum(1).double()
        rows, cols = view.indices()
        expected = 1 / torch.sqrt(degree[rows] * degree[cols])
        torch.testing.assert_close(view.values().double(), expected, rtol=1e-6, atol=0)
    assert not torch.equal(first.indices(), second.indices())
    task.epoch_order(torch.Generator().manual_seed(1), 64)
    again = task.views[0].to_sparse().coalesce()
    assert torch.equal(again.indices(), first.indices())  # same epoch seed, same views


def test_uniform_user_sampler_weighs_every_user_the_same(tmp_path):
    """``graphrec.sampler=users``: E edge indices per epoch, users uniform whatever their degree
    (a user with 12 items and users with 1 or 2 items), items uniform within a user, the same
    draws for the same epoch seed; ``edges`` is a permutation (degree-weighted users)."""
    folder = tmp_path / "skewed"
    folder.mkdir()
    train = ["0 " + " ".join(map(str, range(12))), "1 12", "2 13 14", "3 15", "4"]
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("0 16\n1 17\n2 18\n3 19\n")
    config = _config(folder, "lightgcn", "graphrec.sampler=users")
    task = graphrec.GraphRecTask(config, graphrec.load_graph(config.graphrec), tmp_path / "r")
    edges = task.num_train()
    assert edges == 16
    draws = torch.cat([task.epoch_order(torch.Generator().manual_seed(e), 4) for e in range(3000)])
    assert draws.shape == (3000 * edges,) and draws.dtype == torch.int64
    assert int(draws.min()) >= 0 and int(draws.max()) < edges
    users = task.edge_users[draws]
    share = torch.bincount(users, minlength=5).double() / len(draws)
    torch.testing.assert_close(
        share[:4], torch.full((4,), 0.25, dtype=torch.float64), atol=0.01, rtol=0
    )
    assert share[4] == 0  # no training item: never drawn
    items_of_0 = torch.bincount(task.edge_items[draws[users == 0]], minlength=12)[:12].double()
    assert (items_of_0 / items_of_0.mean() - 1).abs().max() < 0.15  # ~1,000 draws each, sd 3 %
    again = task.epoch_order(torch.Generator().manual_seed(3), 4)
    assert torch.equal(again, task.epoch_order(torch.Generator().manual_seed(3), 4))
    assert not torch.equal(again, task.epoch_order(torch.Generator().manual_seed(4), 4))
    edges_config = _config(folder, "lightgcn")
    assert edges_config.graphrec.sampler == "edges"
    permuted = graphrec.GraphRecTask(
        edges_config, graphrec.load_graph(edges_config.graphrec), tmp_path / "e"
    ).epoch_order(torch.Generator().manual_seed(0), 4)
    assert sorted(permuted.tolist()) == list(range(edges))  # user 0: 12 of 16 pairs


# -- configs -----------------------------------------------------------------------------------
GRAPHREC_CONFIGS = sorted([*CONFIGS.glob("gowalla_*.yaml"), *CONFIGS.glob("ml100k_*.yaml")])


@pytest.mark.parametrize("path", GRAPHREC_CONFIGS, ids=lambda p: p.stem)
def test_every_graph_config_loads(path):
    config = load_config(path)
    assert config.recipe == "graphrec"
    assert path.stem == f"{config.graphrec.dataset}_{config.graphrec.method}"
    if config.graphrec.method == "simgcl":  # SELFRec: in-batch, both directions (exchangeable)
        assert config.loss.name == "info_nce"
        assert config.loss.params["same_view_negatives"] is False
    elif config.graphrec.method != "lightgcn":  # the official one-directional all-node term
        assert config.loss.name == "simcse" and config.graphrec.cl_negatives == "all"
    if config.graphrec.method != "lightgcn":
        loss_lib.get(config.loss.name, temperature=config.loss.temperature, **config.loss.params)


def test_the_four_configs_exist():
    for dataset in ("gowalla", "ml100k"):
        expected = {f"{dataset}_{m}" for m in METHODS}
        assert {p.stem for p in CONFIGS.glob(f"{dataset}_*.yaml")} == expected


def test_ml100k_configs_keep_the_gowalla_method_settings():
    """The MovieLens configs change only the dataset and the budget: no per-dataset tuning."""
    for method in METHODS:
        gowalla = load_config(CONFIGS / f"gowalla_{method}.yaml")
        movielens = load_config(CONFIGS / f"ml100k_{method}.yaml")
        assert movielens.graphrec.dataset == "ml100k"
        assert (movielens.graphrec.test_fraction, movielens.graphrec.split_seed) == (0.2, 0)
        assert movielens.train.epochs == 300 and movielens.graphrec.patience is None
        same = dataclasses.replace(
            movielens.graphrec,
            dataset="gowalla",
            test_fraction=None,
            split_seed=None,
            patience=gowalla.graphrec.patience,
            stop_metric=gowalla.graphrec.stop_metric,
        )
        assert same == gowalla.graphrec
        assert movielens.loss == gowalla.loss and movielens.optim == gowalla.optim
        budget = {"epochs": 300, "eval_every": 10, "checkpoint_every": 10}
        assert dataclasses.replace(gowalla.train, **budget) == movielens.train


def test_ml100k_dataset_reads_u_data_from_graphrec_path(tmp_path):
    rows = [f"{u}\t{i}\t4\t{100 * u + i}" for u in range(1, 6) for i in range(1, 11)]
    (tmp_path / "u.data").write_text("\n".join(rows) + "\n")
    config = load_config(
        None, ["recipe=graphrec", "graphrec.dataset=ml100k", f"graphrec.path={tmp_path}"]
    )
    graph = graphrec.load_graph(config.graphrec)
    assert (graph.num_users, graph.num_items, graph.num_train, graph.num_test) == (5, 10, 40, 10)
    again = graphrec.load_graph(config.graphrec)
    assert all(np.array_equal(a, b) for a, b in zip(graph.test, again.test, strict=True))
    other = load_config(
        None,
        [
            "recipe=graphrec",
            "graphrec.dataset=ml100k",
            f"graphrec.path={tmp_path}",
            "graphrec.split_seed=1",
        ],
    )
    moved = graphrec.load_graph(other.graphrec)
    assert any(not np.array_equal(a, b) for a, b in zip(graph.test, moved.test, strict=True))


@pytest.mark.parametrize(
    "override, match",
    [
        ("graphrec.method=ngcf", "graphrec.method"),
        ("graphrec.dataset=yelp", "graphrec.dataset"),
        ("graphrec.test_fraction=0", "test_fraction"),
        ("graphrec.split_seed=3", "split ml100k only"),
        ("graphrec.split_seed=0", "split ml100k only"),  # even the ml100k default value
        ("graphrec.test_fraction=0.2", "split ml100k only"),
        ("graphrec.path=/tmp", "not read for graphrec.dataset=gowalla"),
        ("graphrec.test_fraction=1.0", "test_fraction"),
        ("graphrec.valid_fraction=0", "valid_fraction"),
        ("graphrec.valid_fraction=1.0", "valid_fraction"),
        ("graphrec.edge_dropout=1.0", "edge_dropout"),
        ("graphrec.edge_dropout=-0.1", "edge_dropout"),
        ("graphrec.cl_negatives=some", "cl_negatives"),
        ("graphrec.sampler=items", "sampler"),
        ("graphrec.stop_metric=HR@20", "stop_metric"),
        ("graphrec.stop_metric=Recall@5", "stop_metric"),
        ("graphrec.patience=0", "patience"),
        ("graphrec.dim=0", "dim"),
        ("graphrec.svd_rank=0", "svd_rank"),
        ("graphrec.cl_weight=-1", "cl_weight"),
        ("graphrec.noise_eps=-0.1", "noise_eps"),
        ("graphrec.init_std=0", "init_std"),
        ("graphrec.positive_clamp=0", "positive_clamp"),
        ("graphrec.core=triton", "core"),
        ("graphrec.init=kaiming", "init"),
        ("graphrec.layers=two", "layers"),
        ("graphrec.unknown=1", "unknown config key"),
    ],
)
def test_bad_config_values_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, ["recipe=graphrec", override])


def test_zero_layers_only_for_lightgcn_and_a_file_dataset_needs_a_path():
    assert load_config(None, ["graphrec.layers=0"]).graphrec.layers == 0  # MF baseline
    with pytest.raises(ConfigError, match="layers must be >= 1 for method sgl"):
        load_config(None, ["graphrec.method=sgl", "graphrec.layers=0"])
    with pytest.raises(ConfigError, match=r"needs graphrec\.path"):
        load_config(None, ["graphrec.dataset=file"])


def test_eval_command_re_scores_the_best_weights(tmp_path, capsys):
    data = _write_dataset(tmp_path / "data")
    out = tmp_path / "run"
    summary = graphrec.run_graphrec_training(
        _config(data, "lightgcn", "train.epochs=3"), out, echo=False
    )
    assert cli.main(["eval", str(out)]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["weights"] == "best.safetensors"
    assert best["test_Recall@20"] == pytest.approx(summary["best_test_Recall@20"])
    assert cli.main(["eval", str(out), "--weights", "latest"]) == 0
    latest = json.loads(capsys.readouterr().out)
    assert latest["weights"] == "epoch-00003"
    assert latest["test_Recall@20"] == pytest.approx(summary["test_Recall@20"])
