"""One error type for bad input files, always naming the file and the reason."""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A file that cannot be used: corrupt/empty/too-short audio, missing or misaligned labels, NaN, ...

    ``str(err)`` is one line: ``<path>: <reason>``. Batch jobs catch it, skip the file and report it.
    """

    def __init__(self, path, reason: str):
        self.path = Path(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path is not None else reason)

    def __reduce__(self):
        # pickled as (path, reason), so it crosses process boundaries (predict workers) intact
        return type(self), (self.path, self.reason)
