"""The sequential-recommendation recipe: method pieces against explicit formulas, a few-step
training run per method, early stopping and resume (tiny files written by the tests)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrastkit import losses as loss_lib
from contrastkit.recipes import seqrec
from contrastkit.train.config import ConfigError, load_config
from tests.checkpoints import assert_same_weights, kill_inside_epoch

METHODS = ("sasrec", "cl4srec", "duorec", "mclrec", "sra_cl")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


def _write_dataset(tmp_path, users=40, items=25, seed=0):
    rng = np.random.default_rng(seed)
    lines, attributes = [], {}
    for u in range(1, users + 1):
        length = int(rng.integers(4, 12))
        start = int(rng.integers(1, items))
        seq = [(start + 2 * t) % items + 1 for t in range(length)]  # a learnable pattern
        lines.append(" ".join(map(str, [u, *seq])))
    for i in range(1, items + 1):
        attributes[str(i)] = [i % 4, 10 + i % 3]
    path = tmp_path / "seqs.txt"
    path.write_text("\n".join(lines) + "\n")
    attr = tmp_path / "attrs.json"
    attr.write_text(json.dumps(attributes))
    return path, attr


def _config(path, attr, method, *extra):
    return load_config(
        None,
        [
            "recipe=seqrec",
            "seqrec.dataset=file",
            f"seqrec.path={path}",
            f"seqrec.attributes={attr}",
            f"seqrec.method={method}",
            "seqrec.max_len=10",
            "seqrec.hidden=16",
            "seqrec.inner=32",
            "seqrec.neighbours=3",
            "seqrec.cl_weight=0.1",
            "seqrec.eval_batch=16",
            "loss.name=info_nce",
            "loss.temperature=1.0",
            "loss.params={normalize: false}",
            "optim.lr=0.005",
            "optim.weight_decay=0.0",
            "optim.warmup_epochs=0.0",
            "optim.schedule=constant",
            "train.batch_size=32",
            "train.epochs=3",
            "train.eval_every=1",
            "train.progress=false",
            *extra,
        ],
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_reports_full_ranking_metrics(tmp_path, method):
    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, method)
    summary = seqrec.run_seqrec_training(config, tmp_path / "run", echo=False)
    for split in ("valid", "test"):
        for k in (5, 10, 20):
            value = summary[f"{split}_HR@{k}"]
            assert 0.0 <= summary[f"{split}_NDCG@{k}"] <= value <= 1.0
    assert summary["test_HR@5"] <= summary["test_HR@10"] <= summary["test_HR@20"]
    # no target is in its user's history here (nor on Beauty, 22,363 users checked): excluding
    # the history then removes competitors only, so filtered >= unfiltered, metric by metric
    for name in ("HR@5", "HR@20", "NDCG@5", "NDCG@20", "MRR"):
        assert summary[f"test_{name}"] >= summary[f"test_unfiltered_{name}"]
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert "| file | " + method in (tmp_path / "run" / "results.md").read_text()


def test_unfiltered_metrics_rank_the_history_too(tmp_path):
    """``exclude_history=False`` is the full ranking of every item (padding aside), checked
    against explicit per-user ranks; the default leaves the user's inputs out."""
    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, "sasrec")
    task = seqrec.SeqRecTask(config, seqrec.load_sequences(config.seqrec), tmp_path / "r")
    task.model.eval()
    inputs = seqrec.pad_left(task.split.test_inputs, config.seqrec.max_len)
    with torch.no_grad():
        scores = task.model.encoder.item_scores(task.model(inputs)).double()  # item c+1
    targets = task.split.test_targets
    ranks_all, ranks_filtered = [], []
    for u, target in enumerate(targets.tolist()):
        row = scores[u]
        higher = row > row[target - 1]
        ranks_all.append(int(higher.sum()))
        seen = torch.zeros_like(higher)
        seen[torch.as_tensor(task.split.test_inputs[u]) - 1] = True
        ranks_filtered.append(int((higher & ~seen).sum()))
    for ranks, kwargs, prefix in (
        (ranks_all, {"exclude_history": False}, "test_unfiltered_"),
        (ranks_filtered, {}, "test_"),
    ):
        got = task.ranking_metrics("test", **kwargs)
        hits = [r < 10 for r in ranks]
        assert got[f"{prefix}HR@10"] == pytest.approx(sum(hits) / len(hits))
        ndcg = [1.0 / np.log2(r + 2) if r < 10 else 0.0 for r in ranks]
        assert got[f"{prefix}NDCG@10"] == pytest.approx(sum(ndcg) / len(ndcg), rel=1e-6)
    assert ranks_all != ranks_filtered  # the test data does rank seen items above targets


def test_sasrec_learns_the_pattern(tmp_path):
    """A deterministic next item (+2 mod n) is learnt: far above the random HR@5 of 5/25."""
    path, attr = _write_dataset(tmp_path, users=60)
    config = _config(
        path, attr, "sasrec", "train.epochs=10", "train.eval_every=0", "seqrec.dropout=0.1"
    )
    summary = seqrec.run_seqrec_training(config, tmp_path / "run", echo=False)
    assert summary["test_HR@5"] > 0.6


