"""From network output to an f0 track (method.md §2.1).

- bin per frame: ``k = argmax_r probs[0, r, t]`` over the 321 rows of the melody channel (0 = unvoiced);
  logits give the same argmax because the softmax is monotonic per column.
- Hz: ``31 · 2^(k/60)`` as float for ``k ≥ 1``, ``0`` for ``k = 0``. The official ``pred2res`` writes the
  same value into an int64 array, i.e. ``floor``; we keep the float (no 20-cent grid truncation error).
- whole tracks: consecutive 64-frame segments are concatenated and cut to the track's true length;
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


def bins_to_hz(bins):
    """Float Hz of bins: ``31 · 2^(k/60)`` for ``k ≥ 1``, 0 for ``k ≤ 0`` (torch → float64 tensor, else numpy)."""
    if isinstance(bins, torch.Tensor):
        k = bins.to(torch.float64)
        return torch.where(bins > 0, grid.FMIN * torch.exp2(k / grid.BINS_PER_OCTAVE), torch.zeros_like(k))
    k = np.asarray(bins)
    return np.where(k > 0, grid.bin_to_hz(np.maximum(k, 0)), 0.0)


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
