"""One owner per run folder: an exclusive ``flock`` on ``<folder>/.lock`` for the whole run.

The kernel drops a flock when the last descriptor of its open file closes, however the process
ends (return, exception, SIGKILL), so a killed run never leaves a stale lock and nothing has to
guess whether a recorded PID is still alive. The owner writes its PID into the file only so that
a refused second trainer can name it.

The lock file is never deleted: a process that opened the old file would hold a lock on an
unlinked inode while a newcomer locked a fresh one, and both would own the folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from lstmkit.utils.errors import UserError

LOCK_FILE = ".lock"
HELD_ENV = "LSTMKIT_HELD_LOCK"
"""Set by a launcher that holds a run folder's lock for its workers: that lock file's path."""


class FolderLock:
    """A held lock; :meth:`release` (or leaving the ``with`` block, or dying) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def held_by_launcher(folder: str | os.PathLike) -> bool:
    """Whether a launcher above this process holds ``folder``'s lock for it (``--nproc``)."""
    held = os.environ.get(HELD_ENV)
    return bool(held) and os.path.abspath(held) == os.path.abspath(Path(folder) / LOCK_FILE)


def lock_folder(folder: str | os.PathLike, *, who: str = "lstmkit train") -> FolderLock:
    """Create ``folder`` if needed and take its lock, or raise a UserError naming the owner.

    Nothing in the folder is touched before the lock is held, apart from creating an empty lock
    file where there is none (two processes may both create it: ``O_CREAT`` without ``O_EXCL``
    opens the same file for both, and only one of them gets the flock).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a parent is a file
        raise UserError(f"--out {folder}: a parent of it is a file, not a folder") from None
    except OSError as e:
        raise UserError(f"--out {folder}: cannot create the folder ({e.strerror})") from None
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise UserError(f"--out {folder} is not writable ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise UserError(f"--out {folder}: cannot lock {path} ({e.strerror})") from None
        raise UserError(f"{folder} is in use by another {who} ({_owner(path)})") from None
    if not os.access(folder, os.W_OK):
        os.close(fd)
        raise UserError(f"--out {folder} is not writable (permission denied)")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        os.close(fd)
        raise UserError(f"--out {folder}: cannot write {path} ({e.strerror})") from None
    return FolderLock(path, fd)


def _owner(path: Path) -> str:
    """``PID n`` of the lock's holder, as it wrote it (it may be between locking and writing)."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text.isdigit() and _alive(int(text)):
            return f"PID {text}"
        if time.monotonic() > deadline:
            return f"PID {text}" if text.isdigit() else "PID unknown"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