def test_bce_rec_loss_learns_the_pattern_too(tmp_path):
    """``seqrec.rec_loss=bce`` (SASRec's one-negative objective) trains and learns the same
    deterministic pattern."""
    path, attr = _write_dataset(tmp_path, users=60)
    extra = ("train.epochs=10", "train.eval_every=0", "seqrec.dropout=0.1")
    config = _config(path, attr, "sasrec", *extra, "seqrec.rec_loss=bce")
    summary = seqrec.run_seqrec_training(config, tmp_path / "bce", echo=False)
    assert summary["test_HR@5"] > 0.6


def test_bce_step_is_the_explicit_loss_with_the_steps_negatives(tmp_path):
    """A SASRec BCE step equals -log σ(h·e_t) - log(1 - σ(h·e_n)) in float64 with the negatives
    of the step's own stream (seed from torch's step seed, then ``[seed, 1]``); the same torch
    seed gives the same negatives and loss."""
    path, attr = _write_dataset(tmp_path)
    config = _config(
        path, attr, "sasrec", "seqrec.rec_loss=bce", "seqrec.dropout=0.0", "seqrec.attn_dropout=0.0"
    )
    task = seqrec.SeqRecTask(config, seqrec.load_sequences(config.seqrec), tmp_path / "r")
    rows = torch.arange(3, 40, 3)
    torch.manual_seed(5)
    loss, _ = task.training_step(task.model, rows)
    torch.manual_seed(5)
    seed = int(torch.randint(0, 2**62, (1,)))
    expected_neg = task.negative_items.sample(
        task.pair_user[rows], np.random.default_rng([seed, 1])
    )
    assert torch.equal(task.negatives, expected_neg)
    with torch.no_grad():
        h = task.model(task.inputs[rows]).double()
        emb = task.model.encoder.item_emb.weight.double()
    total = 0.0
    for b, row in enumerate(rows.tolist()):
        pos = float(h[b] @ emb[task.targets[row]])
        neg = float(h[b] @ emb[expected_neg[b]])
        total += math.log1p(math.exp(-pos)) + math.log1p(math.exp(neg))
    assert loss.item() == pytest.approx(total / len(rows), rel=1e-5)
    torch.manual_seed(5)
    again, _ = task.training_step(task.model, rows)
    assert again.item() == loss.item()


@pytest.mark.parametrize("method", METHODS)
def test_negatives_are_drawn_once_per_bce_step_and_never_for_ce(tmp_path, monkeypatch, method):
    """The default ``ce`` draws no negative (its random streams are unchanged); ``bce`` draws
    once per step for every method (MCLRec's steps 1 and 3 share them) and the loss is finite."""
    path, attr = _write_dataset(tmp_path)
    calls = []
    original = seqrec.NegativeItems.sample
    monkeypatch.setattr(
        seqrec.NegativeItems, "sample", lambda self, *a: calls.append(1) or original(self, *a)
    )
    for rec_loss, expected in (("ce", 0), ("bce", 1)):
        calls.clear()
        config = _config(path, attr, method, f"seqrec.rec_loss={rec_loss}")
        task = seqrec.SeqRecTask(config, seqrec.load_sequences(config.seqrec), tmp_path / rec_loss)
        if method == "mclrec":
            task.backward = lambda loss: loss.backward()
            task.bind_optimizer(torch.optim.Adam(task.model.parameters(), lr=1e-3))
        assert (task.negative_items is None) == (rec_loss == "ce")
        torch.manual_seed(0)
        loss, _ = task.training_step(task.model, torch.arange(16))
        assert len(calls) == expected and torch.isfinite(loss)


def test_negative_items_avoid_the_users_training_sequence():
    rng = np.random.default_rng(0)
    sequences = [np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8, 9]), np.array([9])]
    sampler = seqrec.NegativeItems(sequences, 10)
    users = torch.tensor([0, 1, 2])
    draws = torch.stack([sampler.sample(users, rng) for _ in range(600)])
    assert draws.dtype == torch.int64 and draws.shape == (600, 3)
    for u, seq in enumerate(sequences):
        allowed = set(range(1, 11)) - set(seq.tolist())
        assert set(draws[:, u].tolist()) == allowed  # every allowed item, nothing else
    counts = np.bincount(draws[:, 0].numpy(), minlength=11)[[5, 6, 7, 8, 9, 10]]
    assert counts.sum() == 600 and counts.min() > 70 and counts.max() < 135  # ~100 each
    # the boundary: one free item left -> always that one
    tight = seqrec.NegativeItems([np.arange(1, 10)], 10)
    assert set(tight.sample(torch.zeros(50, dtype=torch.long), rng).tolist()) == {10}
    with pytest.raises(ValueError, match="no negative item exists"):
        seqrec.NegativeItems([np.arange(1, 11)], 10)


