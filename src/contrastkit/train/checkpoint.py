"""Checkpoints: safetensors weights + a training-state file, written atomically.

A checkpoint is a folder ``checkpoints/epoch-0005/`` holding ``model.safetensors`` (every
tensor of the model's ``state_dict``) and ``state.pt`` (optimizer state, epoch and step
counters, elapsed time, the run config; plain containers and tensors only, read back with
``torch.load(weights_only=True)``; no RNG state is needed because the engine re-seeds every
step from the step number). The folder is written under a temporary name and renamed
into place, and ``checkpoints/latest`` is replaced atomically afterwards, so a run killed at
any moment leaves either the previous or the new checkpoint, never a half-written one.

A checkpoint written inside an epoch (``train.checkpoint_minutes``) is named after the last
finished epoch and the step, ``epoch-00005.step-000001234``, which sorts between
``epoch-00005`` and ``epoch-00006``; only the newest one is kept, and an epoch-end
checkpoint removes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

WEIGHTS = "model.safetensors"
STATE = "state.pt"
LATEST = "latest"
MID_EPOCH = ".step-"  # in the name of a checkpoint written inside an epoch


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(path: Path, weights: dict[str, Tensor]) -> None:
    """Write a safetensors file atomically (temporary file, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu().clone() for k, v in weights.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: Path) -> dict[str, Tensor]:
    """Tensors of a safetensors file (no pickle)."""
    return load_file(str(path))


def save_checkpoint(
    checkpoint_dir: Path,
    name: str,
    *,
    weights: dict[str, Tensor],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``name`` atomically, point ``latest`` at it, keep the newest ``keep``."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=checkpoint_dir, prefix=f".{name}."))
    try:
        tensors = {k: v.detach().contiguous().cpu().clone() for k, v in weights.items()}
        save_file(tensors, str(tmp / WEIGHTS))
        torch.save(state, tmp / STATE)
        final = checkpoint_dir / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(checkpoint_dir / LATEST, name + "\n")
    _prune(checkpoint_dir, keep=keep, protect=name)
    return final


def _prune(checkpoint_dir: Path, *, keep: int, protect: str) -> None:
    """Keep the newest ``keep`` epoch-end checkpoints and no mid-epoch one but ``protect``
    (the one just written)."""
    folders = sorted(
        p for p in checkpoint_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    ends = [p for p in folders if MID_EPOCH not in p.name]
    middles = [p for p in folders if MID_EPOCH in p.name]
    for old in ends[: max(0, len(ends) - keep)] + middles:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    for stale in checkpoint_dir.glob(".*"):  # temporaries of a killed write
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _complete(folder: Path) -> bool:
    return (folder / WEIGHTS).is_file() and (folder / STATE).is_file()


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The folder ``latest`` points at; without a pointer (a run killed between renaming its
    first checkpoint into place and writing the pointer) the newest complete folder; None when
    there is no complete checkpoint."""
    pointer = checkpoint_dir / LATEST
    if not pointer.is_file():
        if not checkpoint_dir.is_dir():
            return None
        folders = sorted(
            p
            for p in checkpoint_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and _complete(p)
        )
        return folders[-1] if folders else None
    folder = checkpoint_dir / pointer.read_text().strip()
    if not _complete(folder):
        raise FileNotFoundError(f"{pointer} points at {folder}, which is not a complete checkpoint")
    return folder


def load_checkpoint(folder: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(weights, state)`` of a checkpoint folder; never unpickles arbitrary objects."""
    weights = load_file(str(folder / WEIGHTS))
    state = torch.load(folder / STATE, weights_only=True, map_location="cpu")
    return weights, state
