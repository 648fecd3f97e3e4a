"""The best evaluation of a run so far: its weights on disk and the early-stopping count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from contrastkit.train.checkpoint import atomic_write_text, load_weights, save_weights


class BestWeights:
    """Tracks the best score of a run's evaluations (higher is better).

    An improvement writes ``best.safetensors`` (the model's weights) and ``best.json``
    atomically into ``run_dir`` and resets :attr:`since`, the number of evaluations without one
    (the early-stopping count). Re-evaluating the best epoch itself after a resume counts as
    equal, not as worse. :meth:`state` / :meth:`load_state` go into the engine's checkpoints
    (so a resumed run stops exactly as an uninterrupted one); :meth:`load_files` reads
    ``best.json`` for runs whose checkpoints predate that.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self.best: dict[str, Any] = {}
        self.since = 0

    @property
    def epoch(self) -> int:
        return int(self.best["epoch"])

    def update(
        self, score: float, epoch: int, model: nn.Module, *, count: bool = True, **extra: Any
    ) -> bool:
        """Record one evaluation; True (and the weights saved) if it is the best so far.
        ``count=False``: a non-improving evaluation does not add to :attr:`since`."""
        if not self.best or score > self.best["score"] or epoch == self.best["epoch"]:
            self.best = {"score": score, "epoch": epoch, **extra}
            self.since = 0
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_weights(self.run_dir / "best.safetensors", model.state_dict())
            atomic_write_text(self.run_dir / "best.json", json.dumps({**self.best, "since": 0}))
            return True
        if count:
            self.since += 1
        return False

    def weights(self) -> dict[str, Tensor]:
        return load_weights(self.run_dir / "best.safetensors")

    def state(self) -> dict[str, Any]:
        return {"best": dict(self.best), "since": self.since}

    def load_state(self, state: dict[str, Any]) -> None:
        self.best = dict(state["best"])
        self.since = int(state["since"])

    def load_files(self) -> None:
        path = self.run_dir / "best.json"
        if path.is_file() and (self.run_dir / "best.safetensors").is_file():
            state = json.loads(path.read_text())
            self.since = int(state.pop("since", 0))
            self.best = state