def test_early_stopping_and_resume_of_a_stopped_run(tmp_path):
    path, attr = _write_dataset(tmp_path)
    # lr so small nothing improves after the first evaluation: patience 1 stops at epoch 2
    config = _config(path, attr, "sasrec", "train.epochs=20", "seqrec.patience=1", "optim.lr=1e-9")
    summary = seqrec.run_seqrec_training(config, tmp_path / "run", echo=False)
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(records) < 20 and records[-1]["stopped_early"] is True
    assert summary["epochs"] == records[-1]["epoch"] and "test_HR@20" in summary
    again = seqrec.run_seqrec_training(config, tmp_path / "run", resume=True, echo=False)
    assert again["test_HR@20"] == summary["test_HR@20"]  # finished: nothing retrained
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == len(records)


@pytest.mark.parametrize("method", ["sasrec", "cl4srec", "mclrec", "sra_cl"])
def test_resume_continues_a_killed_run_exactly(tmp_path, method):
    """Kill after epoch 2 (drop the epoch-3 checkpoint and record), resume: the same run."""
    import shutil

    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, method, "train.epochs=3", "seqrec.patience=50")
    full = seqrec.run_seqrec_training(config, tmp_path / "full", echo=False)
    run = tmp_path / "part"
    seqrec.run_seqrec_training(config, run, echo=False)
    shutil.rmtree(run / "checkpoints" / "epoch-00003")
    (run / "checkpoints" / "latest").write_text("epoch-00002\n")
    (run / "summary.json").unlink()
    resumed = seqrec.run_seqrec_training(config, run, resume=True, echo=False)
    for key in ("test_HR@20", "test_NDCG@20", "valid_MRR", "best_epoch"):
        assert resumed[key] == full[key], key
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]


