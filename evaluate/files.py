"""Many audio files → one melody file each: the third rung of the inference ladder (re-exported by
:mod:`hkdsme.evaluate.inference` as ``predict_from_files_to_files``).

Outputs are checked before any work (an existing file without ``overwrite``, a read-only folder), each result is
written atomically as soon as it is ready, and a bad input costs only its own output. Where the files go to
worker processes (``jobs > 1`` on a CPU, :mod:`hkdsme.evaluate.parallel`) and no ``predictor`` is passed, this
process never loads torch or a network: it resolves the checkpoint, hands out the files and writes what comes
back (the workers build the network). On a 2-core CPU that saves the 1.3–1.5 s of one core that importing torch
and loading the model here would cost before any worker could start (docs/results.md, session 7).
"""
from __future__ import annotations

import os
from pathlib import Path

from hkdsme.pipeline.errors import InputError, display


def format_of(path) -> str:
    """Melody format of an output name: ``.jams`` → jams, ``.txt`` → mirex, anything else → csv."""
    name = Path(path).name.lower()
    return "jams" if name.endswith(".jams") else "mirex" if name.endswith(".txt") else "csv"


def predict_from_files_to_files(paths, outputs, checkpoint=None, device="cpu", batch_size: int | None = None,
                                precision: str = "auto", decode: str = "voicing",
                                voicing_threshold: float | None = None, model: str | None = None, *,
                                fmt: str | None = None, plots=None, overwrite: bool = True, predictor=None,
                                prefetch: bool = True, jobs: int = 1, on_result=None) -> tuple[dict, dict]:
    """Melody of each audio file ``paths[i]`` written to ``outputs[i]`` (atomically).

    ``fmt``: csv, mirex or jams; None → from each output's name (:func:`format_of`). ``plots``: None, or one PNG
    path per input (contour over the CFP spectrum). ``overwrite=False`` refuses an output that already exists.
    A bad input (missing, undecodable, silent, too short) or an output that cannot be written (existing with
    ``overwrite=False``, read-only folder, a file where a folder should be) is recorded with a one-line reason
    and the other files still run. ``on_result(path, output or None, reason or None)`` is called after each file,
    in the order files finish. ``jobs``: worker processes for the files (same results as one process).
    ``predictor``: a loaded :class:`~hkdsme.evaluate.inference.Predictor` to use instead of the other settings.

    Returns ``(written, failed)``: ``{input: output path}`` and ``{input: reason}``, both in input order.
    """
    from hkdsme.evaluate.formats import FORMATS

    paths, outputs = [Path(os.fsdecode(p)) for p in paths], [Path(os.fsdecode(o)) for o in outputs]
    if len(paths) != len(outputs):
        raise ValueError(f"{len(paths)} input(s) but {len(outputs)} output path(s)")
    plots = None if plots is None else [Path(p) for p in plots]
    if plots is not None and len(plots) != len(paths):
        raise ValueError(f"{len(paths)} input(s) but {len(plots)} plot path(s)")
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    settings = dict(checkpoint=checkpoint, model=model, device=device, batch_size=batch_size, precision=precision,
                    decode=decode, voicing_threshold=voicing_threshold)
    done: dict[int, tuple[Path | None, str | None]] = {}          # input index → (output, reason)
    todo = []
    for i, (p, o) in enumerate(zip(paths, outputs)):
        why = _unwritable(o, overwrite) or (_unwritable(plots[i], overwrite) if plots is not None else None)
        if why:
            done[i] = (None, why)
            if on_result:
                on_result(p, None, why)
        else:
            todo.append(i)
    for k, path, res in _results([paths[i] for i in todo], plots is not None, predictor, settings, prefetch, jobs):
        i = todo[k]
        out, why = outputs[i], None
        if isinstance(res, InputError):
            out, why = None, res.reason
        else:
            why = _write_outputs(out, plots[i] if plots is not None else None, res, fmt or format_of(out), path,
                                 overwrite)
            out = None if why else out
        done[i] = (out, why)
        if on_result:
            on_result(path, out, why)
    written = {paths[i]: done[i][0] for i in sorted(done) if done[i][0] is not None}
    failed = {paths[i]: done[i][1] for i in sorted(done) if done[i][0] is None}
    return written, failed


