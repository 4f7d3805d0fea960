"""Many files over worker processes: the file-level parallel path of :meth:`Predictor.predict_many`.

One job: run whole files (decode + CFP + network + decoder) in ``jobs`` worker processes with
``usable cores // jobs`` torch threads each, instead of one process whose threads share every stage. On a
2-core CPU the single-process path leaves cores idle in the serial parts (audio decoding, CFP's numba loops,
SELU / batch norm / unpooling between the convolutions); two 1-thread workers keep both busy
(docs/benchmarks.md: measured on real songs). Results are the same numbers as the single-process path
(the convolutions give identical outputs with 1 or 2 threads; `tests/test_parallel.py`).

Workers come from a loky executor (joblib's process backend): fresh interpreters (a forked child of a process
whose OpenMP pool already ran can hang) that, unlike ``multiprocessing``'s spawn, do not re-import the caller's
main script, and that stay up for the next call with the same settings. Each builds its own
:class:`~hkdsme.evaluate.inference.Predictor` from the parent's settings once; if that fails (a corrupt
checkpoint, a bad setting), the error comes back with the first file and is raised in the parent, as building the
predictor there would have. Files are handed out longest first (by duration from the file header, else size on
disk; FLAC sizes misorder songs of equal length by up to 20 %) so the last file does not run alone; results come
in input order, or as they finish. A bad input comes back as ``InputError`` for that file only. Nothing here
imports torch: that happens in the workers.
"""
from __future__ import annotations

import os
from pathlib import Path

from hkdsme.pipeline.signals import on_terminate

_WORKER = None
_FAILED = None        # the exception that stopped this worker's Predictor, sent back instead of each result


def _init(spec: dict, threads: int) -> None:
    global _WORKER, _FAILED
    os.environ["OMP_NUM_THREADS"] = str(threads)      # read by runtime.configure_threads in Predictor
    import torch

    torch.set_num_threads(threads)
    from hkdsme.evaluate.inference import Predictor
    from hkdsme.model import runtime

    runtime.keep_freed_memory()       # a worker is our own process (runtime.keep_freed_memory)

    try:
        _WORKER = Predictor(**spec)
    except Exception as e:  # noqa: BLE001 — not swallowed: re-raised by the parent (predict_parallel)
        _FAILED = _picklable(e)


def _picklable(e: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(e).__name__}: {e}")


def _one(path: str, want_spec: bool, want_conf: bool = False):
    from hkdsme.pipeline.errors import InputError

    if _FAILED is not None:
        return "fatal", _FAILED
    try:
        return "ok", _WORKER.predict_file(path, return_confidence=want_conf, return_spectrum=want_spec)
    except InputError as e:
        return "error", e.reason


def _longest_first(paths) -> list[int]:
    """Indices of ``paths`` by decreasing duration (soundfile reads it from the header), or by decreasing size
    on disk if any duration is unknown (a format soundfile cannot open, a missing file)."""
    import soundfile as sf

    def size(p) -> int:
        try:
            return Path(p).stat().st_size
        except OSError:
            return 0

    try:
        keys = [sf.info(str(p)).duration for p in paths]
    except Exception:  # noqa: BLE001 — any unreadable header: fall back to sizes for all (one unit)
        keys = [size(p) for p in paths]
    return sorted(range(len(paths)), key=lambda i: -keys[i])


_POOL: dict = {}


def _executor(spec: dict, jobs: int, threads: int):
    """This module's own loky executor (not joblib's global reusable one, which joblib's own Parallel reuses and
    would get our initializer); kept for the next call with the same settings and the same checkpoint file
    (path and modification time: a rewritten checkpoint gets fresh workers), replaced otherwise."""
    from joblib.externals.loky import ProcessPoolExecutor

    try:
        stamp = os.stat(spec.get("checkpoint") or "").st_mtime_ns
    except OSError:
        stamp = None
    key = (repr(sorted(spec.items())), stamp, jobs, threads)
    if _POOL.get("key") != key:
        _drop_pool()
        _POOL.update(key=key, pool=ProcessPoolExecutor(max_workers=jobs, initializer=_init, initargs=(spec, threads)))
    return _POOL["pool"]


def _drop_pool(kill: bool = False) -> None:
    old = _POOL.pop("pool", None)
    _POOL.pop("key", None)
    if old is not None:
        old.shutdown(wait=False, kill_workers=kill)


@on_terminate
def _kill_pool() -> None:
    """SIGTERM / SIGHUP (:mod:`hkdsme.pipeline.signals`): end the workers now, whatever they are running."""
    _drop_pool(kill=True)


def predict_parallel(spec: dict, paths, jobs: int, threads: int, *, return_confidence: bool = False,
                     return_spectrum: bool = False, ordered: bool = True):
    """Yield ``(i, paths[i], result or InputError)`` for every path, computed by ``jobs`` worker processes with
    ``threads`` torch threads each: in input order, or with ``ordered=False`` as files finish.

    ``spec``: the keyword arguments of the workers' ``Predictor``; results as :meth:`Predictor.predict_file`'s
    with ``return_confidence`` / ``return_spectrum``. An error building it is raised here.
    """
    from concurrent.futures import as_completed

    from hkdsme.pipeline.errors import InputError

    paths = list(paths)
    pool = _executor(spec, jobs, threads)
    futures = {i: pool.submit(_one, str(paths[i]), return_spectrum, return_confidence)
               for i in _longest_first(paths)}
    index = {f: i for i, f in futures.items()}
    try:
        for f in (as_completed(list(futures.values())) if not ordered else (futures[i] for i in range(len(paths)))):
            i = index[f]
            del futures[i]
            status, value = f.result()
            if status == "fatal":          # the workers could not build their predictor: none will
                _drop_pool()
                raise value
            yield i, paths[i], (value if status == "ok" else InputError(paths[i], value))
    except SystemExit:                       # terminated (SIGTERM / SIGHUP, pipeline.signals): workers end now
        _drop_pool(kill=True)
        raise
    finally:
        for f in futures.values():           # the caller stopped early (or a fatal error): do not leave files queued
            f.cancel()