def test_the_papers_nce_is_a_setting_of_the_shared_loss():
    """Section 0 of the spec: z = [z_i; z_j] (no normalisation), S = z z^T / tau, logits =
    [S[k, partner], S[k, others]], CE with label 0, mean over 2B — written out in float64."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g)
    b = b.double()
    z = torch.cat([a, b])
    s = z @ z.T / 1.0
    rows = []
    for k in range(12):
        partner = (k + 6) % 12
        others = [j for j in range(12) if j not in (k, partner)]
        logits = torch.cat([s[k, partner : partner + 1], s[k, others]])
        rows.append(-F.log_softmax(logits, dim=0)[0])
    expected = torch.stack(rows).mean()
    criterion = loss_lib.get("info_nce", temperature=1.0, normalize=False)
    torch.testing.assert_close(criterion(torch.stack([a, b], dim=1)), expected)


def test_margin_regularizer_matches_an_explicit_loop():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, 3, generator=g, dtype=torch.float64)
    z = torch.cat([a, b])
    pos_terms, neg_terms = [], []
    for k in range(8):
        partner = (k + 4) % 8
        p = float(z[k] @ z[partner])
        negatives = [float(z[k] @ z[j]) for j in range(8) if j not in (k, partner)]
        hardest = max(negatives)
        m_pos, m_neg = min(p, hardest), max(p, hardest)
        pos_terms.append(max(0.0, p - m_pos))
        neg_terms.extend(max(0.0, m_neg - n) for n in negatives)
    expected = sum(pos_terms) / len(pos_terms) + sum(neg_terms) / len(neg_terms)
    assert float(seqrec.margin_regularizer(a, b)) == pytest.approx(expected, rel=1e-12)


def test_trim_padding_is_exact():
    model = seqrec.SASRec(20, max_len=8, hidden=8, heads=2, inner=16).eval()
    seq = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5], [0, 0, 0, 0, 7, 0, 9, 1]])
    trimmed = seqrec.trim_padding(seq)
    assert trimmed.shape == (2, 4)
    torch.testing.assert_close(model(trimmed), model(seq))


def test_same_target_partners(tmp_path):
    path, attr = _write_dataset(tmp_path)
    task = seqrec.SeqRecTask(
        _config(path, attr, "duorec"),
        seqrec.load_sequences(_config(path, attr, "duorec").seqrec),
        tmp_path / "r",
    )
    indices = torch.arange(task.num_train())
    partners = task._same_target(indices)
    assert torch.equal(task.targets[partners], task.targets[indices])
    alone = task._counts[task.targets] == 1
    assert torch.equal(partners[alone], indices[alone])
    assert bool((partners[~alone] != indices[~alone]).all())


def test_mclrec_updates_the_augmenters_with_their_own_optimizer(tmp_path):
    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, "mclrec", "seqrec.cl_weight=0.0", "seqrec.meta_weight=0.05")
    task = seqrec.SeqRecTask(config, seqrec.load_sequences(config.seqrec), tmp_path / "r")
    encoder_params = [p for p in task.model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in task.model.augmenters.parameters())
    optimizer = torch.optim.Adam(encoder_params, lr=1e-3)
    task.bind_optimizer(optimizer)
    task.backward = lambda loss: loss.backward()
    before_aug = [p.detach().clone() for p in task.model.augmenters.parameters()]
    before_enc = task.model.encoder.item_emb.weight.detach().clone()
    loss, logs = task.training_step(task.model, torch.arange(32))
    assert loss.requires_grad and np.isfinite(float(loss.detach())) and logs["meta"] > 0
    after = list(task.model.augmenters.parameters())
    assert any(not torch.equal(x, y) for x, y in zip(before_aug, after, strict=True))
    assert not torch.equal(before_enc, task.model.encoder.item_emb.weight)  # step 1
    assert not any(p.requires_grad for p in after) and all(p.grad is None for p in after)


def _reference_mclrec_step(task, model, inputs, targets):
    """MCLRec's three steps as written in the paper, each a full forward/backward: step 2
    back-propagates ``λ L_cl + L_meta`` through the encoder too (its gradients discarded)."""
    cfg, (g1, g2) = task.cfg, task.model.augmenters
    v1, v2 = task._augmented(inputs)

    def losses(rec):
        h1, h2 = model(v1), model(v2)
        h3, h4 = g1(h1), g2(h2)
        cl = task._nce(h1, h2)
        meta = task._nce(h1, h4) + task._nce(h2, h3) + task._nce(h3, h4)
        reg = seqrec.margin_regularizer
        meta = meta + 0.1 * (reg(h1, h4) + reg(h2, h3) + reg(h3, h4))
        if not rec:
            return cfg.cl_weight * cl + meta
        rec_loss = task.model.encoder.rec_loss(model(inputs), targets)
        return rec_loss + cfg.cl_weight * cl + cfg.meta_weight * meta

    task.optimizer.zero_grad()
    losses(True).backward()
    task.optimizer.step()
    for p in task.meta_params:
        p.requires_grad_(True)
    task.meta_optimizer.zero_grad()
    losses(False).backward()
    task.meta_optimizer.step()
    for p in task.meta_params:
        p.requires_grad_(False)
        p.grad = None
    task.optimizer.zero_grad()
    return losses(True)


def test_mclrec_step_equals_the_three_full_steps(tmp_path):
    """Step 2 encodes the views without a graph: the same updates as three full steps."""
    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, "mclrec", "seqrec.cl_weight=0.1", "seqrec.meta_weight=0.05")
    task = seqrec.SeqRecTask(config, seqrec.load_sequences(config.seqrec), tmp_path / "r")
    params = [p for p in task.model.parameters() if p.requires_grad]
    task.bind_optimizer(torch.optim.Adam(params, lr=1e-2))
    task.backward = lambda loss: loss.backward()
    reference = copy.deepcopy(task)
    initial = copy.deepcopy(task.model.augmenters.state_dict())
    task.model.train()
    reference.model.train()
    for step in range(3):
        indices = torch.arange(8 * step, 8 * step + 24)
        torch.manual_seed(step)
        loss, _ = task.training_step(task.model, indices)
        torch.manual_seed(step)
        reference.rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        inputs, targets = reference.inputs[indices], reference.targets[indices]
        expected = _reference_mclrec_step(reference, reference.model, inputs, targets)
        # equal up to float summation order (bit-equal on the first steps)
        torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-6, atol=1e-7)
        for t, lo in ((task, loss), (reference, expected)):  # step 3, the engine's step
            lo.backward()
            t.optimizer.step()
    ours, theirs = task.model.state_dict(), reference.model.state_dict()
    for key in ours:
        if key.endswith("key.bias"):  # true gradient 0 (softmax shift): Adam moves it by noise
            continue
        # float noise that Adam (lr 1e-2) amplifies; a wrong step 2 moves weights by ~lr
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-5, msg=key)
    moved = task.model.augmenters.state_dict()
    assert any(not torch.equal(moved[k], initial[k]) for k in initial)  # step 2 did learn


def test_sra_cl_semantic_spaces(tmp_path):
    path, attr = _write_dataset(tmp_path)
    data = seqrec.load_sequences(_config(path, attr, "sra_cl").seqrec)
    train = seqrec.leave_one_out(data).train
    items, kind = seqrec.item_semantics(data, "auto", train)
    assert kind == "attributes" and items.shape[0] == data.num_items + 1
    assert torch.allclose(items[1:].norm(dim=1), torch.ones(data.num_items))
    same = seqrec.item_semantics(data, "cooccurrence", train)[0]
    assert same.shape[0] == data.num_items + 1 and float(same[0].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="no item titles"):
        seqrec.item_semantics(data, "titles", train)


def test_attribute_vectors_are_tf_idf_with_repeated_attributes_counted():
    # 4 items; attribute 7 on every item (idf 0), 8 on items 1-2, 9 on item 1 twice and item 3
    attributes = {1: [7, 8, 9, 9], 2: [7, 8], 3: [7, 9], 4: [7]}
    x = seqrec._attribute_vectors(attributes, 4).double()
    idf = {7: math.log(5 / 5), 8: math.log(5 / 3), 9: math.log(5 / 3)}
    expected = torch.zeros(5, 3, dtype=torch.float64)
    for item, values in attributes.items():
        for a in values:
            expected[item, a - 7] += idf[a]
    expected = F.normalize(expected, dim=1)
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-7)
    assert x[1, 2] > x[1, 1] > 0  # the repeated attribute weighs more


def test_attribute_twins_are_ordered_by_cooccurrence_and_nothing_leaks(tmp_path):
    """Items with the same attribute set stay each other's nearest items, but no longer tie;
    the space depends on the training part of the split only, and on no global RNG state."""
    path, attr = _write_dataset(tmp_path)
    data = seqrec.load_sequences(_config(path, attr, "sra_cl").seqrec)
    train = seqrec.leave_one_out(data).train
    items, _ = seqrec.item_semantics(data, "attributes", train)
    cos = (items @ items.T).double()
    twins = {
        i: {
            j
            for j in data.item_attributes
            if j != i and set(data.item_attributes[j]) == set(data.item_attributes[i])
        }
        for i in data.item_attributes
    }
    for i, same in twins.items():
        others = [j for j in range(1, data.num_items + 1) if j != i and j not in same]
        assert min(float(cos[i, j]) for j in same) > max(float(cos[i, j]) for j in others)
        if len(same) > 1:
            assert len({round(float(cos[i, j]), 9) for j in same}) > 1  # no exact ties left
    torch.manual_seed(123)  # another global RNG state: the same space
    assert torch.equal(items, seqrec.item_semantics(data, "attributes", train)[0])
    changed = [s.copy() for s in data.sequences]
    for s in changed:  # other valid / test items: the space must not move
        s[-2:] = s[-2:] % data.num_items + 1
    moved = dataclasses.replace(data, sequences=changed)
    moved_train = seqrec.leave_one_out(moved).train
    assert torch.equal(items, seqrec.item_semantics(moved, "attributes", moved_train)[0])


def test_sra_cl_neighbour_users_come_from_the_prefix_alone(tmp_path):
    """Per training prefix: the k users whose training sequence is closest (cosine of mean
    item vectors, float64 brute force here) to the prefix, its own user never among them."""
    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, "sra_cl", "seqrec.max_len=6")  # some sequences are longer
    task = seqrec.SeqRecTask(config, seqrec.load_sequences(config.seqrec), tmp_path / "r")
    assert max(len(s) for s in task.split.train) > 6
    items = task.item_semantics.double()
    max_len = config.seqrec.max_len  # a candidate is the last max_len items of its sequence
    user_vectors = torch.stack(
        [F.normalize(items[torch.from_numpy(s[-max_len:])].sum(0), dim=0) for s in task.split.train]
    )
    indices = torch.arange(0, len(task.inputs), 3)
    inputs, users = task.inputs[indices], task.pair_user[indices]
    _, per_batch = task.neighbour_users(inputs, users)
    table = task.pair_neighbours()  # every pair's, computed once in fixed chunks of pairs
    assert table.shape == (task.num_train(), config.seqrec.neighbours)
    k = config.seqrec.neighbours
    for neighbours in (per_batch, table[indices]):
        assert neighbours.shape == (len(indices), k)
        for row, (prefix, user) in enumerate(zip(inputs, users, strict=True)):
            assert int(user) not in neighbours[row].tolist()
            query = F.normalize(items[prefix[prefix != 0]].sum(0), dim=0)
            similarity = user_vectors @ query
            similarity[user] = float("-inf")
            best = similarity.topk(k).values
            got = similarity[neighbours[row]]
            torch.testing.assert_close(got, best, rtol=0, atol=1e-5)  # equal up to ties


def test_sra_cl_neighbour_table_is_kept_in_the_run_folder(tmp_path, monkeypatch):
    """The table is made on first use and saved with a fingerprint: a second task on the same
    run folder reads it (no recomputation), a task whose pairs or k differ makes its own."""
    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, "sra_cl")
    data = seqrec.load_sequences(config.seqrec)
    first = seqrec.SeqRecTask(config, data, tmp_path / "r").pair_neighbours()
    assert (tmp_path / "r" / seqrec.NEIGHBOUR_CACHE).is_file()

    def recomputed(self, chunk=1024):
        raise AssertionError("recomputed although the saved table fits")

    with monkeypatch.context() as patch:
        patch.setattr(seqrec.SeqRecTask, "all_neighbour_users", recomputed)
        again = seqrec.SeqRecTask(config, data, tmp_path / "r").pair_neighbours()
    assert torch.equal(first, again)

    for changed in (("seqrec.neighbours=2",), ("seqrec.max_len=6",)):
        other = _config(path, attr, "sra_cl", *changed)
        task = seqrec.SeqRecTask(other, seqrec.load_sequences(other.seqrec), tmp_path / "r")
        table = task.pair_neighbours()
        assert torch.equal(table, task.all_neighbour_users()), changed
        assert not torch.equal(table, first), changed

    (tmp_path / "r" / seqrec.NEIGHBOUR_CACHE).write_bytes(b"not a safetensors file")
    damaged = seqrec.SeqRecTask(config, data, tmp_path / "r").pair_neighbours()  # made again
    assert torch.equal(damaged, first)
    with monkeypatch.context() as patch:
        patch.setattr(seqrec.SeqRecTask, "all_neighbour_users", recomputed)
        assert torch.equal(seqrec.SeqRecTask(config, data, tmp_path / "r").pair_neighbours(), first)


def test_bad_seqrec_config_is_refused():
    with pytest.raises(ConfigError, match=r"seqrec\.method"):
        load_config(None, ["recipe=seqrec", "seqrec.method=bert4rec"])
    with pytest.raises(ConfigError, match=r"needs seqrec\.path"):
        load_config(None, ["recipe=seqrec", "seqrec.dataset=file"])
    with pytest.raises(ConfigError, match=r"seqrec\.rec_loss"):
        load_config(None, ["recipe=seqrec", "seqrec.rec_loss=bpr"])
    with pytest.raises(ConfigError, match="divisible"):
        load_config(None, ["recipe=seqrec", "seqrec.hidden=10", "seqrec.heads=3"])
    with pytest.raises(ConfigError, match="recipe"):
        load_config(None, ["recipe=audio"])


def test_length_buckets_give_a_permutation_of_similar_length_batches(tmp_path):
    path, attr = _write_dataset(tmp_path, users=200)
    config = _config(path, attr, "sasrec", "seqrec.length_buckets=true")
    task = seqrec.SeqRecTask(config, seqrec.load_sequences(config.seqrec), tmp_path / "r")
    order = task.epoch_order(torch.Generator().manual_seed(0), 16)
    assert torch.equal(order.sort().values, torch.arange(task.num_train()))
    lengths = (task.inputs[order] != 0).sum(dim=1)
    full = lengths[: lengths.numel() // 16 * 16].reshape(-1, 16)
    spread = (full.max(dim=1).values - full.min(dim=1).values).float().mean()
    random = task.epoch_order.__func__  # the same task without buckets
    task.cfg.length_buckets = False
    plain = (task.inputs[random(task, torch.Generator().manual_seed(0), 16)] != 0).sum(dim=1)
    plain = plain[: plain.numel() // 16 * 16].reshape(-1, 16)
    assert spread < 0.5 * (plain.max(dim=1).values - plain.min(dim=1).values).float().mean()


def test_every_seqrec_config_loads():
    from pathlib import Path

    paths = sorted((Path(__file__).parents[2] / "configs" / "seqrec").glob("*.yaml"))
    assert len(paths) == 21  # 4 datasets x 5 methods + the Beauty SASRec-BCE variant
    for path in paths:
        config = load_config(path)
        name = f"{config.seqrec.dataset}_{config.seqrec.method}"
        variant = "_bce" if config.seqrec.rec_loss == "bce" else ""
        assert config.recipe == "seqrec" and path.stem == name + variant
        assert config.loss.name == "info_nce" and config.loss.params == {"normalize": False}


def test_title_space_puts_similar_titles_together(tmp_path):
    """SRA-CL's semantic item space from titles: all-MiniLM-L6-v2 (packaged offline)."""
    from contrastkit.data.sequences import SequenceData

    titles = {
        1: "Toy Story (1995)",
        2: "Toy Story 2 (1999)",
        3: "Schindler's List (1993)",
        4: "The Pianist (2002)",
    }
    data = SequenceData(
        sequences=[np.array([1, 2, 3, 4])], num_items=4, user_ids=["u"], item_titles=titles
    )
    items, kind = seqrec.item_semantics(data, "titles", data.sequences)
    assert kind == "titles" and items.shape == (5, 384)
    neighbours = seqrec.nearest_neighbours(items, 1)
    assert neighbours[1, 0] == 2 and neighbours[2, 0] == 1


