"""Many audio files → one melody file each: the third rung of the inference ladder (re-exported by
:mod:`hkdsme.evaluate.inference` as ``predict_from_files_to_files``).

Outputs are checked before any work (an existing file without ``overwrite``, a read-only folder), each result is
written atomically as soon as it is ready, and a bad input costs only its own output. Where the files go to
worker processes (``jobs > 1`` on a CPU, :mod:`hkdsme.evaluate.parallel`) and no ``predictor`` is passed, this
process never loads torch or a network: it resolves the checkpoint, hands out the files and writes what comes
back (the workers build the network). On a 2-core CPU that saves the 1.3–1.5 s of one core that importing torch
and loading the model here would cost before any worker could start (docs/benchmarks.md).
"""
from __future__ import annotations

import os
from pathlib import Path

from hkdsme.pipeline.errors import InputError, display


def format_of(path) -> str:
    """Melody format of an output name: ``.jams`` → jams, ``.txt`` → mirex, anything else → csv."""
    name = Path(path).name.lower()
    return "jams" if name.endswith(".jams") else "mirex" if name.endswith(".txt") else "csv"


# the network settings and their defaults: a caller passes these or a loaded predictor, never both
SETTINGS = dict(checkpoint=None, device="cpu", batch_size=None, precision="auto", decode="voicing",
                voicing_threshold=None, model=None)


def check_network(predictor, settings: dict) -> None:
    """ValueError if both a loaded ``predictor`` and any network setting other than its default (:data:`SETTINGS`)
    are given: the loaded network already fixes them, so they would be ignored."""
    given = [k for k, v in settings.items() if v != SETTINGS[k]]
    if predictor is not None and given:
        raise ValueError(f"pass a loaded predictor or the network settings, not both (got a predictor and "
                         f"{', '.join(given)})")


def predict_from_files_to_files(paths, outputs, checkpoint=None, device="cpu", batch_size: int | None = None,
                                precision: str = "auto", decode: str = "voicing",
                                voicing_threshold: float | None = None, model: str | None = None, *,
                                fmt: str | None = None, confidence: bool = False, plots=None,
                                overwrite: bool = True, predictor=None, prefetch: bool = True, jobs: int = 1,
                                on_result=None) -> tuple[dict, dict]:
    """Melody of each audio file ``paths[i]`` written to ``outputs[i]`` (atomically).

    ``fmt``: csv, mirex or jams; None → from each output's name (:func:`format_of`). ``confidence``: also write
    the per-frame voicing probability ``1 − p(unvoiced)`` (a ``confidence`` column in csv, the ``confidence``
    field in jams; mirex has no place for it: ValueError). ``plots``: None, or one PNG path per input (contour
    over the CFP spectrum, confidence lane below). ``overwrite=False`` refuses an output that already exists.
    A bad input (missing, undecodable, silent, too short) or an output that cannot be written (existing with
    ``overwrite=False``, read-only folder, a file where a folder should be) is recorded with a one-line reason
    and the other files still run. ``on_result(path, output or None, reason or None)`` is called after each file,
    in the order files finish. ``jobs``: worker processes for the files (same results as one process).
    The network: the settings ``checkpoint`` … ``model`` (as :func:`~hkdsme.evaluate.inference.extract_melody`),
    or ``predictor``, a loaded :class:`~hkdsme.evaluate.inference.Predictor` — not both (ValueError).

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
    if confidence and any((fmt or format_of(o)) == "mirex" for o in outputs):
        raise ValueError("the mirex format has no confidence column (time and f0 only); use csv or jams")
    settings = dict(checkpoint=checkpoint, device=device, batch_size=batch_size, precision=precision,
                    decode=decode, voicing_threshold=voicing_threshold, model=model)
    check_network(predictor, settings)
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
    want_conf = confidence or plots is not None                    # the plot draws the confidence lane
    for k, path, res in _results([paths[i] for i in todo], plots is not None, want_conf, predictor, settings,
                                 prefetch, jobs):
        i = todo[k]
        out, why = outputs[i], None
        if isinstance(res, InputError):
            out, why = None, res.reason
        else:
            conf = res[2] if want_conf else None
            why = _write_outputs(out, plots[i] if plots is not None else None, res, fmt or format_of(out), path,
                                 overwrite, conf if confidence else None, conf)
            out = None if why else out
        done[i] = (out, why)
        if on_result:
            on_result(path, out, why)
    written = {paths[i]: done[i][0] for i in sorted(done) if done[i][0] is not None}
    failed = {paths[i]: done[i][1] for i in sorted(done) if done[i][0] is None}
    return written, failed


def _write_outputs(out: Path, plot: Path | None, res, fmt: str, path: Path, overwrite: bool,
                   confidence=None, lane=None) -> str | None:
    """Write the melody file (with ``confidence`` as a column if given) and its plot (``lane``: the confidence
    drawn under the contour) of one result ``(times, f0[, confidence][, spectrum])``; the reason it failed, or None.

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
            write_melody(tmps[0], times, f0, fmt, confidence=confidence, source=display(path.name))
            if plot is not None:
                from hkdsme.evaluate.plots import plot_track

                current = plot
                plot_track(tmps[1], res[-1], {"estimate": (times, f0)}, confidence=(times, lane),
                           title=display(path.name))
            current = None                                   # publishing: the error names the output concerned
    except OSError as e:
        if current is None:
            named = {str(t): d for t, d in zip(tmps, dests)}
            current = next((named.get(str(f), Path(f)) for f in (e.filename2, e.filename) if f), out)
        if isinstance(e, FileExistsError):
            return f"{current} exists (written by another run meanwhile): not overwritten (pass --overwrite to replace it)"
        return f"cannot write {current}: {_os_reason(e)}"
    return None


def _results(paths, want_spec: bool, want_conf: bool, predictor, settings: dict, prefetch: bool, jobs: int):
    """Yield ``(k, paths[k], result or InputError)`` for every path, in the order they finish; a result is
    ``(times, f0[, confidence][, spectrum])``."""
    from hkdsme.model.runtime import default_threads, device_type

    jobs = min(int(jobs), len(paths))
    if predictor is None and jobs > 1 and device_type(settings["device"]) == "cpu":
        from hkdsme.evaluate.models import resolve_checkpoint
        from hkdsme.evaluate.parallel import predict_parallel

        spec = {k: v for k, v in settings.items() if k != "model"}      # Predictor(**spec) in each worker
        spec["checkpoint"] = str(resolve_checkpoint(settings["checkpoint"], settings["model"]))
        yield from predict_parallel(spec, paths, jobs, max(1, default_threads() // jobs),
                                    return_confidence=want_conf, return_spectrum=want_spec, ordered=False)
        return
    if predictor is None:
        from hkdsme.evaluate.inference import _cached_predictor

        predictor = _cached_predictor(**settings)
    for k, (path, res) in enumerate(predictor.predict_many(paths, return_confidence=want_conf,
                                                           return_spectrum=want_spec, prefetch=prefetch, jobs=jobs)):
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
