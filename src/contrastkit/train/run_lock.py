"""One training process per run folder.

Two processes training into the same folder (say ``contrastkit train --resume`` started twice,
or a benchmark chain reaching a run that another command is already training) would
interleave their checkpoints and ``metrics.jsonl`` lines. :class:`RunLock` takes an exclusive,
non-blocking OS lock on ``RUN_DIR/.lock`` for as long as a run trains; the second process gets
:class:`RunFolderBusyError` naming the folder and the holder's process id.

The lock is an ``flock`` (``msvcrt.locking`` on Windows) on an open file, not the file's
existence: the OS drops it when the holder exits, however it exits, so a killed run never
leaves a stale lock behind (the ``.lock`` file itself stays and is harmless).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

LOCK_NAME = ".lock"


class RunFolderBusyError(RuntimeError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """Exclusive lock of a run folder: ``acquire()`` or raise, ``release()`` (idempotent)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._handle: IO[str] | None = None
        self._made_folder = False

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        """Create the folder if needed and take the lock; :class:`RunFolderBusyError` when
        another process holds it."""
        if self._handle is not None:
            return
        self._made_folder = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            _lock(handle)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderBusyError(
                f"{self.path.parent} is being trained by another process ({holder}); wait for "
                "it to finish or stop it, then --resume (or choose another --output folder)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle

    def release(self, *, remove_unused_folder: bool = False) -> None:
        """Drop the lock. ``remove_unused_folder``: if :meth:`acquire` created the folder and
        nothing but the lock file was written into it (a run refused during setup), remove
        both, so that a refused run leaves no folder behind."""
        if self._handle is None:
            return
        try:
            _unlock(self._handle)
        finally:
            self._handle.close()
            self._handle = None
        folder = self.path.parent
        if remove_unused_folder and self._made_folder and os.listdir(folder) == [LOCK_NAME]:
            self.path.unlink()
            folder.rmdir()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock(handle: IO[str]) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:  # pragma: no cover - Windows: lock the first byte
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)


def _unlock(handle: IO[str]) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    else:  # pragma: no cover
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
