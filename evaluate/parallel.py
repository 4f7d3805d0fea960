"""Many files over worker processes: the file-level parallel path of :meth:`Predictor.predict_many`.

One job: run whole files (decode + CFP + network + decoder) in ``jobs`` worker processes with
``usable cores // jobs`` torch threads each, instead of one process whose threads share every stage. On a
2-core CPU the single-process path leaves cores idle in the serial parts (audio decoding, CFP's numba loops,
SELU / batch norm / unpooling between the convolutions); two 1-thread workers keep both busy
(docs/results.md, issue 13: measured on real songs). Results are the same numbers as the single-process path
(the convolutions give identical outputs with 1 or 2 threads; `tests/test_parallel.py`).

Workers come from a loky executor (joblib's process backend): fresh interpreters (a forked child of a process
whose OpenMP pool already ran can hang) that, unlike ``multiprocessing``'s spawn, do not re-import the caller's
main script, and that stay up for the next call with the same settings. Each builds its own
:class:`~hkdsme.evaluate.inference.Predictor` from the parent's settings once. Files are
handed out longest first (by size on disk) so the last file does not run alone; results are yielded in the
input order. A bad input comes back as ``InputError`` for that file only.
"""
from __future__ import annotations

import os
from pathlib import Path

_WORKER = None


def _init(spec: dict, threads: int) -> None:
    global _WORKER
    os.environ["OMP_NUM_THREADS"] = str(threads)      # read by runtime.configure_threads in Predictor
    import torch

    torch.set_num_threads(threads)
    from hkdsme.evaluate.inference import Predictor
    from hkdsme.model import runtime

    runtime.keep_freed_memory()       # a worker is our own process (runtime.keep_freed_memory)

    _WORKER = Predictor(**spec)


def _one(path: str, want_spec: bool):
    from hkdsme.pipeline.errors import InputError

    try:
        return "ok", _WORKER.predict_file(path, return_spectrum=want_spec)
    except InputError as e:
        return "error", e.reason


def _size(p) -> int:
    try:
        return Path(p).stat().st_size
    except OSError:
        return 0


_POOL: dict = {}


def _executor(spec: dict, jobs: int, threads: int):
    """This module's own loky executor (not joblib's global reusable one, which joblib's own Parallel reuses and
    would get our initializer); kept for the next call with the same settings, replaced otherwise."""
    from joblib.externals.loky import ProcessPoolExecutor

    key = (repr(sorted(spec.items())), jobs, threads)
    if _POOL.get("key") != key:
        old = _POOL.pop("pool", None)
        if old is not None:
            old.shutdown(wait=False)
        _POOL.update(key=key, pool=ProcessPoolExecutor(max_workers=jobs, initializer=_init, initargs=(spec, threads)))
    return _POOL["pool"]


def predict_parallel(spec: dict, paths, jobs: int, threads: int, *, return_spectrum: bool = False):
    """Yield ``(path, result or InputError)`` for ``paths`` in order, computed by ``jobs`` worker processes."""
    from hkdsme.pipeline.errors import InputError

    paths = list(paths)
    pool = _executor(spec, jobs, threads)
    order = sorted(range(len(paths)), key=lambda i: -_size(paths[i]))
    futures = {i: pool.submit(_one, str(paths[i]), return_spectrum) for i in order}
    try:
        for i, p in enumerate(paths):
            status, value = futures.pop(i).result()
            yield p, (value if status == "ok" else InputError(p, value))
    finally:
        for f in futures.values():           # the caller stopped early: do not leave files queued
            f.cancel()
