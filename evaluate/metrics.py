"""Melody metrics: thin, validated wrappers over ``mir_eval.melody.evaluate`` (docs/method.md §5).

With ``ref_v``/``est_v`` the voicing (f > 0) of each reference frame (after mir_eval resamples the estimate onto
the reference times) and ``c = 1200 log2(|f| / 10 Hz)`` the pitch in cents (0 when f = 0)::

    VR  = Σ est_v·ref_v / Σ ref_v                       (voicing recall)
    VFA = Σ est_v·(1-ref_v) / Σ (1-ref_v)               (voicing false alarm)
    RPA = Σ ref_v·[c_est ≠ 0 and |c_ref - c_est| < tol] / Σ ref_v
    RCA = RPA with the difference folded to the nearest octave: |d - 1200·floor(d/1200 + 0.5)| < tol
    OA  = (Σ ref_v·est_v·pitch_ok + Σ (1-ref_v)·(1-est_v)) / n_frames
    OAc = (Σ ref_v·est_v·chroma_ok + Σ (1-ref_v)·(1-est_v)) / n_frames     (chroma overall accuracy)

with ``tol`` the cent tolerance (50 by default, the MIREX/literature value; note-level references such as
karaoke notes are scored at 100, docs/real_mix_dev.md) and ``chroma_ok`` RCA's octave-folded test, so an
octave error counts as right in OAc and wrong in OA. OAc is not a mir_eval metric: it is OA with RCA's
comparison, computed on the same mir_eval-resampled arrays. With ``exclude`` (a boolean mask over the reference
frames, e.g. the short note gaps of karaoke references, :func:`hkdsme.pipeline.ultrastar.note_gap_mask`) the
excluded frames are dropped from all four resampled arrays before every sum above, i.e. they count nowhere,
numerators or denominators. All scores are returned in percent, as in the
HKDSME/FTANet/MSNet evaluation code, and averaged over tracks as the mean of per-track scores
(:func:`mean_scores`).
"""
from __future__ import annotations

import warnings

import numpy as np

from hkdsme.pipeline.errors import InputError
from hkdsme.pipeline.labels import check_contour

METRICS = ("VR", "VFA", "RPA", "RCA", "OA")           # the literature's five, returned by default
ALL_METRICS = METRICS + ("OAc",)                       # + chroma overall accuracy (note-level references)
DEFAULT_CENT_TOLERANCE = 50.0


def melody_scores(ref_time, ref_freq, est_time, est_freq, *, path=None, cent_tolerance: float = DEFAULT_CENT_TOLERANCE,
                  metrics=METRICS, exclude=None) -> dict[str, float]:
    """``metrics`` (default VR, VFA, RPA, RCA, OA; any of :data:`ALL_METRICS`) in percent for one track, pitch
    within ``cent_tolerance`` cents (formulas in the module docstring).

    Inputs are validated first (1-D, equal lengths per pair, finite, non-negative non-decreasing times) and
    raise :class:`InputError` naming ``path`` (the track, when given) and the faulty series. The estimate is
    resampled onto the reference times by mir_eval (``melody.to_cent_voicing``: linear for f0,
    nearest-previous for voicing); VR…OA are mir_eval's functions on those arrays (as ``melody.evaluate``).

    ``exclude``: None, or a boolean array with one entry per reference frame, True = not scored. The frames are
    removed from mir_eval's resampled arrays (the estimate is still resampled from its own times, so the excluded
    span is simply not looked at); the frame mir_eval inserts at t = 0 when the reference starts later copies
    frame 0, its exclusion too. Excluding every frame is an error.
    """
    from mir_eval import melody

    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(ALL_METRICS)}")
    tol = float(cent_tolerance)
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"cent tolerance must be a positive number, got {cent_tolerance!r}")
    rt, rf = check_contour(ref_time, ref_freq, what="reference", path=path, strict=False)
    et, ef = check_contour(est_time, est_freq, what="estimate", path=path, strict=False)
    keep = None
    if exclude is not None:
        ex = np.asarray(exclude)
        if ex.dtype != bool or ex.shape != rt.shape:
            raise ValueError(f"exclude must be a boolean array with one entry per reference frame ({rt.size}), got "
                             f"{ex.dtype} of shape {ex.shape}")
        if ex.all():
            raise InputError(path, "every reference frame is excluded from scoring")
        keep = np.concatenate([ex[:1], ex]) if rt[0] > 0 else ex   # mirror mir_eval's inserted frame at t = 0
        keep = ~keep
    with warnings.catch_warnings():
        # mir_eval warns (and returns 0) for a reference without voiced or without unvoiced frames;
        # that is a legitimate property of a track, not something to print per file.
        warnings.simplefilter("ignore")
        rv, rc, ev, ec = melody.to_cent_voicing(rt, rf, et, ef)
        if keep is not None:
            rv, rc, ev, ec = rv[keep], rc[keep], ev[keep], ec[keep]
        fns = {
            "VR": lambda: melody.voicing_recall(rv, ev),
            "VFA": lambda: melody.voicing_false_alarm(rv, ev),
            "RPA": lambda: melody.raw_pitch_accuracy(rv, rc, ev, ec, cent_tolerance=tol),
            "RCA": lambda: melody.raw_chroma_accuracy(rv, rc, ev, ec, cent_tolerance=tol),
            "OA": lambda: melody.overall_accuracy(rv, rc, ev, ec, cent_tolerance=tol),
            "OAc": lambda: chroma_overall_accuracy(rv, rc, ev, ec, cent_tolerance=tol),
        }
        return {m: 100.0 * float(fns[m]()) for m in metrics}


def chroma_overall_accuracy(ref_voicing, ref_cent, est_voicing, est_cent, cent_tolerance: float = 50.0) -> float:
    """OAc as a fraction, on ``mir_eval.melody.to_cent_voicing`` arrays: ``mir_eval.melody.overall_accuracy``
    with its pitch test replaced by ``raw_chroma_accuracy``'s octave-folded one (same reference weighting, same
    ``<`` comparison); 0 for empty input, as mir_eval."""
    rv, rc = np.asarray(ref_voicing, dtype=np.float64), np.asarray(ref_cent, dtype=np.float64)
    ev, ec = np.asarray(est_voicing, dtype=np.float64), np.asarray(est_cent, dtype=np.float64)
    if rv.size == 0 or ev.size == 0 or rc.size == 0 or ec.size == 0:
        return 0.0
    nonzero = (ec != 0) & (rc != 0)
    d = np.abs(rc - ec)[nonzero]
    chroma_ok = np.abs(d - 1200.0 * np.floor(d / 1200.0 + 0.5)) < cent_tolerance
    ref_binary = (rv > 0).astype(np.float64)
    ratio = 0.0 if rv.sum() == 0 else ref_binary.sum() / rv.sum()
    hits = ratio * np.sum(rv[nonzero] * ev[nonzero] * chroma_ok) + np.sum((1.0 - ref_binary) * (1.0 - ev))
    return float(hits / rv.size)


def mean_scores(per_track, metrics=METRICS) -> dict[str, float]:
    """Mean of each of ``metrics`` over tracks (every track weighs the same, whatever its length); other keys of
    the per-track dicts (e.g. a track name) are ignored."""
    per_track = list(per_track)
    if not per_track:
        raise ValueError("mean_scores: no tracks to average")
    return {k: float(np.mean([s[k] for s in per_track])) for k in metrics}