def test_grouped_encoding_of_mixed_lengths_is_exact():
    from contrastkit.train.config import SeqRecConfig

    cfg = SeqRecConfig(max_len=12, hidden=8, heads=2, inner=16)
    model = seqrec.SeqRecModel(30, cfg, None).eval()
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(1, 31, (300, 12), generator=g)
    lengths = torch.randint(1, 13, (300,), generator=g)
    seq[torch.arange(12)[None, :] < (12 - lengths)[:, None]] = 0  # left padding, mixed lengths
    torch.testing.assert_close(model(seq), model.encoder(seq), rtol=1e-5, atol=1e-6)


def test_a_run_killed_on_a_plateau_stops_where_an_uninterrupted_one_does(tmp_path):
    """The early-stopping counter lives in the checkpoint: resuming mid-plateau keeps it."""
    import shutil

    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, "sasrec", "train.epochs=30", "seqrec.patience=3", "optim.lr=1e-9")
    full = seqrec.run_seqrec_training(config, tmp_path / "full", echo=False)
    run = tmp_path / "part"
    seqrec.run_seqrec_training(config, run, echo=False)
    last = full["epochs"]
    assert last < 30
    shutil.rmtree(run / "checkpoints" / f"epoch-{last:05d}")
    (run / "checkpoints" / "latest").write_text(f"epoch-{last - 1:05d}\n")
    (run / "summary.json").unlink()
    resumed = seqrec.run_seqrec_training(config, run, resume=True, echo=False)
    assert resumed["epochs"] == last and resumed["test_NDCG@20"] == full["test_NDCG@20"]


