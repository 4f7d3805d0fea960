"""Melody metrics: thin, validated wrappers over ``mir_eval.melody.evaluate`` (docs/method.md §5).

With ``ref_v``/``est_v`` the voicing (f > 0) of each reference frame (after mir_eval resamples the estimate onto
the reference times) and ``c = 1200 log2(|f| / 10 Hz)`` the pitch in cents (0 when f = 0)::

    VR  = Σ est_v·ref_v / Σ ref_v                       (voicing recall)
    VFA = Σ est_v·(1-ref_v) / Σ (1-ref_v)               (voicing false alarm)
    RPA = Σ ref_v·[c_est ≠ 0 and |c_ref - c_est| < 50] / Σ ref_v
    RCA = RPA with the difference folded to the nearest octave: |d - 1200·floor(d/1200 + 0.5)| < 50
    OA  = (Σ ref_v·est_v·pitch_ok + Σ (1-ref_v)·(1-est_v)) / n_frames

All scores are returned in percent, as in the HKDSME/FTANet/MSNet evaluation code, and averaged over tracks
as the mean of per-track scores (:func:`mean_scores`).
"""
from __future__ import annotations

import warnings

import numpy as np

from hkdsme.pipeline.labels import check_contour

METRICS = ("VR", "VFA", "RPA", "RCA", "OA")
_MIR_EVAL_NAMES = {
    "VR": "Voicing Recall",
    "VFA": "Voicing False Alarm",
    "RPA": "Raw Pitch Accuracy",
    "RCA": "Raw Chroma Accuracy",
    "OA": "Overall Accuracy",
}


def melody_scores(ref_time, ref_freq, est_time, est_freq, *, path=None) -> dict[str, float]:
    """VR, VFA, RPA, RCA, OA in percent for one track (formulas in the module docstring).

    Inputs are validated first (1-D, equal lengths per pair, finite, non-negative non-decreasing times) and
    raise :class:`InputError` naming ``path`` (the track, when given) and the faulty series. The estimate is
    resampled onto the reference times by mir_eval (linear for f0, nearest-previous for voicing).
    """
    import mir_eval

    rt, rf = check_contour(ref_time, ref_freq, what="reference", path=path, strict=False)
    et, ef = check_contour(est_time, est_freq, what="estimate", path=path, strict=False)
    with warnings.catch_warnings():
        # mir_eval warns (and returns 0) for a reference without voiced or without unvoiced frames;
        # that is a legitimate property of a track, not something to print per file.
        warnings.simplefilter("ignore")
        scores = mir_eval.melody.evaluate(rt, rf, et, ef)
    return {k: 100.0 * float(scores[name]) for k, name in _MIR_EVAL_NAMES.items()}


def mean_scores(per_track) -> dict[str, float]:
    """Mean of each metric over tracks (every track weighs the same, whatever its length)."""
    per_track = list(per_track)
    if not per_track:
        raise ValueError("mean_scores: no tracks to average")
    return {k: float(np.mean([s[k] for s in per_track])) for k in METRICS}
