"""From network output to an f0 track: the voicing decoder (default) and the paper's argmax.

Voicing decoder (``decode="voicing"``), per frame ``t`` of the melody channel ``p = softmax(logits)[0]``
(321 rows, row 0 = "unvoiced"):

- voicing ``v_t = 1 − p[0, t]``, the total probability of all pitch rows; voiced iff ``v_t ≥ θ``.
  (The argmax lets row 0 win whenever it beats the single best pitch row, even when most of the mass says
  "voiced"; spreading over neighbouring pitch rows is normal, so the argmax under-reports voicing.)
- pitch row ``k* = argmax_{r ≥ 1} p[r, t]``, refined to sub-bin resolution by the probability-weighted mean
  row over ``k* − R … k* + R`` (clipped to 1..320), ``R = REFINE_RADIUS`` (as torchcrepe's weighted argmax);
- Hz: ``31 · 2^(k/60)`` of the refined (fractional) row ``k``; 0 where unvoiced.

``θ`` defaults to 0.5; ``hkd-eval calibrate`` (or training's validation) picks the θ of maximum validation OA
and stores it in the checkpoint (``extra["voicing_threshold"]``), which predict and report then use. ``θ = 0``
calls every frame voiced: the f0 is then the pitch candidate of every frame.

Confidence: ``v_t`` is what the predict ladder returns as the per-frame confidence (``return_confidence=True``,
``hkd-eval predict --confidence``), for either decoder. :func:`apply_voicing_threshold` applies a θ afterwards.

Argmax decoder (``decode="argmax"``, the paper's; also under ``--faithful``):

- bin per frame: ``k = argmax_r probs[0, r, t]`` over the 321 rows of the melody channel (0 = unvoiced);
  logits give the same argmax because the softmax is monotonic per column.
- Hz: ``31 · 2^(k/60)`` as float for ``k ≥ 1``, ``0`` for ``k = 0``. The official ``pred2res`` writes the
  same value into an int64 array, i.e. ``floor``; we keep the float (no 20-cent grid truncation error).

Whole tracks: consecutive 64-frame segments are concatenated and cut to the track's true length;
frame ``i`` is at ``(i + 1) · 10 ms`` (:func:`hkdsme.pipeline.grid.frame_times`).
"""
from __future__ import annotations

import numpy as np
import torch

from hkdsme.pipeline import grid


def bins_from_output(probs_or_logits):
    """(..., C, 321, T) → (..., T) int64 argmax over frequency of channel 0 (torch in → torch, numpy in → numpy).

    Ties resolve to the lowest row (numpy and torch agree on the first maximum).
    """
    a = probs_or_logits
    if a.ndim < 3 or a.shape[-2] != grid.N_BINS:
        raise ValueError(f"expected (..., C, {grid.N_BINS}, T), got {tuple(a.shape)}")
    melody = a[..., 0, :, :]
    if isinstance(a, torch.Tensor):
        return melody.argmax(dim=-2).to(torch.int64)
    return np.asarray(melody).argmax(axis=-2).astype(np.int64)


bins_from_probs = bins_from_output   # name used in docs/contracts.md


bins_to_hz = grid.bin_to_hz           # the one implementation: float Hz of bins, 0 for k <= 0 (numpy or torch)


