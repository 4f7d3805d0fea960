"""Weak labels: karaoke notes turned into frame f0 labels with a teacher's help.

An UltraStar note says *which semitone* is sung and roughly *when* (:mod:`hkdsme.pipeline.ultrastar`), not the
sung f0: no vibrato, no glides, no tuning drift, and the singer often holds through the short gaps the file
leaves between notes. Trained on as they are, notes would teach a staircase. Here a teacher (any checkpoint or
fused ensemble, e.g. ``hkdsme-mir1k.pt*0.5+msnet-vocal.pt*0.5``) supplies the fine pitch and the note supplies
the rest, frame by frame on the 10 ms grid (``p`` = the teacher's melody posterior over rows 0..320, row 0 =
unvoiced, row ``k`` = ``31 · 2^(k/60)`` Hz; ``r(f) = 60 · log2(f / 31)``; ``W`` = ``window_cents / 20`` rows)::

    inside a note of pitch f:     voiced; f0 = Hz of the teacher's best row k* = argmax_{k≥1} p[k] if
                                  |k* − r(f)| ≤ W (it hears the note), else f (the written note)
    in a short gap (< 0.3 s)      voiced iff 1 − p[0] ≥ θ and the teacher's best row k* = argmax_{k≥1} p[k]
      between two notes:          is within W rows of the note before or after it; then f0 = Hz of k*
    elsewhere:                    unvoiced

So the teacher can never move a label off the written note by more than the window (its octave and
accompaniment errors are cut off) and the notes' staircase is replaced by the sung pitch wherever the teacher
hears it within a semitone; where it does not (a buried voice, a teacher tracking the band), the written note
is the label, as close to the truth as the note file is. The confidence column of the written label file
is the teacher's posterior mass inside the window (note frames) or its voicing ``1 − p[0]`` (gap frames).

``hkd-prep weak-labels`` writes ``<out>/<song>.f0.csv`` for the songs of a split; ``hkd-prep extract --dataset
ultrastar --labels <out>`` then trains on them instead of the notes. The dev split is for selection only and
is refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError

WINDOW_CENTS = 100.0     # the teacher may move a label at most a semitone off the written note
VOICING_THRESHOLD = 0.5  # θ for voicing a short gap between notes
LABEL_SUFFIX = ".f0.csv"


def _rows(hz: np.ndarray) -> np.ndarray:
    """Unrounded pitch row ``60 · log2(f / 31)`` of each positive ``hz`` (NaN elsewhere)."""
    hz = np.asarray(hz, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hz > 0, grid.BINS_PER_OCTAVE * np.log2(hz / grid.FMIN), np.nan)


def _fill(f0: np.ndarray, backward: bool) -> np.ndarray:
    """Each frame's nearest voiced ``f0`` before it (or after it with ``backward``); 0 where there is none."""
    x = f0[::-1] if backward else f0
    idx = np.where(x > 0, np.arange(x.size), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, x[np.maximum(idx, 0)], 0.0)
    return out[::-1] if backward else out


