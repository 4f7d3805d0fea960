"""Atomic file writes: write to a temporary sibling, then ``os.replace`` it onto the destination.

The temporary file is in the destination's folder (same filesystem, so the rename is atomic): a reader, or a run
killed mid-write, sees the old file or the new one, never half of one. Its name is
``.<name>.tmp-<pid>-<random>`` so leftovers of a killed run match ``*.tmp-*`` (``hkd-prep extract`` removes them).
The finished file gets the mode a plain ``open(path, "w")`` would give (``0o666 & ~umask``), not ``mkstemp``'s
private 0600, so checkpoints, caches and reports stay readable by the people they are shared with.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(dest, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``dest`` atomically; returns ``dest`` as a Path."""
    with atomic_path(dest) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    return Path(dest)
