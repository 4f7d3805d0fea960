"""Melody annotations → the 10 ms frame grid, and the 4-class harmonic label map (docs/method.md §2.2).

``f0_to_grid`` resamples a native annotation (any hop) onto ``grid.frame_times``; ``harmonic_map`` /
``harmonic_classes`` turn our label bins (``grid.hz_to_bin``: 0 = unvoiced, 1..320) into training targets.

Official quirks of ``convert_y`` / ``build_harmonic`` that are deliberately NOT reproduced here (our bins come
from ``grid.hz_to_bin``): 0 < f < 31 Hz gives a negative official bin that Python indexing wraps to row
``321 + k`` (we clip to bin 1); exactly 31.0 Hz is official bin 0 = "unvoiced" (ours: voiced bin 1); official
bins > 320 are clipped to 320 only on the training path (ours are always clipped).
"""
from __future__ import annotations

import numpy as np

from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError

# Two times closer than this are "the same instant": grid times (i+1)·0.01 and annotation times such as
# 0.02·(k+1) differ by float rounding only, and must not fall "between" two annotation samples.
_TIME_EPS = 1e-6


def check_contour(times, f0, *, what: str = "annotation", path=None, strict: bool = True):
    """Validate a pitch contour up front; return ``(times, f0)`` as float64 arrays.

    Both 1-D, same non-zero length, finite; times ≥ 0 and increasing (``strict``: strictly, as for annotations;
    otherwise non-decreasing, as mir_eval accepts). Raises ``InputError(path, "<what>: <problem>")``.
    """
    t = np.asarray(times, dtype=np.float64)
    f = np.asarray(f0, dtype=np.float64)
    if t.ndim != 1 or f.ndim != 1:
        raise InputError(path, f"{what}: times and f0 must be 1-D, got shapes {t.shape} and {f.shape}")
    if t.size != f.size:
        raise InputError(path, f"{what}: {t.size} times but {f.size} f0 values")
    if t.size == 0:
        raise InputError(path, f"{what}: empty")
    for name, a in (("time", t), ("f0", f)):
        ok = np.isfinite(a)
        if not ok.all():
            i = int(np.argmin(ok))
            raise InputError(path, f"{what}: non-finite {name} value {float(a[i])} at row {i + 1} (NaN or inf)")
    if t[0] < 0:
        raise InputError(path, f"{what}: negative time {t[0]}")
    d = np.diff(t)
    bad = d <= 0 if strict else d < 0
    if bad.any():
        i = int(np.argmax(bad))
        problem = "times not strictly increasing" if strict else "times decrease"
        raise InputError(path, f"{what}: {problem} at index {i + 1} ({t[i]!r} -> {t[i + 1]!r})")
    return t, f


def f0_to_grid(times, f0, n_frames: int) -> np.ndarray:
    """Annotation ``(times s, f0 Hz)`` → float32 Hz on ``grid.frame_times(n_frames)``; 0 = unvoiced.

    A sample is voiced iff ``f0 > 0`` (0 and negative = unvoiced, as in mir_eval). For a grid time ``t``:

    - ``t`` equals an annotation time (±1 µs): that sample's value (0 if unvoiced);
    - ``times[j] < t < times[j+1]``: voiced only if BOTH neighbours are voiced, then
      ``f = 2 ** ((1-w)·log2 f_j + w·log2 f_{j+1})`` with ``w = (t - t_j) / (t_{j+1} - t_j)``
      (linear in cents), so an unvoiced gap is never bridged and a voicing edge never moves into the gap;
    - ``t`` outside ``[times[0], times[-1]]``: unvoiced.

    Raises ``InputError(None, reason)`` unless times/f0 are finite, 1-D, non-empty, of equal length and
    ``times`` strictly increasing (the caller re-raises with the label path).
    """
    t_ann, f_ann = check_contour(times, f0, what="annotation", strict=True)

    t = grid.frame_times(int(n_frames))
    out = np.zeros(t.shape, dtype=np.float64)
    voiced = f_ann > 0
    with np.errstate(divide="ignore"):
        logf = np.where(voiced, np.log2(np.where(voiced, f_ann, 1.0)), 0.0)

    # j = last annotation sample at or before t (within eps)
    j = np.searchsorted(t_ann, t + _TIME_EPS, side="right") - 1
    inside = (j >= 0) & (t <= t_ann[-1] + _TIME_EPS)
    jc = np.clip(j, 0, t_ann.size - 1)
    exact = inside & (np.abs(t - t_ann[jc]) <= _TIME_EPS)
    out[exact & voiced[jc]] = f_ann[jc][exact & voiced[jc]]

    between = inside & ~exact          # here j + 1 exists, since t < t_ann[-1] - eps
    jn = np.clip(jc + 1, 0, t_ann.size - 1)
    both = between & voiced[jc] & voiced[jn]
    if both.any():
        a, b = jc[both], jn[both]
        w = (t[both] - t_ann[a]) / (t_ann[b] - t_ann[a])
        out[both] = np.exp2((1.0 - w) * logf[a] + w * logf[b])
    return out.astype(np.float32)