def test_losses_with_parameters_or_extra_inputs_are_refused(tmp_path):
    path, attr = _write_dataset(tmp_path)
    for loss in ("siglip", "supcon"):
        config = _config(path, attr, "sasrec", f"loss.name={loss}", "loss.params={}")
        with pytest.raises(ValueError, match="two views of the sequence states only"):
            seqrec.SeqRecTask(config, seqrec.load_sequences(config.seqrec), tmp_path / "r")


def test_the_cli_trains_a_seqrec_config_and_resumes(tmp_path, capsys):
    from pathlib import Path

    from contrastkit import cli

    path, _attr = _write_dataset(tmp_path)
    config = Path(__file__).parents[2] / "configs" / "seqrec" / "beauty_cl4srec.yaml"
    out = tmp_path / "run"
    overrides = [
        "seqrec.dataset=file",
        f"seqrec.path={path}",
        "seqrec.hidden=16",
        "seqrec.inner=32",
        "seqrec.max_len=10",
        "train.epochs=2",
        "train.batch_size=32",
        "train.progress=false",
    ]
    assert cli.main(["train", "--config", str(config), "--output", str(out), *overrides]) == 0
    assert "| file | cl4srec |" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and 0.0 <= summary["test_HR@20"] <= 1.0
    assert cli.main(["train", "--resume", "--output", str(out)]) == 0  # finished: no retraining
    assert json.loads((out / "summary.json").read_text())["test_HR@20"] == summary["test_HR@20"]
    assert "--resume: continuing from epoch-00002 (after epoch 2, step " in capsys.readouterr().err