def decode_track(segment_bins, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole-track f0 from consecutive segments.

    ``segment_bins``: (S, L) bins of S consecutive L-frame segments (L = 64 in training), the last one possibly
    padded; ``n_frames``: true length, ``S·L - L < n_frames ≤ S·L``. Returns ``(times, f0)``: float64 (n_frames,)
    with ``times = grid.frame_times(n_frames)`` and ``f0`` in Hz, 0 = unvoiced.
    """
    b = segment_bins.detach().cpu().numpy() if isinstance(segment_bins, torch.Tensor) else np.asarray(segment_bins)
    if b.ndim != 2:
        raise ValueError(f"segment_bins must be (S, L), got shape {b.shape}")
    s, seg = b.shape
    n_frames = int(n_frames)
    if not (s * seg - seg < n_frames <= s * seg) and not (s == 0 and n_frames == 0):
        raise ValueError(f"{s} segments of {seg} frames cannot hold a track of {n_frames} frames")
    f0 = bins_to_hz(b.reshape(-1)[:n_frames]).astype(np.float64)
    return grid.frame_times(n_frames), f0


decode_segments = decode_track       # name used in docs/contracts.md


# --------------------------------------------------------------------------------------------- voicing decoder
DECODERS = ("voicing", "argmax")
VOICING_THRESHOLD = 0.5     # default θ before calibration
REFINE_RADIUS = 2           # rows either side of the peak in the sub-bin weighted mean (±40 cents)


def check_threshold(theta) -> float:
    """θ as float; ValueError unless ``0 ≤ θ < 1`` (0 calls every frame voiced; 1 would call almost none)."""
    try:
        t = float(theta)
    except (TypeError, ValueError):
        raise ValueError(f"voicing threshold must be a number in [0, 1), got {theta!r}") from None
    if not (0.0 <= t < 1.0):
        raise ValueError(f"voicing threshold must be in [0, 1), got {theta!r}")
    return t


def _melody_probs(a, logits: bool):
    """``(p, numpy_in)``: the melody channel of (..., C, 321, T) ``a`` as float32 torch probabilities (..., 321, T)
    (softmax over rows if ``logits``), and whether ``a`` was numpy."""
    as_numpy = not isinstance(a, torch.Tensor)
    t = torch.from_numpy(np.asarray(a)) if as_numpy else a
    if t.ndim < 3 or t.shape[-2] != grid.N_BINS:
        raise ValueError(f"expected (..., C, {grid.N_BINS}, T), got {tuple(t.shape)}")
    m = t[..., 0, :, :].float()
    return (torch.softmax(m, dim=-2) if logits else m), as_numpy


def voicing_and_pitch(logits_or_probs, *, radius: int = REFINE_RADIUS, logits: bool = True):
    """(..., C, 321, T) network output → ``(voicing, hz)``, each (..., T) torch float32 / float64.

    ``voicing = 1 − p[row 0]`` of the melody channel (``p = softmax`` over rows if ``logits``); ``hz`` is the
    sub-bin refined pitch of the best pitch row (see the module docstring), computed for every frame whether
    voiced or not. Torch in, torch out (numpy in → numpy out).
    """
    p, as_numpy = _melody_probs(logits_or_probs, logits)
    voicing = 1.0 - p[..., 0, :]
    pitch = p[..., 1:, :]                                     # rows 1..320 → index 0..319
    k = pitch.argmax(dim=-2, keepdim=True)                    # (..., 1, T)
    offs = torch.arange(-radius, radius + 1, device=p.device).view(*([1] * (pitch.ndim - 2)), -1, 1)
    idx = (k + offs).clamp(0, grid.N_FREQ - 1)                # (..., 2R+1, T)
    w = pitch.gather(-2, idx)
    inside = ((k + offs) >= 0) & ((k + offs) <= grid.N_FREQ - 1)   # clipped rows do not count twice
    w = w * inside
    row = (w * idx.to(w.dtype)).sum(-2) / w.sum(-2).clamp_min(1e-30) + 1.0   # back to rows 1..320
    hz = grid.FMIN * torch.exp2(row.double() / grid.BINS_PER_OCTAVE)
    if as_numpy:
        return voicing.numpy(), hz.numpy()
    return voicing, hz


def voicing_probability(logits_or_probs, *, logits: bool = True):
    """(..., C, 321, T) network output → (..., T) float32 ``1 − p[row 0]`` of the melody channel (torch or numpy
    like the input): the voicing decoder's ``v`` without the pitch (what the argmax decoder reports as confidence)."""
    p, as_numpy = _melody_probs(logits_or_probs, logits)
    v = 1.0 - p[..., 0, :]
    return v.numpy() if as_numpy else v


def f0_from_voicing(voicing, hz, threshold: float = VOICING_THRESHOLD):
    """``hz`` where ``voicing ≥ θ``, else 0 (float64; numpy or torch like the input)."""
    theta = check_threshold(threshold)
    if isinstance(voicing, torch.Tensor):
        return torch.where(voicing >= theta, hz.double(), torch.zeros_like(hz, dtype=torch.float64))
    return np.where(np.asarray(voicing) >= theta, np.asarray(hz, dtype=np.float64), 0.0)


def apply_voicing_threshold(f0, confidence, threshold: float):
    """The voicing decoder's rule applied afterwards: ``f0`` where ``confidence ≥ θ``, else 0 (float64 numpy).

    ``f0`` and ``confidence`` as the predict ladder returns them with ``return_confidence=True``. The ladder's f0
    is already 0 below the θ it was predicted with (θ₀, the checkpoint's calibrated value unless given), so:

    - ``θ ≥ θ₀`` (fewer voiced frames) works on any such f0: the result equals predicting with ``θ``;
    - ``θ < θ₀`` needs the pitch of the frames θ₀ dropped: predict once with ``voicing_threshold=0`` (every frame
      voiced, f0 = the pitch candidate of every frame); then this gives, for every θ, exactly the f0 that
      predicting with ``voicing_threshold=θ`` gives.

    A frame with ``confidence ≥ θ`` but ``f0 = 0`` has no pitch to give back: :class:`ValueError` (it was dropped
    by a higher θ₀, or decoded by the argmax decoder, whose f0 this rule does not describe). Confidence read back
    from a csv (6 decimals) can differ from the in-memory float32 value by 5e-7, which matters only for a frame
    that close to θ.
    """
    f = np.asarray(f0, dtype=np.float64)
    c = np.asarray(confidence)
    if f.shape != c.shape:
        raise ValueError(f"f0 {f.shape} and confidence {c.shape} differ in shape")
    out = f0_from_voicing(c, f, threshold)
    lost = np.count_nonzero((c >= check_threshold(threshold)) & (f <= 0))
    if lost:
        raise ValueError(f"{lost} frame(s) have confidence >= {threshold} but no pitch (f0 <= 0): they were "
                         "dropped by the threshold used at prediction; predict with voicing_threshold=0 to set "
                         "the threshold afterwards")
    return out


def overall_accuracy(ref_hz, voicing, hz, thresholds) -> np.ndarray:
    """OA (fraction) of ``f0_from_voicing(voicing, hz, θ)`` vs ``ref_hz`` on the same grid, for each θ.

    OA = (frames unvoiced in both + frames voiced in both within 50 cents) / frames — mir_eval's definition
    for estimate and reference on one time grid; vectorised over θ for calibration.
    """
    ref = np.asarray(ref_hz, dtype=np.float64)
    v = np.asarray(voicing, dtype=np.float64)
    h = np.asarray(hz, dtype=np.float64)
    ref_v = ref > 0
    close = np.zeros_like(ref_v)
    ok = ref_v & (h > 0)
    close[ok] = np.abs(1200 * np.log2(h[ok] / ref[ok])) < 50
    th = np.asarray(thresholds, dtype=np.float64)[:, None]
    est_v = v[None, :] >= th
    good = np.where(ref_v[None, :], est_v & close[None, :], ~est_v)
    return good.mean(axis=1) if ref.size else np.zeros(len(th))


THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.025), 4)   # the calibration grid


