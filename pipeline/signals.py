"""SIGTERM and SIGHUP end a command the way Ctrl-C does: cleanly, workers included.

Python's default for SIGTERM / SIGHUP is to die on the spot: no ``finally`` runs, so temporary files stay, and
worker processes (loky / joblib, dask, DataLoader) are orphaned, because unlike Ctrl-C, which the terminal
sends to the whole process group, these signals reach the parent alone. :func:`terminable` (entered by every
``hkd-*`` command) turns them into :class:`Terminated`, a ``SystemExit`` with status ``128 + signal`` (143 for
SIGTERM, 129 for SIGHUP, as the shell reports a process killed by it), raised in the main thread. It unwinds
like any error: atomic writes delete their temporaries, extraction keeps the tracks it finished (journal) and
releases its lock, predict keeps the melody files already written. On the way out every worker process still
alive is ended (:func:`end_workers`); the resource trackers, which exit when the last process holding their
pipe is gone, follow by themselves. Further signals during that cleanup are ignored, so it is not cut short.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))

_received: list[int] = []           # signals received by this process (first one decides the exit status)
_killers: list = []                 # callables that end a pool's workers at once (evaluate.parallel registers one)


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM / SIGHUP; exit status ``128 + signum``."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def received() -> int | None:
    """The signal that is ending this process, or None."""
    return _received[0] if _received else None


def on_terminate(fn):
    """Register ``fn()`` to end a worker pool when the process is terminated (decorator-friendly)."""
    _killers.append(fn)
    return fn


def _handler(signum, frame):
    if _received:                   # already unwinding: let the cleanup finish
        return
    _received.append(signum)
    raise Terminated(signum)


def end_workers(timeout: float = 5.0) -> None:
    """End every worker process of this process now: registered pools first (:func:`on_terminate`), then any
    ``multiprocessing`` child still alive (loky, joblib, dask and DataLoader workers are such children):
    SIGTERM, then SIGKILL after ``timeout`` seconds."""
    import multiprocessing

    for fn in list(_killers):
        try:
            fn()
        except Exception:  # noqa: BLE001 - best effort on the way out; the generic pass below still runs
            pass
    children = multiprocessing.active_children()
    for p in children:
        p.terminate()
    for p in children:
        p.join(timeout)
        if p.is_alive():
            # os.kill, not p.kill(): loky's Popen has terminate() but no kill()
            try:
                os.kill(p.pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass
            p.join(1.0)


@contextmanager
def terminable():
    """While inside: SIGTERM / SIGHUP raise :class:`Terminated` in the main thread; on leaving because of one,
    end the worker processes (:func:`end_workers`). A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        try:
            if _received:
                end_workers()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
