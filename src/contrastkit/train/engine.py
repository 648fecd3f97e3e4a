"""The training engine: devices and precision (Lightning Fabric), the epoch/step loop, the
warmup-cosine schedule, progress bars, ``metrics.jsonl`` + TensorBoard, atomic checkpoints and
exact resume. It knows nothing about modalities: a recipe hands it a :class:`Task`.

Determinism: the data order of epoch ``e`` comes from a generator seeded with ``(seed, e)`` and
the global RNG is re-seeded from ``(seed, step)`` before every step (augmentations, dropout),
so a run resumed from a checkpoint takes exactly the steps an uninterrupted run takes and, on
the CPU, ends with the same parameters and metrics.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from lightning_fabric import Fabric
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from contrastkit.train.checkpoint import (
    MID_EPOCH,
    atomic_write_text,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from contrastkit.train.config import RunConfig, config_difference, config_from_dict
from contrastkit.train.optim import build_optimizer, warmup_cosine
from contrastkit.train.run_lock import RunLock

# Keys that may change when a run is resumed (they do not change what a step computes;
# train.epochs does: it sets the length of the cosine schedule).
RESUMABLE_CHANGES = (
    "train.progress",
    "train.eval_every",
    "train.checkpoint_every",
    "train.checkpoint_minutes",
    "train.keep_checkpoints",
)


class Task(Protocol):
    """What a recipe gives the engine."""

    model: nn.Module  # every parameter and buffer that is trained or checkpointed

    def num_train(self) -> int: ...

    def setup(self, fabric: Fabric) -> None:
        """Move data and modules to ``fabric.device`` (called once, before training)."""

    def training_step(self, model: nn.Module, indices: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Loss of one batch of training-set indices, and scalars to log. ``model`` is
        ``self.model`` as wrapped by Fabric (precision, DDP): call it, not ``self.model``.
        A task that back-propagates itself (gradient cache) returns a detached loss."""

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Hook after each optimizer step (momentum encoders, queues)."""

    def evaluate(self, epoch: int, *, final: bool) -> dict[str, Any]:
        """Metrics of the current model (online evaluation and the final one). A non-final
        result with ``"stop": True`` ends training early (early stopping): the engine then
        asks for the final evaluation at that epoch."""

    # optional: ``bind_optimizer(optimizer)`` is called once with the engine's optimizer, for
    # tasks that take extra optimizer steps inside ``training_step`` (MCLRec's bilevel update);
    # ``epoch_order(generator, batch) -> Tensor`` replaces the epoch's random permutation of
    # the training indices (consecutive blocks of ``batch`` are the batches);
    # ``extra_state() -> dict`` / ``load_extra_state(dict)``: task state saved in each
    # checkpoint (tensors, numbers, strings, dicts and lists: loaded with weights_only=True)


def evaluation_line(record: dict[str, Any], last_epoch: int, task: object) -> str:
    """One line for an evaluated epoch (printed when ``train.progress`` is false): epoch, step,
    mean loss, the task's ``log_metrics`` (else the first four evaluated numbers) and the
    elapsed seconds."""
    base = ("epoch", "step", "loss", "lr", "seconds")
    names = getattr(task, "log_metrics", None) or [k for k in record if k not in base][:4]
    shown = [
        f"{name} {record[name]:.4f}"
        if isinstance(record[name], float)
        else f"{name} {record[name]}"
        for name in names
        if name in record
    ]
    return (
        f"epoch {record['epoch']}/{last_epoch}  step {record['step']}  "
        f"loss {record['loss']:.4f}  " + "  ".join(shown) + f"  ({record['seconds']:.0f} s)"
    )


class Engine:
    """Trains a :class:`Task` into ``run_dir`` (``config.yaml``, ``metrics.jsonl``,
    ``checkpoints/``, ``tensorboard/``); :meth:`fit` returns the final metrics."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        task: Task,
        *,
        resume: bool = False,
        echo: bool = True,
    ):
        self.config = config
        self.echo = echo  # without a progress bar (train.progress false): a line per evaluation
        self.run_dir = Path(run_dir)
        self.task = task
        self.resume = resume
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.prepared = False
        self.restored: tuple[dict[str, Tensor], dict[str, Any]] | None = None
        self.start_epoch = 0  # the epoch of the checkpoint a resumed run continues from
        self.fabric: Fabric | None = None
        self.lock = RunLock(self.run_dir)  # held by the main process from prepare() to the end
        self._managed = False  # inside ``with engine:`` the lock lasts until the block ends
        devices = config.train.devices
        if devices > 1 and config.train.batch_size % devices:
            raise ValueError(
                f"train.batch_size={config.train.batch_size} must be divisible by "
                f"train.devices={devices} (each process takes an equal share of the batch)"
            )

    # -- setup -----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the run folder and the checkpoint, start Fabric, move the task to the device.

        Everything that can refuse the run happens here, before anything is written.
        """
        if self.prepared:
            return
        if self.resume and not self.run_dir.is_dir():
            raise FileNotFoundError(f"--resume: {self.run_dir} does not exist")
        # The process that writes the folder takes its lock before anything reads or writes it,
        # and before Fabric starts other processes (a refused run then starts none).
        if _launching_rank() == 0:
            self.lock.acquire()  # RunFolderBusyError if another process trains this folder
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise
        self.prepared = True

    def _prepare(self) -> None:
        cfg = self.config.train
        folder = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir.exists() else None
        if folder is not None and not self.resume:
            raise FileExistsError(
                f"{self.run_dir} already holds a run; pass --resume to continue it or choose "
                "another --output folder"
            )
        if folder is None and self.resume and _launching_rank() == 0:
            print(
                f"--resume: {self.run_dir} holds no checkpoint yet; starting from epoch 1",
                file=sys.stderr,
                flush=True,
            )
        if folder is not None:
            weights, state = load_checkpoint(folder)
            saved = config_from_dict(state["config"])
            differences = config_difference(saved, self.config, ignore=RESUMABLE_CHANGES)
            if differences:
                raise ValueError(
                    f"checkpoint {folder} was made with a different config "
                    f"(differs in: {', '.join(differences)}); resume with the run's own "
                    "config.yaml or train into another --output folder"
                )
            self.restored = (weights, state)
            self.start_epoch = int(state["epoch"])
            if self.echo and _launching_rank() == 0:
                partial = state.get("partial")
                where = f"after epoch {self.start_epoch}"
                if partial is not None:
                    where = f"{partial['epoch_steps']} steps into epoch {self.start_epoch + 1}"
                print(
                    f"--resume: continuing from {folder.name} ({where}, step {state['step']})",
                    file=sys.stderr,
                    flush=True,
                )
        try:
            self.fabric = Fabric(
                accelerator=cfg.accelerator,
                devices=cfg.devices,
                precision=cfg.precision,
                strategy="ddp" if cfg.devices > 1 else "auto",
            )
            self.fabric.launch()  # with devices > 1: starts the other processes (same command)
        except (RuntimeError, ImportError, ModuleNotFoundError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise ValueError(
                f"cannot start train.accelerator={cfg.accelerator!r} with "
                f"train.precision={cfg.precision!r}: {first}"
            ) from None
        if cfg.devices > 1 and cfg.sync_batchnorm and self.fabric.device.type != "cuda":
            raise ValueError(
                "train.sync_batchnorm=true needs GPUs (SyncBatchNorm); set it false or leave it "
                "unset (null) for per-process statistics on the CPU"
            )
        self.task.setup(self.fabric)

    @property
    def is_main(self) -> bool:
        """True in the process that writes the run folder (rank 0)."""
        return self.fabric is None or self.fabric.global_rank == 0

    def _prepare_run_dir(self, resumed: bool, epoch: int) -> None:
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.yaml", self.config.to_yaml())
        if resumed and self.metrics_path.exists():
            kept = [
                line
                for line in self.metrics_path.read_text().splitlines()
                if _epoch_of(line) is not None and _epoch_of(line) <= epoch
            ]
            atomic_write_text(self.metrics_path, "".join(f"{line}\n" for line in kept))
        elif not resumed:
            atomic_write_text(self.metrics_path, "")

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train (or continue) the run. The run folder's lock is released when ``fit`` ends,
        however it ends, or, inside ``with engine:``, when the block ends (so that a recipe's
        summary and plots are written under the lock)."""
        try:
            return self._fit()
        finally:
            if not self._managed:
                self.close()

    def close(self) -> None:
        """Release the run folder's lock (a folder this run created and left empty goes)."""
        self.lock.release(remove_unused_folder=True)

    def __enter__(self) -> Engine:
        self._managed = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._managed = False
        self.close()

    def _fit(self) -> dict[str, Any]:
        cfg = self.config.train
        self.prepare()
        fabric, restored = self.fabric, self.restored
        assert fabric is not None
        if restored is not None and self.start_epoch > cfg.epochs:
            raise ValueError(
                f"train.epochs={cfg.epochs} is below the checkpoint's epoch {self.start_epoch}"
            )
        torch.manual_seed(cfg.seed)
        optim_cfg = self.config.optim
        params = [p for p in self.task.model.parameters() if p.requires_grad]
        optimizer = build_optimizer(
            optim_cfg.name,
            params,
            lr=optim_cfg.lr,
            weight_decay=optim_cfg.weight_decay,
            momentum=optim_cfg.momentum,
            lars_eta=optim_cfg.lars_eta,
        )
        on_gpu = fabric.device.type == "cuda"
        if cfg.devices > 1 and (cfg.sync_batchnorm or (cfg.sync_batchnorm is None and on_gpu)):
            self.task.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.task.model)
        model, optimizer = fabric.setup(self.task.model, optimizer)
        if hasattr(self.task, "bind_optimizer"):
            self.task.bind_optimizer(optimizer)

        n = self.task.num_train()
        world, rank = fabric.world_size, fabric.global_rank
        batch = min(cfg.batch_size, n) // world * world  # equal shares for every process
        if batch == 0:
            raise ValueError(f"{n} training examples cannot be shared by {world} processes")
        steps_per_epoch = max(1, n // batch)
        total_steps = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:  # a step budget shortens the run (and its schedule)
            total_steps = min(total_steps, cfg.max_steps)
        last_epoch = math.ceil(total_steps / steps_per_epoch)
        warmup_steps = round(optim_cfg.warmup_epochs * steps_per_epoch)

        start_epoch, step, elapsed = 0, 0, 0.0
        partial: dict[str, Any] | None = None  # a mid-epoch checkpoint's place in its epoch
        if restored is not None:
            weights, state = restored
            self.task.model.load_state_dict(weights, strict=True)
            optimizer.load_state_dict(state["optimizer"])
            if hasattr(self.task, "load_extra_state") and "task" in state:
                self.task.load_extra_state(state["task"])
            start_epoch, step, elapsed = state["epoch"], state["step"], state["elapsed"]
            partial = state.get("partial")
        self._prepare_run_dir(restored is not None, start_epoch)

        writer = (
            SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=step + 1)
            if self.is_main
            else _NoWriter()
        )
        started = time.perf_counter() - elapsed
        result: dict[str, Any] = {}
        if start_epoch >= last_epoch:  # finished before the kill: the last record has the metrics
            result = self._last_record()
        elif restored is not None and self._last_record().get("stopped_early"):
            result, last_epoch = self._last_record(), start_epoch  # it had stopped early
        bar = tqdm(
            total=total_steps,
            initial=step,
            disable=not cfg.progress,
            unit="step",
            desc=getattr(
                self.task, "description", f"{self.config.loss.name} V={self.config.views.views}"
            ),
            leave=False,
        )
        every_seconds = 60.0 * cfg.checkpoint_minutes
        last_save = time.perf_counter()

        def checkpoint_due() -> bool:  # train.checkpoint_minutes since the last checkpoint
            return every_seconds > 0 and time.perf_counter() - last_save >= every_seconds

        try:
            for epoch in range(start_epoch + 1, last_epoch + 1):
                model.train()
                # the epoch's order (and a task's per-epoch draws) from the epoch number alone,
                # so a run resumed inside the epoch sees the same order
                generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
                if hasattr(self.task, "epoch_order"):  # e.g. batches of similar lengths
                    order = self.task.epoch_order(generator, batch)
                else:
                    order = torch.randperm(n, generator=generator)
                losses: list[float] = []
                first = 0
                if partial is not None:  # resumed inside this epoch: skip the steps it took
                    first, losses = int(partial["epoch_steps"]), list(partial["losses"])
                    partial = None
                epoch_steps = min(steps_per_epoch, total_steps - (step - first))
                for k in range(first, epoch_steps):
                    # own augmentation / dropout draws per process and step
                    torch.manual_seed(cfg.seed * 1_000_003 + step + rank * 7_919_000_007)
                    if optim_cfg.schedule == "constant":
                        lr = optim_cfg.lr * min(1.0, (step + 1) / max(1, warmup_steps))
                    else:
                        lr = optim_cfg.lr * warmup_cosine(
                            step, total_steps=total_steps, warmup_steps=warmup_steps
                        )
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    indices = order[k * batch : (k + 1) * batch]
                    if world > 1:  # this process's share; the task gathers z across processes
                        indices = indices.chunk(world)[rank]
                    optimizer.zero_grad(set_to_none=True)
                    loss, logs = self.task.training_step(model, indices)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"loss is {float(loss)} at epoch {epoch}, step {step}; "
                            "lower the learning rate or raise the temperature"
                        )
                    if loss.requires_grad:
                        optimizer.zero_grad(set_to_none=True)
                        fabric.backward(loss)
                    # else: the task already accumulated the gradients (gradient cache)
                    optimizer.step()
                    self.task.after_optimizer_step(step, total_steps)
                    step += 1
                    logged = loss.detach()
                    if world > 1:  # a local loss is one share: the mean over processes is L
                        logged = fabric.all_reduce(logged, reduce_op="mean")
                    losses.append(float(logged))
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4f}")
                    writer.add_scalar("train/loss", losses[-1], step)
                    writer.add_scalar("train/lr", lr, step)
                    for key, value in logs.items():
                        writer.add_scalar(f"train/{key}", value, step)
                    if checkpoint_due() and self.is_main and k + 1 < epoch_steps:
                        place = {"epoch_steps": k + 1, "losses": list(losses)}
                        self._save(epoch - 1, step, optimizer, time.perf_counter() - started, place)
                        last_save = time.perf_counter()
                record: dict[str, Any] = {
                    "epoch": epoch,
                    "step": step,
                    "loss": sum(losses) / len(losses),
                    "lr": lr,
                    "seconds": round(time.perf_counter() - started, 3),
                }
                final = epoch == last_epoch
                evaluated = bool(final or (cfg.eval_every and epoch % cfg.eval_every == 0))
                if evaluated:
                    model.eval()
                    result = self.task.evaluate(epoch, final=final)
                    if not final and result.pop("stop", False):  # early stopping
                        final, last_epoch = True, epoch
                        result = self.task.evaluate(epoch, final=True)
                        record["stopped_early"] = True
                    record.update({k: v for k, v in result.items() if is_number(v)})
                    for key, value in record.items():
                        if key not in ("epoch", "step") and is_number(value):
                            writer.add_scalar(f"epoch/{key}", value, epoch)
                if self.is_main:
                    with self.metrics_path.open("a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    if self.echo and not cfg.progress and evaluated:
                        print(evaluation_line(record, last_epoch, self.task), flush=True)
                # an epoch end that checkpoint_every skips is still saved once the time is due
                # (epochs of one step never reach the mid-epoch save above)
                scheduled = final or epoch % max(1, cfg.checkpoint_every) == 0
                if self.is_main and (scheduled or checkpoint_due()):
                    self._save(epoch, step, optimizer, time.perf_counter() - started)
                    last_save = time.perf_counter()
                if world > 1:
                    fabric.barrier()
                if final:  # the last epoch, or an early stop
                    break
        finally:
            bar.close()
            writer.close()
        result["wall_seconds"] = round(time.perf_counter() - started, 3)
        result["epochs"] = last_epoch
        result["epochs_trained"] = round(step / steps_per_epoch, 3)
        result["steps"] = step
        return result

    def _last_record(self) -> dict[str, Any]:
        """The last complete record of ``metrics.jsonl`` (the final metrics of a finished run)."""
        lines = [ln for ln in self.metrics_path.read_text().splitlines() if _epoch_of(ln)]
        return json.loads(lines[-1]) if lines else {}

    def _save(
        self,
        epoch: int,
        step: int,
        optimizer: torch.optim.Optimizer,
        elapsed: float,
        partial: dict[str, Any] | None = None,
    ) -> None:
        """Checkpoint after ``epoch`` finished epochs and ``step`` steps; ``partial``
        (``{"epoch_steps": k, "losses": [...]}``): written ``k`` steps into epoch ``epoch + 1``,
        with that epoch's losses so far (its record's mean loss is then exact on resume)."""
        state: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "elapsed": elapsed,
            "optimizer": optimizer.state_dict(),
            "config": self.config.to_dict(),
        }
        if partial is not None:
            state["partial"] = partial
        if hasattr(self.task, "extra_state"):  # e.g. early-stopping counters, a 2nd optimizer
            state["task"] = self.task.extra_state()
        name = f"epoch-{epoch:05d}"
        if partial is not None:
            name += f"{MID_EPOCH}{step:09d}"
        save_checkpoint(
            self.checkpoint_dir,
            name,
            weights=self.task.model.state_dict(),
            state=state,
            keep=self.config.train.keep_checkpoints,
        )


class _NoWriter:
    """Stands in for the TensorBoard writer in processes other than rank 0."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None


def _launching_rank() -> int:
    """The global rank of this process as the launcher set it (``RANK``, or ``LOCAL_RANK`` for
    Fabric's own launcher): 0 in the process started by the user, before Fabric launches."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _epoch_of(line: str) -> int | None:
    """The epoch of a ``metrics.jsonl`` line; None for a blank or partly written line."""
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None
