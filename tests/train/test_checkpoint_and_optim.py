import math

import pytest
import torch

from contrastkit.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from contrastkit.train.optim import LARS, build_optimizer, warmup_cosine


def test_checkpoint_round_trip_and_pruning(tmp_path):
    weights = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2])}
    for epoch in (1, 2, 3):
        state = {"epoch": epoch, "rng": torch.get_rng_state(), "nested": {"x": [1, 2.5]}}
        save_checkpoint(tmp_path, f"epoch-{epoch:05d}", weights=weights, state=state, keep=2)
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders == ["epoch-00002", "epoch-00003"]
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "epoch-00003"
    loaded_weights, loaded_state = load_checkpoint(latest)
    torch.testing.assert_close(loaded_weights["a"], weights["a"])
    assert loaded_state["epoch"] == 3 and loaded_state["nested"] == {"x": [1, 2.5]}


def test_mid_epoch_checkpoints_sort_between_epochs_and_only_the_newest_stays(tmp_path):
    def save(name):
        save_checkpoint(tmp_path, name, weights={"w": torch.ones(1)}, state={}, keep=2)
        return sorted(p.name for p in tmp_path.iterdir() if p.is_dir())

    save("epoch-00001")
    save("epoch-00002")
    assert save("epoch-00002.step-000000250") == [
        "epoch-00001",
        "epoch-00002",
        "epoch-00002.step-000000250",
    ]
    # a newer mid-epoch checkpoint replaces the older one; the epoch-end ones stay (keep=2)
    assert save("epoch-00002.step-000001000") == [
        "epoch-00001",
        "epoch-00002",
        "epoch-00002.step-000001000",
    ]
    assert latest_checkpoint(tmp_path).name == "epoch-00002.step-000001000"
    (tmp_path / "latest").unlink()  # without the pointer: the newest by name, still this one
    assert latest_checkpoint(tmp_path).name == "epoch-00002.step-000001000"
    # the epoch's end removes it (and the oldest epoch-end checkpoint beyond keep)
    assert save("epoch-00003") == ["epoch-00002", "epoch-00003"]


def test_stale_temporaries_are_cleaned_and_latest_is_never_partial(tmp_path):
    (tmp_path / ".epoch-00009.abc").mkdir()  # left by a killed write
    save_checkpoint(tmp_path, "epoch-00001", weights={"w": torch.ones(1)}, state={}, keep=2)
    assert not any(p.name.startswith(".epoch") for p in tmp_path.iterdir())
    (tmp_path / "latest").write_text("epoch-00007\n")
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        latest_checkpoint(tmp_path)


def test_state_file_is_loaded_with_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    save_checkpoint(tmp_path, "epoch-00001", weights={"w": torch.ones(1)}, state={}, keep=1)
    torch.save({"x": Evil()}, tmp_path / "epoch-00001" / "state.pt")
    with pytest.raises(Exception, match=r"(?i)weights_only|unsupported global"):
        load_checkpoint(tmp_path / "epoch-00001")


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, total_steps=100, warmup_steps=10) == pytest.approx(0.1)
    assert warmup_cosine(9, total_steps=100, warmup_steps=10) == pytest.approx(1.0)
    assert warmup_cosine(10, total_steps=100, warmup_steps=10) == pytest.approx(1.0)
    assert warmup_cosine(55, total_steps=100, warmup_steps=10) == pytest.approx(0.5)
    assert warmup_cosine(100, total_steps=100, warmup_steps=10) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(3, total_steps=10, warmup_steps=0) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 0.3))
    )


def test_lars_trust_ratio_step_by_hand():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.1, momentum=0.0, weight_decay=0.0, eta=0.02)
    w.grad = torch.tensor([[0.0, 2.0]])  # ||g|| = 2 -> trust = 0.02 * 5 / 2 = 0.05
    b.grad = torch.tensor([0.5])  # 1-D: no adaptation
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0 - 0.1 * 0.05 * 2.0]]))
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 0.5]))


def test_build_optimizer_names():
    p = [torch.nn.Parameter(torch.ones(2, 2))]
    assert isinstance(
        build_optimizer("adam", p, lr=1e-3, weight_decay=0, momentum=0.9), torch.optim.Adam
    )
    assert isinstance(
        build_optimizer("sgd", p, lr=1e-3, weight_decay=0, momentum=0.9), torch.optim.SGD
    )
    with pytest.raises(ValueError, match=r"optim\.name must be one of adam, sgd, lars"):
        build_optimizer("rmsprop", p, lr=1e-3, weight_decay=0, momentum=0.9)