def oa_curve(tracks, thresholds=None) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds, mean OA over tracks per threshold)`` for ``tracks`` = iterable of ``(ref_hz, voicing, hz)``."""
    th = THRESHOLDS if thresholds is None else np.asarray(thresholds, float)
    rows = [overall_accuracy(r, v, h, th) for r, v, h in tracks]
    if not rows:
        raise ValueError("no tracks to calibrate the voicing threshold on")
    return th, np.mean(rows, axis=0)


def best_threshold(thresholds, oa) -> int:
    """Index of the maximum of ``oa``; ties go to the threshold closest to 0.5."""
    th, oa = np.asarray(thresholds, float), np.asarray(oa, float)
    best = np.flatnonzero(oa >= oa.max() - 1e-12)
    return int(best[np.argmin(np.abs(th[best] - 0.5))])


def calibrate_threshold(tracks, thresholds=None) -> tuple[float, np.ndarray, np.ndarray]:
    """θ of maximum mean OA over ``tracks`` = iterable of ``(ref_hz, voicing, hz)``.

    Returns ``(θ*, thresholds, mean OA per threshold)``; ties go to the θ closest to 0.5.
    """
    th, mean = oa_curve(tracks, thresholds)
    return float(th[best_threshold(th, mean)]), th, mean
