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

import contextlib
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
        for _ in range(3):
            handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
            try:
                _lock(handle)
            except OSError:
                holder = _read_holder(handle)
                handle.close()
                raise RunFolderBusyError(
                    f"{self.path.parent} is being trained by another process ({holder}); wait "
                    "for it to finish or stop it, then --resume (or choose another --output)"
                ) from None
            if _same_file(handle, self.path):
                break
            # the holder removed the file between our open and our lock: lock the new one
            _unlock(handle)
            handle.close()
        else:  # pragma: no cover - three removals in a row
            raise RunFolderBusyError(f"{self.path} keeps being replaced by another process")
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
        folder = self.path.parent
        try:
            if remove_unused_folder and self._made_folder and os.listdir(folder) == [LOCK_NAME]:
                # unlinked while still locked, so nobody takes the old file meanwhile; on
                # Windows (an open file cannot go) or if another process wrote into the folder
                # meanwhile, the folder simply stays
                with contextlib.suppress(OSError):
                    self.path.unlink()
                    folder.rmdir()
        finally:
            try:
                _unlock(self._handle)
            finally:
                self._handle.close()
                self._handle = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(handle: IO[str]) -> str:
    try:
        handle.seek(0)
        return handle.read().strip() or "unknown"
    except OSError:  # pragma: no cover - an unreadable lock file
        return "unknown"


def _same_file(handle: IO[str], path: Path) -> bool:
    """Whether the open ``handle`` is still the file at ``path`` (not unlinked meanwhile)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


# Windows locks are mandatory: lock one byte far past the text, so that a refused process can
# still read who holds the lock.
_WINDOWS_LOCK_OFFSET = 1 << 20


def _lock(handle: IO[str]) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:  # pragma: no cover - Windows
        os.lseek(handle.fileno(), _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)


def _unlock(handle: IO[str]) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    else:  # pragma: no cover
        os.lseek(handle.fileno(), _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
