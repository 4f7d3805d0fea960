"""Checks of a resolved `hkd-train` config that need no data, done before any work (hkdsme.train.cli).

- :func:`prepare_out`: a run folder that already holds a run is never silently overwritten (its ``best.pt``
  replaced, its ``metrics.jsonl`` mixing two runs' epochs): continue it with ``--resume``, or start over with
  ``--force``, which deletes the old run's outputs first.
- :func:`check_checkpoints`: ``--teacher`` must be a teacher checkpoint (or, with ``--student-teacher``, any
  checkpoint with the 4-class output) and ``--init`` one of the kind (and
  output shape) being trained, read from the checkpoint's metadata only (no network is built).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from hkdsme.model.checkpoint import read_meta
from hkdsme.pipeline.errors import InputError

RUN_MARKERS = ("last.pt", "best.pt", "metrics.jsonl")     # any of these: the folder holds a run
RUN_OUTPUTS = ("last.pt", "best.pt", "metrics.jsonl", "train.log", "config.toml", "config.json", "tb")
KIND_OF = {"teacher": "teacher", "distill": "student"}     # command → network it trains


def existing_run(run_dir) -> list[str]:
    """Names of the run outputs in ``run_dir`` that mark it as holding a run (empty for a new folder)."""
    run_dir = Path(run_dir)
    return [n for n in RUN_MARKERS if (run_dir / n).exists()]


def prepare_out(cfg: dict, *, resume: bool, force: bool, main: bool = True) -> None:
    """Refuse to start a fresh run in a folder holding one unless ``force``; with ``force`` delete the old
    run's checkpoints, metrics, log, saved config and TensorBoard folder (on the main process only).

    The teacher cache (``teacher_cache.h5``) is kept: it is keyed by teacher and data and reused only when
    both match.
    """
    out = cfg.get("out")
    if not out:
        return                       # the trainer reports the missing --out
    if resume and force:
        raise InputError(None, "--resume and --force contradict each other: --resume continues the run in "
                               f"{out}, --force deletes it and starts over")
    if resume:
        return
    found = existing_run(out)
    if not found:
        return
    if not force:
        raise InputError(out, f"holds a run ({', '.join(found)}): continue it with --resume, or start over "
                              "with --force (deletes its checkpoints and metrics)")
    if main:
        run = Path(out)
        for name in RUN_OUTPUTS:
            p = run / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()


def check_checkpoints(command: str, cfg: dict) -> None:
    """Kinds (and, for ``--init``, output shape) of the checkpoints a run will read; InputError naming the file."""
    kind = KIND_OF[command]
    if command == "distill" and cfg.get("kd"):
        for spec in (cfg.get("teacher") or "", cfg.get("pool_teacher") or ""):
            if spec and spec != "random":
                _check_teacher_spec(spec, bool(cfg.get("student_teacher")))
    init = cfg.get("init") or ""
    if init:
        meta = read_meta(init, expected_kind=kind)
        want = 4 if cfg.get("harmonic", True) else 1
        melody_into_student = kind == "student" and meta["n_classes"] == 1   # MSNet vocal → channel 0
        if meta["n_classes"] != want and not melody_into_student:
            raise InputError(init, f"--init checkpoint has {meta['n_classes']} output classes, this run trains "
                                   f"{want} ({'--harmonic' if want == 4 else '--no-harmonic'})")


def _check_teacher_spec(teacher: str, student_teacher: bool) -> None:
    """A teacher checkpoint, any 4-class checkpoint with ``student_teacher``, or an ensemble spec whose members
    (of any kind, e.g. ftanet + the one-channel MSNet vocal) include one with the 4-class harmonic output."""
    from hkdsme.model.ensemble import is_ensemble_spec, parse_spec

    if is_ensemble_spec(teacher):
        try:
            members = parse_spec(teacher)
        except ValueError as e:
            raise InputError(None, str(e)) from None
        if max(read_meta(p)["n_classes"] for p, _ in members) != 4:
            raise InputError(None, f"ensemble teacher {teacher!r}: no member has the 4-class harmonic output")
    elif student_teacher:
        # any network with the 4-class harmonic output can teach (e.g. the best supervised student)
        meta = read_meta(teacher)
        if meta["n_classes"] != 4:
            raise InputError(teacher, f"a teacher needs the 4-class harmonic output, this checkpoint has "
                                      f"{meta['n_classes']}")
    else:
        read_meta(teacher, expected_kind="teacher")
