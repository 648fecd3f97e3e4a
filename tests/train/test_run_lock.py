"""One training process per run folder: the lock, the engine holding it for the whole run,
the CLI's one-line error, and a killed holder leaving no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

from contrastkit.cli import main
from contrastkit.train.config import load_config
from contrastkit.train.engine import Engine
from contrastkit.train.run_lock import LOCK_NAME, RunFolderBusyError, RunLock

TINY = [
    "--data.train_limit",
    "128",
    "--data.test_limit",
    "64",
    "--train.batch_size",
    "64",
    "--train.epochs",
    "1",
    "--train.progress",
    "false",
    "--model.width",
    "8",
    "--model.head_hidden",
    "16",
    "--model.head_out",
    "8",
    "--eval.linear_epochs",
    "5",
]


def test_a_second_lock_on_the_folder_is_refused_until_the_first_is_released(tmp_path):
    first = RunLock(tmp_path / "run")
    first.acquire()
    assert first.held and (tmp_path / "run" / LOCK_NAME).is_file()
    with pytest.raises(RunFolderBusyError, match=rf"run is being trained .*pid {os.getpid()}"):
        RunLock(tmp_path / "run").acquire()
    first.release()
    first.release()  # idempotent
    with RunLock(tmp_path / "run") as second:
        assert second.held
    assert not second.held


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from contrastkit.train.run_lock import RunLock\n"
            f"lock = RunLock({str(tmp_path / 'run')!r})\n"
            "lock.acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusyError, match=f"pid {holder.pid}"):
            RunLock(tmp_path / "run").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path / "run") as lock:  # the OS dropped the dead process's lock
        assert lock.held


class _TinyTask:
    """The smallest :class:`~contrastkit.train.engine.Task`: a linear map towards zero."""

    def __init__(self, fail_in_setup: bool = False):
        self.model = nn.Linear(3, 1)
        self.fail_in_setup = fail_in_setup
        self.lock_held_in_step: list[bool] = []
        self.engine: Engine | None = None

    def num_train(self) -> int:
        return 8

    def setup(self, fabric) -> None:
        if self.fail_in_setup:
            raise ValueError("bad data")

    def training_step(self, model, indices):
        assert self.engine is not None
        self.lock_held_in_step.append(self.engine.lock.held)
        return model(torch.ones(len(indices), 3)).pow(2).mean(), {}

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        pass

    def evaluate(self, epoch: int, *, final: bool) -> dict:
        return {}


def _engine(run_dir, task: _TinyTask, *, resume: bool = False) -> Engine:
    config = load_config(None, ["train.epochs=2", "train.batch_size=4", "train.progress=false"])
    engine = Engine(config, run_dir, task, resume=resume)
    task.engine = engine
    return engine


def test_the_engine_holds_the_lock_while_training_and_releases_it(tmp_path):
    task = _TinyTask()
    engine = _engine(tmp_path / "run", task)
    engine.prepare()
    with pytest.raises(RunFolderBusyError):  # a second process resuming the same folder
        _engine(tmp_path / "run", _TinyTask(), resume=True).prepare()
    engine.fit()
    assert task.lock_held_in_step == [True] * 4
    assert not engine.lock.held
    _engine(tmp_path / "run", _TinyTask(), resume=True).fit()  # free again: resumes


def test_a_run_refused_in_setup_releases_the_lock_and_leaves_no_folder(tmp_path):
    with pytest.raises(ValueError, match="bad data"):
        _engine(tmp_path / "run", _TinyTask(fail_in_setup=True)).prepare()
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made is never removed
    with pytest.raises(ValueError, match="bad data"):
        _engine(tmp_path / "kept", _TinyTask(fail_in_setup=True)).prepare()
    assert (tmp_path / "kept").is_dir()
    with RunLock(tmp_path / "kept") as lock:
        assert lock.held


def test_the_cli_refuses_a_folder_another_process_trains(tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        assert main(["train", "--output", str(out), *TINY]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("contrastkit: error:") and "being trained by another process" in err
        assert len(err.splitlines()) == 1
        assert not (out / "checkpoints").exists()
    assert main(["train", "--output", str(out), *TINY]) == 0
    assert (out / "checkpoints" / "latest").is_file()


def test_inside_with_the_lock_lasts_until_the_block_ends(tmp_path):
    with _engine(tmp_path / "run", _TinyTask()) as engine:
        engine.fit()
        assert engine.lock.held  # the recipe still writes its summary under the lock
        with pytest.raises(RunFolderBusyError):
            RunLock(tmp_path / "run").acquire()
    assert not engine.lock.held
    with RunLock(tmp_path / "run") as lock:
        assert lock.held


def test_a_refused_run_releases_the_lock(tmp_path):
    _engine(tmp_path / "run", _TinyTask()).fit()
    with pytest.raises(FileExistsError, match="already holds a run"):
        _engine(tmp_path / "run", _TinyTask()).prepare()  # no --resume
    with RunLock(tmp_path / "run") as lock:  # not left held by the refused engine
        assert lock.held


def test_only_the_launching_process_takes_the_lock(tmp_path, monkeypatch):
    """Processes that Fabric launches (LOCAL_RANK > 0) must not contend for rank 0's lock."""
    with RunLock(tmp_path / "run"):  # held by rank 0
        monkeypatch.setenv("LOCAL_RANK", "1")
        engine = _engine(tmp_path / "run", _TinyTask())
        engine.prepare()
        assert not engine.lock.held