def _write_outputs(out: Path, plot: Path | None, res, fmt: str, path: Path, overwrite: bool) -> str | None:
    """Write the melody file (and its plot) of one result; the reason it failed, or None.

    Both files are finished as temporaries before either is published (:func:`hkdsme.pipeline.atomic.atomic_paths`),
    so a failure leaves neither and a rerun starts clean. Without ``overwrite`` each name is claimed atomically:
    a file that appeared since the check before the run (another predict writing the same name) is kept, and
    this input fails instead of silently replacing it.
    """
    from hkdsme.evaluate.formats import write_melody
    from hkdsme.pipeline.atomic import atomic_paths

    times, f0 = res[0], res[1]
    dests = [out] + ([plot] if plot is not None else [])
    current, tmps = out, []
    try:
        with atomic_paths(dests, overwrite=overwrite) as tmps:
            write_melody(tmps[0], times, f0, fmt, source=display(path.name))
            if plot is not None:
                from hkdsme.evaluate.plots import plot_track

                current = plot
                plot_track(tmps[1], res[2], {"estimate": (times, f0)}, title=display(path.name))
            current = None                                   # publishing: the error names the output concerned
    except OSError as e:
        if current is None:
            named = {str(t): d for t, d in zip(tmps, dests)}
            current = next((named.get(str(f), Path(f)) for f in (e.filename2, e.filename) if f), out)
        if isinstance(e, FileExistsError):
            return f"{current} exists (written by another run meanwhile): not overwritten (pass --overwrite to replace it)"
        return f"cannot write {current}: {_os_reason(e)}"
    return None


def _results(paths, want_spec: bool, predictor, settings: dict, prefetch: bool, jobs: int):
    """Yield ``(k, paths[k], result or InputError)`` for every path, in the order they finish."""
    from hkdsme.model.runtime import default_threads, device_type

    jobs = min(int(jobs), len(paths))
    if predictor is None and jobs > 1 and device_type(settings["device"]) == "cpu":
        from hkdsme.evaluate.models import resolve_checkpoint
        from hkdsme.evaluate.parallel import predict_parallel

        spec = {k: v for k, v in settings.items() if k != "model"}      # Predictor(**spec) in each worker
        spec["checkpoint"] = str(resolve_checkpoint(settings["checkpoint"], settings["model"]))
        yield from predict_parallel(spec, paths, jobs, max(1, default_threads() // jobs),
                                    return_spectrum=want_spec, ordered=False)
        return
    if predictor is None:
        from hkdsme.evaluate.inference import _cached_predictor

        predictor = _cached_predictor(settings["checkpoint"], settings["device"], settings["batch_size"],
                                      settings["precision"], settings["decode"], settings["voicing_threshold"],
                                      settings["model"])
    for k, (path, res) in enumerate(predictor.predict_many(paths, return_spectrum=want_spec, prefetch=prefetch,
                                                           jobs=jobs)):
        yield k, path, res


def _os_reason(e: OSError) -> str:
    """One line for an OSError (no traceback, no errno prefix)."""
    return (e.strerror or str(e)).splitlines()[0] if isinstance(e, OSError) else str(e)


def _unwritable(out: Path, overwrite: bool) -> str | None:
    """Why ``out`` cannot be written (checked before any work), or None."""
    if out.is_dir():
        return f"cannot write {out}: it is a folder"
    if out.exists() and not overwrite:
        return f"{out} exists: not overwritten (pass --overwrite to replace it)"
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot write {out}: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write {out}: folder {folder} is not writable (permission denied)"
    return None
