"""The MSNet vocal network's own front end: CFP of 44.1 kHz mono audio every 256 samples (5.8 ms).

The published MSNet vocal model (Hsieh, Su and Yang, ICASSP 2019; ``model/msnet_vocal.py``) was trained on this
input, not on the project's 8 kHz / 10 ms CFP (:mod:`hkdsme.pipeline.cfp`). It is the same transform with other
numbers — 44.1 kHz, hop 256, a 2049-tap Blackman–Harris window, N = 44100 / 2 Hz = 22050 — and the same quirks
of the original ``cfp.py``. For frame i (1-based centre sample ti = 256(i+1), i.e. 0-based sample 256(i+1) − 1,
labelled at t_i = 256(i+1)/44100 s as the original's ``t = arange(Hop, ceil(len/Hop)·Hop, Hop)``, ``time = t/fs``;
T5 = ceil(len/256) − 1 frames)::

    frame = x[ti-1+τ] · h'[τ],  τ = −1024 … 1023 (2048 taps, first tap h[2048]; ‖h'‖ = 1; cut at the edges)
    X0 = |FFT_N(frame)| ** 0.24                                                      spectrum
    C  = max(Re FFT_N(X0) / sqrt(N), 0);  C[0:35] = C[N-35:N] = 0;  C **= 0.6        GC   (35 = round(44100/1250))
    S  = max(Re FFT_N(C)  / sqrt(N), 0);  S[0:16] = S[N-16:N] = 0                    GCoS (16 = round(31/2))
    raw = [Tri_f @ X0[:626],  Tri_f @ S[:626],  Tri_q @ C[:1424]]           (3, 320, T5): [tfrL0, tfrLF, tfrLQ]

Tri_f is evaluated on the stretched axis f[j] = 22050·j/11024 Hz, Tri_q at f = 44100/n (quirks 3 and 5), rows
f_k = 31·2^(k/60) Hz, k = 1..319 (row 0 is 0) — :func:`hkdsme.pipeline.cfp.filterbanks` at ``sr=44100,
n_fft=22050``. :func:`cfp_native` normalises each channel over the track: (log1p(raw) − min) / (max − min).

Shared with the 8 kHz CFP: the window, the framing and edge frames (``cfp.frame_blocks``), the filterbank
construction, the powers as exp(g·log) and the normalisation. Different: N/2 = 11025 is odd, so the two
cosine transforms are scipy's DCT-I (``Re FFT_N`` of a real even sequence of even length N is the DCT-I of its
first N/2 + 1 values) instead of the 8 kHz code's half-length real FFT, and the filterbanks are scipy.sparse
matrices. The asymmetric zeroing keeps C[35] but zeroes C[N−35], so Re FFT_N(C) sees C with C[35] halved (as in
the 8 kHz code, there at n = 6); the 1/sqrt(N) factors are folded into the filterbank weights.
Cost: ~1 ms per frame (6× realtime on a shared 2-core CPU, ~15× the 8 kHz CFP); memory (3, 320, T5) float32 =
3.75 KB per frame, 660 KB per second of audio. float64 up to the clip of C, float32 after it (as in the 8 kHz
code): max abs difference to the original code ~1e-7 (docs/msnet_front_end.md).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

from hkdsme.pipeline import cfp
from hkdsme.pipeline.errors import InputError

SR = 44100
HOP = 256                                       # 5.8 ms
WIN = 2049
N_FFT = SR // 2                                 # 22050: 2 Hz bins
N_HALF = N_FFT // 2 + 1                         # 11026 non-redundant bins
GAMMAS = cfp.GAMMAS                             # 0.24, 0.6, 1
N_SPEC = int(round(cfp.FMAX / (SR / N_FFT))) + 1     # 626 spectral bins kept (0..1250 Hz)
N_QUEF = int(round(SR / cfp.FMIN)) + 1               # 1424 quefrency bins kept
TC_IDX = int(round(SR / cfp.FMAX))                   # 35: cepstral bins zeroed at each end
FC_IDX = int(round(cfp.FMIN / (SR / N_FFT)))         # 16: GCoS bins zeroed at each end
BLOCK = 32                                      # frames per block
MIN_FRAMES = 2


def n_frames(n_samples: int) -> int:
    """Frames of ``n_samples`` of 44.1 kHz audio: ``ceil(n / 256) − 1`` (the original's ``t`` array)."""
    return max(int(math.ceil(n_samples / HOP)) - 1, 0)


def frame_times(n: int) -> np.ndarray:
    """Times (s) of ``n`` native frames: ``256·(i+1) / 44100`` (frame i is centred on 0-based sample
    256(i+1) − 1; the label uses the 1-based index, as the 8 kHz grid's ``(i+1)·10 ms`` does)."""
    return HOP * (np.arange(n, dtype=np.float64) + 1.0) / SR


@functools.lru_cache(maxsize=None)
def _filterbank_matrices():
    """The spectral and quefrency filterbanks as scipy.sparse CSR matrices (320 × 626, 320 × 1424), with the
    1/sqrt(N) factors folded in: (spectrum, GCoS, GC) weights × (1, N^-0.8, N^-0.3)."""
    from scipy.sparse import csr_matrix

    (sp_ptr, sp_idx, sp_w), (q_ptr, q_idx, q_w) = cfp.filterbanks(sr=SR, n_fft=N_FFT)
    rows = len(sp_ptr) - 1
    return tuple(csr_matrix((w * scale, idx, ptr), shape=(rows, n_col)) for w, idx, ptr, scale, n_col in (
        (sp_w, sp_idx, sp_ptr, 1.0, N_SPEC), (sp_w, sp_idx, sp_ptr, N_FFT ** -0.8, N_SPEC),
        (q_w, q_idx, q_ptr, N_FFT ** -0.3, N_QUEF)))


def _block(frames: np.ndarray, out: np.ndarray, t0: int) -> None:
    """Raw native CFP of ``frames`` (B, N) float64 into out[:, :, t0:t0+B] (module docstring's formulas)."""
    w_spec, w_gcos, w_gc = _filterbank_matrices()
    t1 = t0 + frames.shape[0]
    spec = scipy.fft.rfft(frames, axis=1, workers=1)                      # (B, 11026) complex128
    x0 = np.square(spec.real)
    x0 += np.square(spec.imag)
    cfp._pow_inplace(x0, GAMMAS[0] / 2)                                    # |X|^0.24 = (|X|^2)^0.12
    out[0, :, t0:t1] = w_spec @ x0[:, :N_SPEC].T
    # float64 up to the clip of C (C is a small difference of large sums of X0), float32 after it
    c = scipy.fft.dct(x0, type=1, axis=1, workers=1)                       # sqrt(N)·C on bins 0..N/2
    c = np.maximum(c, 0.0, out=c).astype(np.float32)
    c[:, :TC_IDX] = 0.0
    cfp._pow_inplace(c, GAMMAS[1])                                         # N^0.3·C^0.6 (N^-0.3 in w_gc)
    out[2, :, t0:t1] = w_gc @ c[:, :N_QUEF].T
    c[:, TC_IDX] *= 0.5                                                    # even part of the zeroed C
    s = scipy.fft.dct(c, type=1, axis=1, workers=1)[:, :N_SPEC]            # N^0.8·S (N^-0.8 in w_gcos)
    np.maximum(s, 0.0, out=s)
    s[:, :FC_IDX] = 0.0
    out[1, :, t0:t1] = w_gcos @ s.T


def check_audio(x, path=None, *, reject_silent: bool = False) -> np.ndarray:
    """``x`` as float32 contiguous 1-D audio of at least 2 native frames (> 512 samples); ``InputError`` naming
    ``path`` otherwise (the checks of :func:`hkdsme.pipeline.cfp.validate_audio`: 1-D, float, non-empty,
    finite, and not silent with ``reject_silent``)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(path, f"audio must be a float array, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    # the 8 kHz validator's checks (its sr and frame count are not ours; the length is checked below)
    cfp.validate_audio(x, cfp.SR, path, min_frames=0, reject_silent=reject_silent)
    if n_frames(x.size) < MIN_FRAMES:
        raise InputError(path, f"audio too short: {x.size} samples (< {MIN_FRAMES} frames of 256 samples "
                               "at 44.1 kHz)")
    return x


def cfp_native_raw(x, sr: int = SR, block: int = BLOCK) -> np.ndarray:
    """Unnormalised native CFP [spectrum, GCoS, GC] of 44.1 kHz mono audio: float32 (3, 320, T5),
    T5 = ceil(len/256) − 1, frame i at ``frame_times``. ``ValueError`` if sr != 44100; ``InputError`` for bad
    audio (:func:`check_audio`)."""
    if sr != SR:
        raise ValueError(f"the native CFP takes sr={SR} (resample when loading audio), got sr={sr}")
    x = check_audio(x)
    t5 = n_frames(x.size)
    out = np.empty((3, _filterbank_matrices()[0].shape[0], t5), np.float32)
    for t0, frames in cfp.frame_blocks(x, t5, HOP, WIN, N_FFT, block):
        _block(frames, out, t0)
    return out


def cfp_native(x, sr: int = SR) -> np.ndarray:
    """Normalised native CFP float32 (3, 320, T5) of 44.1 kHz mono audio: per channel
    (log(1 + raw) − min) / (max − min) over the whole track (:func:`hkdsme.pipeline.cfp.normalize`)."""
    return cfp.normalize(cfp_native_raw(x, sr))


# --- from the 5.8 ms grid to the project's 10 ms grid -----------------------------------------------------------
SAMPLES_PER_10MS = SR // 100                    # 441: 10 ms frame i is at native frame position u_i below
GRID_MAPPINGS = ("linear", "nearest")


def grid_len(n_samples: int) -> int:
    """Frames on the 10 ms grid for ``n_samples`` of 44.1 kHz audio: ``grid.n_frames`` of the length the same
    audio has at 8 kHz, round(n·8000/44100) samples (soxr's output length), so both front ends give a file the
    same number of frames."""
    from hkdsme.pipeline import grid

    return grid.n_frames((n_samples * grid.SR + SR // 2) // SR)


def to_grid(a: np.ndarray, n10: int, how: str = "linear") -> np.ndarray:
    """``a`` (..., T5) on the native frames (times 256(j+1)/44100 s) → (..., n10) at the 10 ms frame times
    (i+1)/100 s, float32.

    10 ms frame i sits at native position ``u_i = (441(i+1) − 256) / 256`` (exact in integers). ``"linear"``:
    ``(1 − w)·a[j] + w·a[j+1]`` with ``j = floor(u_i)``, ``w = u_i − j``; ``"nearest"``: ``a[round(u_i)]``
    (halves up). Positions past the last native frame (at most the last 5.8 ms of a track) take the last frame.
    Interpolating posteriors keeps them distributions (a convex combination of two columns).
    """
    a = np.asarray(a)
    if how not in GRID_MAPPINGS:
        raise ValueError(f"grid mapping must be one of {', '.join(GRID_MAPPINGS)}, got {how!r}")
    t5 = a.shape[-1]
    if t5 < 1:
        raise ValueError("no native frames to map")
    num = SAMPLES_PER_10MS * (np.arange(int(n10), dtype=np.int64) + 1) - HOP     # u_i = num / 256
    if how == "nearest":
        return np.take(a, np.minimum((2 * num + HOP) // (2 * HOP), t5 - 1), axis=-1).astype(np.float32)
    j = np.minimum(num // HOP, t5 - 1)
    w = np.where(num // HOP >= t5 - 1, 0.0, (num % HOP) / HOP).astype(np.float32)
    lo = np.take(a, j, axis=-1).astype(np.float32)
    hi = np.take(a, np.minimum(j + 1, t5 - 1), axis=-1).astype(np.float32)
    return lo + w * (hi - lo)
