"""Atomic file writes: write to a temporary sibling, then ``os.replace`` it onto the destination.

The temporary file is in the destination's folder (same filesystem, so the rename is atomic): a reader, or a run
killed mid-write, sees the old file or the new one, never half of one. Its name is
``.<name>.tmp-<pid>-<random>`` so leftovers of a killed run match ``*.tmp-*`` (``hkd-prep extract`` removes them).
The finished file gets the mode a plain ``open(path, "w")`` would give (``0o666 & ~umask``), not ``mkstemp``'s
private 0600, so checkpoints, caches and reports stay readable by the people they are shared with.
"""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hkdsme.pipeline.errors import InputError


def _read_umask() -> int:
    mask = os.umask(0)   # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


# Read once, at import: setting the umask is process-wide, and doing it per write would let a file made by
# another thread in that instant get umask 0 (e.g. extraction with ``--backend threading``).
_UMASK = _read_umask()


@contextmanager
def atomic_path(dest) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on a clean exit it replaces ``dest``, on an error it is deleted.

    Creates ``dest``'s folder. The yielded file exists and is empty; writers may truncate or reopen it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        publish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp, dest) -> None:
    """Give finished file ``tmp`` the mode a plain ``open(dest, "w")`` would, then rename it onto ``dest``."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, dest)


def write_text(dest, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``dest`` atomically; returns ``dest`` as a Path."""
    with atomic_path(dest) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    return Path(dest)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_pid(fd) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "x")
    except (OSError, ValueError):
        return None


@contextmanager
def file_lock(lock, what, busy: str, hint: str) -> Iterator[None]:
    """Hold an exclusive lock (``fcntl.flock`` on file ``lock``, which holds our pid) while writing ``what``.

    Another live holder: ``InputError(what, f"{busy} (pid N, lock LOCK); {hint}")``. A lock whose holder died
    is released by the kernel and simply taken over; where ``flock`` is unsupported (some network filesystems)
    the pid in the file decides (a dead or missing pid: taken over).
    """
    lock = Path(lock)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _lock_pid(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) or (
                    holder is not None and holder != os.getpid() and _pid_alive(holder)):
                who = f"pid {holder}" if holder is not None else "another process"
                raise InputError(what, f"{busy} ({who}, lock {lock}); {hint}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)          # releases the flock
