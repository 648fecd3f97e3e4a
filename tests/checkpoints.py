"""Shared assertions of the resume tests."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def assert_same_weights(run_a: Path, run_b: Path, checkpoint: str) -> dict[str, torch.Tensor]:
    """The ``checkpoints/<checkpoint>`` weights of two run folders are equal, bit for bit
    (the same tensors, names and dtypes); returns the first run's tensors."""
    a = load_file(str(Path(run_a) / "checkpoints" / checkpoint / "model.safetensors"))
    b = load_file(str(Path(run_b) / "checkpoints" / checkpoint / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    return a


def kill_inside_epoch(train, config, run: Path, die_inside_epoch, epoch: int = 2, steps: int = 2):
    """Train ``config`` into ``run`` with a checkpoint after every step and kill it ``steps``
    steps into ``epoch`` (``die_inside_epoch``: the fixture of ``tests/conftest.py``); returns
    that config, to resume with. ``train(config, run, echo=False)`` is the recipe's entry."""
    import dataclasses

    import pytest

    often = dataclasses.replace(
        config, train=dataclasses.replace(config.train, checkpoint_minutes=1e-9)
    )
    arm, disarm = die_inside_epoch
    arm(epoch=epoch, epoch_steps=steps)
    with pytest.raises(KeyboardInterrupt):
        train(often, run, echo=False)
    disarm()
    return often