def refine_notes(note_f0, probs, *, window_cents: float = WINDOW_CENTS, threshold: float = VOICING_THRESHOLD,
                 gap_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame labels ``(f0, confidence)`` from rendered notes and a teacher posterior (module docstring).

    ``note_f0``: (T,) Hz of the written notes on the 10 ms grid (0 between notes), e.g.
    :func:`hkdsme.pipeline.ultrastar.note_f0`; ``probs``: (321, T) melody posterior of the teacher on the same
    frames (each column sums to 1). ``gap_s``: the longest gap between notes the teacher may voice (default
    :data:`hkdsme.pipeline.ultrastar.GAP_S`, 0.3 s).
    """
    from hkdsme.pipeline.ultrastar import GAP_S, note_gap_mask

    f_note = np.asarray(note_f0, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != grid.N_BINS or p.shape[1] != f_note.size:
        raise ValueError(f"expected a ({grid.N_BINS}, {f_note.size}) posterior for {f_note.size} frames, "
                         f"got {p.shape}")
    if not (np.isfinite(p).all() and np.isfinite(f_note).all()) or (p < 0).any():
        raise ValueError("posterior and notes must be finite, the posterior non-negative")
    if not (np.isfinite(window_cents) and window_cents > 0):
        raise ValueError(f"window_cents must be a positive number, got {window_cents!r}")
    w = window_cents / (1200.0 / grid.BINS_PER_OCTAVE)
    rows = np.arange(1, grid.N_BINS, dtype=np.float64)[:, None]        # (320, 1): rows 1..320
    pitch = p[1:]                                                       # (320, T)
    f0 = np.zeros(f_note.size)
    conf = np.zeros(f_note.size)

    sung = f_note > 0
    if sung.any():
        r_note = _rows(f_note[sung])
        inside = np.abs(rows - r_note[None, :]) <= w + 1e-9                  # (320, n) window around each note
        k_star = pitch[:, sung].argmax(axis=0) + 1.0
        hears = np.abs(k_star - r_note) <= w + 1e-9
        f0[sung] = np.where(hears, grid.bin_to_hz(k_star), f_note[sung])
        conf[sung] = np.where(inside, pitch[:, sung], 0.0).sum(axis=0)

    gaps = note_gap_mask(grid.frame_times(f_note.size), f_note, GAP_S if gap_s is None else gap_s) \
        if f_note.size else np.zeros(0, bool)
    if gaps.any():
        k_star = pitch[:, gaps].argmax(axis=0) + 1.0
        voicing = 1.0 - p[0, gaps]
        near = np.zeros(k_star.size, bool)
        for nb in (_fill(f_note, False)[gaps], _fill(f_note, True)[gaps]):
            near |= np.abs(k_star - _rows(nb)) <= w + 1e-9
        on = near & (voicing >= threshold)
        g = np.flatnonzero(gaps)
        f0[g[on]] = grid.bin_to_hz(k_star[on])
        conf[g] = voicing
    return f0, conf


def posteriors(net, feats: np.ndarray, *, batch: int = 16) -> np.ndarray:
    """(321, T) melody posterior of a network (or :class:`~hkdsme.model.ensemble.TeacherEnsemble`) on normalised
    CFP ``feats`` (3, 320, T), in fp32, 64-frame segments, the tail zero-padded and dropped."""
    import torch

    feats = np.asarray(feats, dtype=np.float32)
    t = feats.shape[-1]
    n_seg = -(-t // grid.SEG_LEN)
    padded = np.zeros((3, grid.N_FREQ, n_seg * grid.SEG_LEN), np.float32)
    padded[:, :, :t] = feats
    segs = padded.reshape(3, grid.N_FREQ, n_seg, grid.SEG_LEN).transpose(2, 0, 1, 3)
    out = np.empty((grid.N_BINS, n_seg * grid.SEG_LEN), np.float32)
    with torch.inference_mode():
        for s in range(0, n_seg, batch):
            logits = net(torch.from_numpy(np.ascontiguousarray(segs[s:s + batch]))).logits[:, 0].float()
            p = torch.softmax(logits, dim=1)                              # (b, 321, 64)
            out[:, s * grid.SEG_LEN:(s + p.shape[0]) * grid.SEG_LEN] = \
                p.permute(1, 0, 2).reshape(grid.N_BINS, -1).numpy()
    return out[:, :t]


def load_teacher(spec: str):
    """A network for a checkpoint path or a fused ensemble spec ``A.pt*w+B.pt*w`` (eval mode, fp32)."""
    from hkdsme.model.checkpoint import load_checkpoint
    from hkdsme.model.ensemble import is_ensemble_spec, load_ensemble

    if is_ensemble_spec(spec):
        net = load_ensemble(spec, expected_feature_hash=grid.feature_hash())
    else:
        net, _ = load_checkpoint(spec, expected_feature_hash=grid.feature_hash())
    if getattr(net, "heads", False):
        net.heads = False
    return net.eval()


def track_labels(track, net, *, window_cents: float = WINDOW_CENTS) -> dict:
    """Weak labels of one ``ultrastar`` track: ``times, f0, confidence`` plus per-song diagnostics
    (``agree``: share of note frames where the teacher hears the note, its best row inside the window; ``moved``: mean
    |label − note| in cents over note frames; ``gap_voiced``: share of short-gap frames voiced)."""
    from hkdsme.pipeline.cfp import cfp
    from hkdsme.pipeline.ultrastar import note_f0, note_gap_mask, parse_ultrastar, resolve_track, shift_notes

    audio = track.load_audio()
    notes = parse_ultrastar(track.label_path)[1]
    res = resolve_track(track, audio=audio, notes=notes)
    feats = cfp(audio)
    times = grid.frame_times(feats.shape[-1])
    f_note = note_f0(shift_notes(notes, res.offset_s, res.octave), times)
    p = posteriors(net, feats)
    f0, conf = refine_notes(f_note, p, window_cents=window_cents)
    sung = f_note > 0
    k_star = p[1:, sung].argmax(axis=0) + 1.0
    gaps = note_gap_mask(times, f_note)
    gap = gaps & (f0 > 0)
    return dict(times=times, f0=f0, confidence=conf, offset_s=res.offset_s, octave=res.octave,
                agree=float(np.mean(np.abs(k_star - _rows(f_note[sung])) <= window_cents / 20 + 1e-9)) if sung.any()
                else float("nan"),
                moved=float(np.mean(np.abs(1200 * np.log2(f0[sung] / f_note[sung])))) if sung.any() else float("nan"),
                gap_voiced=float(gap.sum() / max(gaps.sum(), 1)))


def write_weak_labels(tracks, teacher_spec: str, out, *, window_cents: float = WINDOW_CENTS, echo=print,
                      progress: bool = True) -> dict:
    """Write ``<out>/<track id>.f0.csv`` (:func:`hkdsme.pipeline.f0_tracker.write_f0_csv`, atomic) for each
    ``ultrastar`` track; a track that fails is reported with one line naming its file and skipped.
    Returns ``{"done": [...], "failed": [(id, reason)], "rows": [per-song diagnostics]}``."""
    from tqdm import tqdm

    from hkdsme.pipeline.f0_tracker import write_f0_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = load_teacher(teacher_spec)
    done, failed, rows = [], [], []
    for tr in tqdm(tracks, desc="weak labels", unit="song", disable=not progress):
        try:
            r = track_labels(tr, net, window_cents=window_cents)
        except InputError as e:
            failed.append((tr.track_id, str(e)))
            echo(f"skipped: {e}")
            continue
        write_f0_csv(out / f"{tr.track_id}{LABEL_SUFFIX}", r["times"], r["f0"], r["confidence"])
        done.append(tr.track_id)
        rows.append(dict(song=tr.track_id, **{k: r[k] for k in ("offset_s", "octave", "agree", "moved", "gap_voiced")},
                         voiced=float(np.mean(r["f0"] > 0))))
    return dict(done=done, failed=failed, rows=rows)