def test_eval_command_re_scores_a_run_under_both_protocols(tmp_path, capsys):
    from contrastkit.cli import main

    path, attr = _write_dataset(tmp_path)
    out = tmp_path / "run"
    summary = seqrec.run_seqrec_training(_config(path, attr, "sasrec"), out, echo=False)
    assert main(["eval", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["weights"] == "best.safetensors"
    for key in ("valid_MRR", "test_HR@20", "test_NDCG@10", "test_unfiltered_HR@20"):
        assert metrics[key] == pytest.approx(summary[key]), key
    assert main(["eval", str(out), "--weights", "latest"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == "epoch-00003"
    (out / "best.safetensors").unlink()
    assert main(["eval", str(out)]) == 2
    assert (
        "best.safetensors does not exist (use --weights latest for the latest checkpoint)"
        in capsys.readouterr().err
    )
    assert main(["eval", str(tmp_path)]) == 2
    assert "is not a run folder (no config.yaml)" in capsys.readouterr().err


def test_results_table_shows_both_protocols_the_objective_and_whole_epochs():
    row = {"dataset": "beauty", "method": "sasrec", "rec_loss": "bce", "best_epoch": 3}
    row |= {f"test_{m}@{k}": 0.1 for k in (5, 10, 20) for m in ("HR", "NDCG")}
    row |= {"test_unfiltered_HR@20": 0.25, "test_unfiltered_NDCG@20": 0.125}
    row["epochs_trained"] = 12.0
    header, _, line = seqrec.metrics_table([row]).splitlines()
    assert "HR@20 filtered" in header and "NDCG@20 all items" in header
    assert line.startswith("| beauty | sasrec (bce) | 0.1000 |")
    assert line.endswith("| 0.2500 | 0.1250 | 3 | 12 |")
    ce = seqrec.metrics_table([{**row, "rec_loss": "ce", "epochs_trained": 2.5}])
    assert "| sasrec | " in ce and ce.endswith("| 3 | 2.5 |")


def test_without_a_progress_bar_each_evaluation_prints_one_line(tmp_path, capsys):
    """With ``echo`` (the CLI, the benchmarks) and no progress bar; silent with echo=False."""
    path, attr = _write_dataset(tmp_path)
    config = _config(path, attr, "sasrec", "train.epochs=2")
    seqrec.run_seqrec_training(config, tmp_path / "quiet", echo=False)
    assert capsys.readouterr().out == ""
    seqrec.run_seqrec_training(config, tmp_path / "run")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  step ")
    assert "valid_MRR " in lines[1] and "valid_NDCG@20 " in lines[1] and "best_epoch " in lines[1]


@pytest.mark.parametrize("method", ["mclrec", "sasrec_bce", "sra_cl"])
def test_a_run_killed_inside_an_epoch_resumes_at_that_step_exactly(
    tmp_path, method, die_inside_epoch, capsys
):
    """With a checkpoint after every step (``train.checkpoint_minutes`` tiny), kill the run two
    steps into epoch 2 and resume: the same weights, metrics and epoch losses as an
    uninterrupted run (MCLRec: the augmenters' optimizer; BCE: the step's negatives)."""
    path, attr = _write_dataset(tmp_path)
    name, extra = (method, []) if method != "sasrec_bce" else ("sasrec", ["seqrec.rec_loss=bce"])
    config = _config(path, attr, name, "train.epochs=3", "seqrec.patience=50", *extra)
    full = seqrec.run_seqrec_training(config, tmp_path / "full", echo=False)
    run = tmp_path / "part"
    often = kill_inside_epoch(seqrec.run_seqrec_training, config, run, die_inside_epoch)
    epoch_one = json.loads((run / "metrics.jsonl").read_text())  # the one record written
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == [
        "epoch-00001",
        f"epoch-00001.step-{epoch_one['step'] + 2:09d}",  # only the newest mid-epoch one
    ]
    capsys.readouterr()
    resumed = seqrec.run_seqrec_training(often, run, resume=True, echo=True)
    assert "(2 steps into epoch 2, step " in capsys.readouterr().err
    for key in ("test_HR@20", "test_NDCG@20", "valid_MRR", "best_epoch"):
        assert resumed[key] == full[key], key
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected = [
        json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [(r["epoch"], r["step"], r["loss"]) for r in records] == [
        (r["epoch"], r["step"], r["loss"]) for r in expected
    ]
    assert_same_weights(tmp_path / "full", run, "epoch-00003")
    # the epoch-end checkpoints removed the mid-epoch ones
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == [
        "epoch-00002",
        "epoch-00003",
    ]


@pytest.mark.parametrize(
    ("rows", "training", "groups"),
    [
        (127, True, 1),
        (300, True, 8),
        (16 * seqrec.GROUP_ROWS + 40, True, 16),
        (16 * seqrec.GROUP_ROWS + 40, False, 8),  # evaluation keeps 8 groups
    ],
)
def test_length_groups_encode_exactly_like_one_block(rows, training, groups):
    """``SeqRecModel.forward`` (rows sorted into length groups, each cut to its longest row)
    gives the plain encoder's outputs and gradients, rows in order, in as many groups as
    documented (dropout 0, so training mode is deterministic). In float64, so that the sums
    over 2,600 rows in another order agree to rounding (float32 differed by 1e-5 on one
    gradient element on some CPUs)."""
    torch.manual_seed(0)
    config = load_config(
        None,
        [
            "recipe=seqrec",
            "seqrec.method=sasrec",
            "seqrec.max_len=12",
            "seqrec.hidden=8",
            "seqrec.inner=16",
            "seqrec.layers=1",
            "seqrec.dropout=0.0",
            "seqrec.attn_dropout=0.0",
        ],
    )
    model = seqrec.SeqRecModel(30, config.seqrec, None).double().train(training)
    lengths = torch.randint(0, 13, (rows,))
    lengths[0] = 0  # an empty row
    items = torch.randint(1, 31, (rows, 12))
    seq = torch.where(torch.arange(12)[None] >= 12 - lengths[:, None], items, 0)
    weights = torch.randn(rows, 8, dtype=torch.float64)

    calls = []
    hook = model.encoder.register_forward_hook(lambda module, args, out: calls.append(len(out)))
    grouped = model(seq)
    hook.remove()
    assert len(calls) == groups and sum(calls) == rows
    assert grouped.dtype == torch.float64
    (grouped * weights).sum().backward()
    grads = [p.grad.clone() for p in model.encoder.parameters()]
    model.zero_grad()
    plain = model.encoder(seq)
    (plain * weights).sum().backward()
    torch.testing.assert_close(grouped, plain, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, [p.grad for p in model.encoder.parameters()], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_sra_cl_step_neighbours_are_the_step_pairs_rows(tmp_path):
    """step_neighbours looks up the step's pairs (not their users) in the table: the same
    neighbours as neighbour_users of the step's inputs."""
    path, attr = _write_dataset(tmp_path, users=80)
    config = _config(path, attr, "sra_cl")
    task = seqrec.SeqRecTask(config, seqrec.load_sequences(config.seqrec), tmp_path / "r")
    indices = torch.randperm(task.num_train(), generator=torch.Generator().manual_seed(0))[:40]
    inputs, users = task.inputs[indices], task.pair_user[indices]
    got = task.step_neighbours(inputs, users, indices)
    want = task.neighbour_users(inputs, users)[1]
    sims = task.sequence_semantics(inputs) @ task.user_semantics.T
    torch.testing.assert_close(sims.gather(1, got), sims.gather(1, want), rtol=0, atol=1e-6)
