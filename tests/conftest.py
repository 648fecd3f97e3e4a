"""Test-session setup: without a GPU, Triton kernels run in Triton's CPU interpreter."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny models: more threads only add contention (on a busy
    2-core machine, tens of times slower). Restores the previous count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def die_inside_epoch(monkeypatch):
    """``arm(epoch, epoch_steps)``: from then on the engine dies (KeyboardInterrupt) right after
    it writes the mid-epoch checkpoint ``epoch_steps`` steps into epoch ``epoch`` (1-based);
    ``disarm()`` restores it. Arm it with ``train.checkpoint_minutes`` tiny, so that every step
    writes one."""
    from contrastkit.train import engine as engine_module

    original = engine_module.Engine._save

    def arm(epoch: int, epoch_steps: int) -> None:
        def save_then_die(self, done, step, optimizer, elapsed, partial=None):
            original(self, done, step, optimizer, elapsed, partial)
            if partial is not None and done + 1 == epoch and partial["epoch_steps"] == epoch_steps:
                raise KeyboardInterrupt

        monkeypatch.setattr(engine_module.Engine, "_save", save_then_die)

    def disarm() -> None:
        monkeypatch.setattr(engine_module.Engine, "_save", original)

    return arm, disarm
