"""Atomic file writes: write to a temporary sibling, then ``os.replace`` it onto the destination.

The temporary file is in the destination's folder (same filesystem, so the rename is atomic): a reader, or a run
killed mid-write, sees the old file or the new one, never half of one. Its name is
``.<name>.tmp-<pid>-<random>`` so leftovers of a killed run match ``*.tmp-*`` (``hkd-prep extract`` removes them);
``<name>`` is shortened when needed so the temporary name fits the filesystem's name limit (255 bytes) whenever
the final name does. Outputs that must not replace an existing file are claimed with a hard link
(:func:`publish` with ``overwrite=False``), which fails if the name is taken: no check-then-write race.
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

from hkdsme.pipeline.errors import InputError, OutputError, os_reason


def _read_umask() -> int:
    mask = os.umask(0)   # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


# Read once, at import: setting the umask is process-wide, and doing it per write would let a file made by
# another thread in that instant get umask 0 (e.g. extraction with ``--backend threading``).
_UMASK = _read_umask()


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def temp_prefix(dest: Path) -> str:
    """``.<name>.tmp-<pid>-`` for a temporary sibling of ``dest``, the name cut (in bytes, as the filesystem
    counts them) so that the temporary name with mkstemp's 8 random characters fits wherever ``dest``'s fits."""
    tail = f".tmp-{os.getpid()}-"
    room = _name_max(dest.parent) - len(tail.encode()) - 1 - 8 - 1          # ".", the random part, one spare
    name = os.fsencode(dest.name)
    return "." + os.fsdecode(name[:max(1, room)]) + tail


def _new_temp(dest: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=temp_prefix(dest), dir=dest.parent)
    os.close(fd)
    return Path(name)


@contextmanager
def atomic_path(dest, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on a clean exit it replaces ``dest``, on an error it is deleted.

    Creates ``dest``'s folder. The yielded file exists and is empty; writers may truncate or reopen it.
    ``overwrite=False`` claims ``dest`` only if it does not exist (:func:`publish`): ``FileExistsError`` if
    another writer got there first, and nothing is replaced.
    """
    with atomic_paths([dest], overwrite=overwrite) as (tmp,):
        yield tmp


@contextmanager
def atomic_paths(dests, *, overwrite: bool = True) -> Iterator[list[Path]]:
    """:func:`atomic_path` for several files that belong together (a melody file and its plot): all are
    written to temporaries first and published only when every one is finished; if publishing one fails, those
    already published by this call are removed again, so a failure never leaves half of the set."""
    dests = [Path(d) for d in dests]
    tmps: list[Path] = []
    try:
        for d in dests:
            d.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(_new_temp(d))
        yield list(tmps)
        done = []
        try:
            for t, d in zip(tmps, dests):
                publish(t, d, overwrite=overwrite)
                done.append(d)
        except BaseException:
            for d in done:
                d.unlink(missing_ok=True)
            raise
    finally:
        for t in tmps:
            t.unlink(missing_ok=True)


def publish(tmp, dest, *, overwrite: bool = True) -> None:
    """Give finished file ``tmp`` the mode a plain ``open(dest, "w")`` would, then rename it onto ``dest``.

    ``overwrite=False``: ``os.link(tmp, dest)``, which fails with ``FileExistsError`` when ``dest`` exists, so of
    two writers racing for one name exactly one wins and the other's file is never silently replaced (``tmp``
    is left for the caller to delete). Where hard links are unsupported, ``dest`` is claimed with an exclusive
    create (``O_EXCL``) and then replaced.
    """
    os.chmod(tmp, 0o666 & ~_UMASK)
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))    # FileExistsError if taken
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


def writable_dir(folder, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove it writable by creating (and removing) a temporary file in it, so a
    read-only place is found before any work, whoever runs it (``os.access`` says yes to root on a read-only
    mount). ``OutputError`` (one line, naming the folder) otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(folder, f"the {what} is an existing file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".hkd-write-test-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise OutputError(folder, f"cannot write to the {what}: {os_reason(e)}") from None
    return folder