def _check_bins(bins, is_float: bool, size: int) -> None:
    if is_float:
        raise ValueError(f"label bins must be integers, got dtype {bins.dtype}")
    if size and (int(bins.min()) < 0 or int(bins.max()) > grid.N_FREQ):
        raise ValueError(f"label bins must lie in 0..{grid.N_FREQ}, got {int(bins.min())}..{int(bins.max())}")


_NONE = grid.N_BINS   # scatter target for "no row": an extra dummy row 321 that is cut off afterwards


def _targets(k, xp):
    """Target rows of channels 0..2 per frame, stacked on axis -2 as (..., 3, 1, T); ``_NONE`` = no row.

    melody ``k`` (row 0 when unvoiced), harmonic ``k + 60`` if ``1 ≤ k ≤ 260``, sub-harmonic ``k − 60`` if ``k ≥ 61``.
    """
    octave = grid.BINS_PER_OCTAVE
    none = xp.full_like(k, _NONE)
    harm = xp.where((k > 0) & (k + octave <= grid.N_FREQ), k + octave, none)
    sub = xp.where(k - octave >= 1, k - octave, none)
    return xp.stack([k, harm, sub], -2)[..., None, :]


def harmonic_map(bins):
    """Bins ``(..., T)`` → 0/1 map ``(..., 4, 321, T)``: uint8 for numpy input, float32 torch (same device) for torch.

    ``map[c, r, t] = [r == row_c(t)]`` for ``c = 0, 1, 2`` with ``row_0 = k`` (row 0 when unvoiced),
    ``row_1 = k + 60`` if ``k ≥ 1`` and ``k + 60 ≤ 320``, ``row_2 = k − 60`` if ``k − 60 ≥ 1`` (else no row);
    ``map[3] = 1 − min(1, Σ_{c<3} map[c])``. Each (row, frame) is in exactly one class.
    Built by scattering ones into 322 rows (row 321 absorbs "no row") and dropping the dummy row.
    """
    if _is_torch(bins):
        import torch

        _check_bins(bins, bins.dtype.is_floating_point or bins.dtype == torch.bool, bins.numel())
        k = bins.long()
        idx = _targets(k, torch)
        first3 = torch.zeros((*k.shape[:-1], 3, grid.N_BINS + 1, k.shape[-1]), dtype=torch.float32,
                             device=k.device)
        first3.scatter_(-2, idx, 1.0)
        first3 = first3[..., : grid.N_BINS, :]
        rest = 1.0 - first3.sum(dim=-3, keepdim=True).clamp(max=1.0)
        return torch.cat([first3, rest], dim=-3)
    k = np.asarray(bins)
    _check_bins(k, not np.issubdtype(k.dtype, np.integer), k.size)
    k = k.astype(np.int64)
    first3 = np.zeros((*k.shape[:-1], 3, grid.N_BINS + 1, k.shape[-1]), dtype=np.uint8)
    np.put_along_axis(first3, _targets(k, np), 1, axis=-2)
    first3 = first3[..., : grid.N_BINS, :]
    rest = 1 - np.minimum(first3.sum(axis=-3, keepdims=True, dtype=np.uint8), 1)
    return np.concatenate([first3, rest], axis=-3)


def harmonic_classes(bins):
    """Class index ``(..., 321, T)`` int64 = argmax of ``harmonic_map(bins)`` over its class axis.

    0 melody, 1 harmonic, 2 sub-harmonic, 3 non-melody; numpy in → numpy out, torch in → torch out (same device).
    Scattered directly (3 everywhere, then 2/1/0 at the target rows): the rows of one frame are distinct, so
    this equals the argmax without building the map.
    """
    if _is_torch(bins):
        import torch

        _check_bins(bins, bins.dtype.is_floating_point or bins.dtype == torch.bool, bins.numel())
        k = bins.long()
        idx = _targets(k, torch)
        out = torch.full((*k.shape[:-1], grid.N_BINS + 1, k.shape[-1]), 3, dtype=torch.int64, device=k.device)
        for c in (2, 1, 0):
            out.scatter_(-2, idx[..., c, :, :], c)
        return out[..., : grid.N_BINS, :]
    k = np.asarray(bins)
    _check_bins(k, not np.issubdtype(k.dtype, np.integer), k.size)
    k = k.astype(np.int64)
    idx = _targets(k, np)
    out = np.full((*k.shape[:-1], grid.N_BINS + 1, k.shape[-1]), 3, dtype=np.int64)
    for c in (2, 1, 0):
        np.put_along_axis(out, idx[..., c, :, :], c, axis=-2)
    return np.ascontiguousarray(out[..., : grid.N_BINS, :])


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")
