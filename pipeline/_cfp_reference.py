"""Plain per-frame CFP, written for clarity (tests and benchmarks compare :mod:`hkdsme.pipeline.cfp` with it).

It follows the FTANet ``cfp.py`` definition step by step, one frame at a time, in float64, with full
complex FFTs of length N = 4000 and dense filterbank matrices built by the literal loops. It keeps
all five quirks listed in ``shared/reference/cfp/README.md``:

1. interior frames read x[ti-384 .. ti+381] (ti = 1-based centre sample) and weight the first sample by
   h[-1] = h[767]; taps are divided by the L2 norm of the taps actually used;
2. edge frames are truncated to tau >= -(ti-1), tau < L-ti (x[L-1] is never read) and renormalised;
3. spectral triangles are evaluated on f[j] = 4000 j / 1999 Hz (``fs*linspace(0, .5, 2000)``);
4. cepstral zeroing is asymmetric (indices 0..5 and N-6..N-1), so index 6 is kept but its mirror is not;
5. quefrency triangles are evaluated at f = fs/n for n = round(fs/f_{i+1}) .. round(fs/f_{i-1}).

Slow (about 1 s per 30 s of audio); use :func:`hkdsme.pipeline.cfp.cfp_raw` for real work.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import windows

from hkdsme.pipeline import cfp as _cfp

N_FFT = 4000
WIN = 768
HOP = 80


def center_freqs_reference(fmin=31.0, fmax=1250.0, bpo=60) -> list[float]:
    """f_i = fmin * 2**(i/bpo) for every f_i < fmax (321 values for the defaults)."""
    out = []
    for i in range(int(np.ceil(np.log2(fmax / fmin)) * bpo)):
        f = fmin * pow(2, float(i) / bpo)
        if f >= fmax:
            break
        out.append(f)
    return out


def spectral_matrix_reference(sr=8000) -> np.ndarray:
    """Dense (320, 626) triangle weights on the stretched axis f[j] = sr/2 * j / 1999 (quirk 3)."""
    cf = center_freqs_reference()
    fr = sr / N_FFT
    f = sr * np.linspace(0.0, 0.5, N_FFT // 2, endpoint=True)[: int(round(1250.0 / fr)) + 1]
    m = np.zeros((len(cf) - 1, len(f)))
    for i in range(1, len(cf) - 1):
        lo, hi = int(round(cf[i - 1] / fr)), int(round(cf[i + 1] / fr) + 1)
        if lo >= hi - 1:          # triangle narrower than a bin: all weight on one bin
            m[i, lo] = 1.0
            continue
        for j in range(lo, hi):
            if cf[i - 1] < f[j] < cf[i]:
                m[i, j] = (f[j] - cf[i - 1]) / (cf[i] - cf[i - 1])
            elif cf[i] < f[j] < cf[i + 1]:
                m[i, j] = (cf[i + 1] - f[j]) / (cf[i + 1] - cf[i])
    return m


def quefrency_matrix_reference(sr=8000) -> np.ndarray:
    """Dense (320, 259) triangle weights evaluated at f = sr/n for quefrency index n (quirk 5)."""
    cf = center_freqs_reference()
    n_q = int(round(sr / 31.0)) + 1
    with np.errstate(divide="ignore"):
        f = sr / np.arange(n_q, dtype=np.float64)       # f[0] = inf, never inside a triangle
    m = np.zeros((len(cf) - 1, n_q))
    for i in range(1, len(cf) - 1):
        for j in range(int(round(sr / cf[i + 1])), int(round(sr / cf[i - 1])) + 1):
            if cf[i - 1] < f[j] < cf[i]:
                m[i, j] = (f[j] - cf[i - 1]) / (cf[i] - cf[i - 1])
            elif cf[i] < f[j] < cf[i + 1]:
                m[i, j] = (cf[i + 1] - f[j]) / (cf[i + 1] - cf[i])
    return m


def cfp_raw_reference(x, sr=8000) -> np.ndarray:
    """Unnormalised [spectrum, GCoS, GC] (3, 320, T) float32, one frame at a time.

    Per frame: X0 = |FFT(frame)|**0.24; C = max(Re FFT(X0)/sqrt(N), 0), C[:6] = C[-6:] = 0, C **= 0.6;
    S = max(Re FFT(C)/sqrt(N), 0), S[:16] = S[-16:] = 0; rows = triangles @ X0[:626], @ S[:626], @ C[:259].
    """
    x = _cfp.validate_audio(x, sr).astype(np.float32)   # float32, as load_audio delivers it
    n = len(x)
    h = windows.blackmanharris(WIN, sym=True)
    lh = (WIN - 1) // 2                                  # 383
    centres = np.arange(HOP, np.ceil(n / HOP) * HOP, HOP).astype(int)
    spec_m, quef_m = spectral_matrix_reference(sr), quefrency_matrix_reference(sr)
    n_spec, n_quef = spec_m.shape[1], quef_m.shape[1]
    out = np.zeros((3, spec_m.shape[0], len(centres)))
    for col, ti in enumerate(centres):
        tau = np.arange(-min(N_FFT // 2 - 1, lh, ti - 1), min(N_FFT // 2 - 1, lh, n - ti))
        taps = h[lh + tau - 1]                           # tau = -383 reads h[-1] (quirk 1)
        frame = np.zeros(N_FFT)
        frame[np.mod(N_FFT + tau, N_FFT)] = x[ti + tau - 1] * taps / np.linalg.norm(taps)
        x0 = np.abs(np.fft.fft(frame)) ** 0.24
        c = np.real(np.fft.fft(x0)) / np.sqrt(N_FFT)
        c[c < 0] = 0.0
        c[:6] = 0.0
        c[-6:] = 0.0
        c = c ** 0.6
        s = np.real(np.fft.fft(c)) / np.sqrt(N_FFT)
        s[s < 0] = 0.0
        s[:16] = 0.0
        s[-16:] = 0.0
        out[0, :, col] = spec_m @ x0[:n_spec]
        out[1, :, col] = spec_m @ s[:n_spec]
        out[2, :, col] = quef_m @ c[:n_quef]
    return out.astype(np.float32)


def cfp_reference(x, sr=8000) -> np.ndarray:
    """Normalised (3, 320, T) float32: per channel (log1p(raw) - min) / (max - min), in float64."""
    raw = cfp_raw_reference(x, sr).astype(np.float64)
    out = np.log1p(raw)
    for c in range(3):
        lo, hi = out[c].min(), out[c].max()
        out[c] = (out[c] - lo) / (hi - lo) if hi > lo else 0.0
    return out.astype(np.float32)
