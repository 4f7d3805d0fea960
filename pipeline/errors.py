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


class OutputError(InputError):
    """A file or folder that cannot be written (read-only place, a file where a folder should be, full disk).

    ``str(err)`` is one line: ``<path>: <reason>``; a subclass of :class:`InputError`, so every command that
    reports bad input in one line reports this too.
    """


def os_reason(e: BaseException) -> str:
    """One line for an OSError: its ``strerror`` ("Permission denied", "No space left on device"), no errno
    prefix and no path (the caller names the file)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return (str(e).splitlines() or [type(e).__name__])[0]


def output_error(path, e: BaseException, what: str = "cannot write") -> OutputError:
    """``OutputError(path, "<what>: <reason>")`` for an OSError met while writing ``path``."""
    return OutputError(path, f"{what}: {os_reason(e)}")


def display(text) -> str:
    """``text`` safe to print on any UTF-8 stream: bytes of a non-UTF-8 file name (kept by Python as lone
    surrogates, ``\\udcXX``) become U+FFFD; everything else is unchanged."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
