"""Batch melody files for ``hkd-eval predict``: inputs (files, folders) → output names → melody files.

The inference itself (``Predictor``, the streamed CFP, ``extract_melody`` and the ``predict`` →
``predict_from_file`` → ``predict_from_files_to_files`` ladder) lives in :mod:`hkdsme.evaluate.inference`.
This module adds what the command line needs:
folder expansion (:data:`hkdsme.pipeline.datasets.AUDIO_EXTENSIONS`), output naming
(``<out or the audio's folder>/<stem>.f0.csv``, unique within a batch), the ``--out`` checks and the
no-silent-overwrite rule.
"""
from __future__ import annotations

from pathlib import Path

from hkdsme.evaluate.files import check_network, predict_from_files_to_files
from hkdsme.pipeline.datasets import AUDIO_EXTENSIONS, find_audio
from hkdsme.pipeline.errors import InputError, display

PLOT_SUFFIX = ".f0.png"
OUT_SUFFIX = {"csv": ".f0.csv", "mirex": ".f0.txt", "jams": ".jams"}


def expand_inputs(paths) -> tuple[list[Path], dict[Path, str]]:
    """Files and folders → audio files (folders searched recursively for :data:`AUDIO_EXTENSIONS`, sorted).

    Returns ``(files, failed)``; a folder without audio goes to ``failed``. Plain paths are kept as given
    (a missing file fails later with its own message).
    """
    files, failed = [], {}
    for p in map(Path, paths):
        if p.is_dir():
            found = find_audio(p)
            if not found:
                failed[p] = f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in folder"
            files.extend(found)
        else:
            files.append(p)
    return files, failed


def _unique(path: Path, taken: set) -> Path:
    # two inputs with the same stem (from different folders) must not overwrite each other's output
    out, i = path, 1
    while out in taken:
        i += 1
        stem, _, rest = path.name.partition(".")
        out = path.with_name(f"{stem}-{i}.{rest}")
    taken.add(out)
    return out


def check_out_dir(out_dir, what: str = "--out") -> Path:
    """Make sure ``out_dir`` is (or can become) a writable folder; :class:`InputError` with one line if not."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, f"{what} must be a folder, but this is an existing file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(out, f"cannot create the {what} folder: {e.strerror or e}") from None
    import os

    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(out, f"{what} folder is not writable (permission denied)")
    return out


def output_paths(files, out_dir=None, fmt: str = "csv", plot: bool = False):
    """``(melody outputs, plot outputs or None)`` for ``files``: ``<out_dir or the audio's folder>/<stem><suffix>``,
    made unique within the batch (``<stem>-2…``) so two inputs never share an output."""
    taken, outs = set(), []
    for path in files:
        folder = Path(out_dir) if out_dir is not None else Path(path).parent
        outs.append(_unique(folder / (Path(path).stem + OUT_SUFFIX[fmt]), taken))
    plots = [o.with_name(o.name[: -len(OUT_SUFFIX[fmt])] + PLOT_SUFFIX) for o in outs] if plot else None
    return outs, plots


def predict_files(paths, checkpoint=None, *, out_dir=None, fmt: str = "csv", confidence: bool = False,
                  plot: bool = False, device="cpu", batch_size: int | None = None, precision: str = "auto",
                  decode: str = "voicing", voicing_threshold: float | None = None, predictor=None,
                  progress: bool = True, overwrite: bool = False, model: str | None = None, jobs: int | None = None):
    """Predict every audio file of ``paths`` (folders expanded) and write one melody file each.

    Output: ``<out_dir or the audio's folder>/<stem>.f0.csv`` (``.f0.txt`` for mirex, ``.jams``), with a
    ``confidence`` column (field, in jams) if ``confidence``, plus ``<stem>.f0.png`` with ``plot``. The network:
    the settings ``checkpoint``, ``device`` … ``model``, or a loaded ``predictor``, not both. A bad file (missing, unreadable, silent, too short) or an output that cannot
    be written (already there without ``overwrite``, read-only folder) is recorded and skipped; the others still
    run. ``out_dir`` that is an existing file or not writable: :class:`InputError` before any work.
    ``jobs``: worker processes for the files (None = :func:`hkdsme.model.runtime.inference_jobs`; same output);
    with more than one, this process loads no network (:mod:`hkdsme.evaluate.files`).
    Returns ``(written, failed)``: ``{audio: output path}`` and ``{audio: reason}``, in input order.
    """
    from tqdm import tqdm

    from hkdsme.evaluate.formats import FORMATS

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if confidence and fmt == "mirex":
        raise ValueError("the mirex format has no confidence column (time and f0 only); use csv or jams")
    net = dict(checkpoint=checkpoint, device=device, batch_size=batch_size, precision=precision, decode=decode,
               voicing_threshold=voicing_threshold, model=model)
    check_network(predictor, net)
    if out_dir is not None:
        check_out_dir(out_dir)
    files, failed = expand_inputs(paths)
    outs, plots = output_paths(files, out_dir, fmt, plot)
    if jobs is None:
        from hkdsme.model import runtime

        jobs = runtime.inference_jobs(predictor.device if predictor is not None else device, len(files))
    elif int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if int(jobs) < 2 and predictor is None:     # one process: load the network now (its errors before any file)
        from hkdsme.evaluate.inference import Predictor

        predictor = Predictor(**net)
    if predictor is not None:
        net = {}                                 # the loaded network carries the settings
    bar = tqdm(total=len(files), desc="hkd-eval predict", unit="file", disable=not progress)

    def step(path, out, why):
        if why is not None and progress:
            tqdm.write(display(f"skipped {path}: {why}"))
        bar.update(1)

    try:
        written, more = predict_from_files_to_files(
            files, outs, **net, fmt=fmt, confidence=confidence, plots=plots, overwrite=overwrite,
            predictor=predictor, jobs=int(jobs), on_result=step)
    finally:
        bar.close()
    failed.update(more)
    return written, failed
