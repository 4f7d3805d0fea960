"""The time/frequency grid shared by every stage (docs/method.md §2.1, §3).

- Audio is 8 kHz mono; features use a 10 ms hop (80 samples). Frame ``i`` is centred at ``(i + 1) * 0.01`` s.
- Pitch bins: ``k = round(60 * log2(f / 31))`` for voiced ``f``, clipped to ``1..320``; ``0`` means unvoiced.
  Bin ``k >= 1`` decodes to ``31 * 2 ** (k / 60)`` Hz.
- Networks see 64-frame segments of a (3, 320, T) CFP and output (4, 321, 64) maps.
"""
from __future__ import annotations

import numpy as np

SR = 8000                 # feature sample rate (Hz)
HOP = 80                  # samples per frame (10 ms)
FRAME_PERIOD = HOP / SR   # seconds
FMIN = 31.0               # Hz of bin 0 of the log-frequency axis
BINS_PER_OCTAVE = 60      # 20 cents per bin
N_FREQ = 320              # CFP rows
N_BINS = 321              # output rows: 0 = unvoiced, 1..320 = pitch
N_CLASSES = 4             # melody, harmonic, sub-harmonic, non-melody
SEG_LEN = 64              # frames per training segment


def n_frames(n_samples: int) -> int:
    """Number of CFP frames for ``n_samples`` of 8 kHz audio: ``ceil(n / 80) - 1``."""
    return max(int(np.ceil(n_samples / HOP)) - 1, 0)


def frame_times(n: int) -> np.ndarray:
    """Centre times (s) of ``n`` CFP frames: ``(i + 1) * 0.01``."""
    return (np.arange(n, dtype=np.float64) + 1.0) * FRAME_PERIOD


def hz_to_bin(f0) -> np.ndarray:
    """Label bin of each f0: ``round(60 log2(f/31))`` clipped to ``1..320``; ``f <= 0`` or NaN → 0 (unvoiced).

    Unlike the official ``convert_y`` this never yields negative bins (f < 31 Hz is clipped to bin 1, not
    wrapped around to row 321 + k) and treats 31.0 Hz as voiced bin 1.
    """
    f = np.asarray(f0, dtype=np.float64)
    voiced = np.isfinite(f) & (f > 0)
    k = np.zeros(f.shape, dtype=np.int16)
    with np.errstate(divide="ignore", invalid="ignore"):
        kv = np.rint(BINS_PER_OCTAVE * np.log2(f[voiced] / FMIN))
    k[voiced] = np.clip(kv, 1, N_FREQ).astype(np.int16)
    return k


def bin_to_hz(k):
    """Hz of each bin as float64: ``31 * 2**(k/60)`` for ``k >= 1``, 0 for ``k <= 0`` (the one implementation;
    ``model.decode.bins_to_hz`` is this function). A torch tensor gives a float64 tensor, anything else numpy."""
    if type(k).__module__.startswith("torch"):   # no torch import for numpy users of the grid
        import torch

        kf = k.to(torch.float64)
        return torch.where(k > 0, FMIN * torch.exp2(kf / BINS_PER_OCTAVE), torch.zeros_like(kf))
    k = np.asarray(k)
    return np.where(k > 0, FMIN * 2.0 ** (np.maximum(k, 0).astype(np.float64) / BINS_PER_OCTAVE), 0.0)


# Every parameter that changes the numbers of a feature or label. Its hash tags caches and checkpoints,
# so shards made with other parameters are never mixed with these. The numbers come from the code that uses
# them (this module, ``cfp``, ``audio``), so changing a constant there changes the hash; the descriptive
# strings name behaviour that has no constant. ``grid.FEATURE_PARAMS`` is built on access (``cfp`` imports
# this module, and importing it here would also load numba for every user of the grid).
def feature_params() -> dict:
    """The feature parameters of this code (a fresh dict; see :data:`FEATURE_PARAMS`)."""
    from hkdsme.pipeline import audio, cfp

    return {
        "feature": "cfp",
        "sr": cfp.SR,
        "hop": cfp.HOP,
        "window": "blackmanharris",  # cfp._window (scipy.signal.windows.blackmanharris of cfp.WIN taps)
        "win_length": cfp.WIN,
        "n_fft": cfp.N_FFT,
        "gammas": [float(g) for g in cfp.GAMMAS],
        "fmin": float(cfp.FMIN),
        "fmax": float(cfp.FMAX),
        "bins_per_octave": cfp.BPO,
        "n_freq": N_FREQ,
        "norm": "log1p-minmax-per-channel",
        "quirks": "ftanet-cfp.py",   # the original's window taps, edges, stretched axis, asymmetric zeroing
        "resampler": f"{audio.RESAMPLER}-{audio.RESAMPLE_QUALITY.lower()}",
        "label_bins": f"round({BINS_PER_OCTAVE}*log2(f/{FMIN:g})) clip 1..{N_FREQ}",
        "seg_len": SEG_LEN,
    }


def __getattr__(name):
    if name == "FEATURE_PARAMS":
        return feature_params()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def feature_hash(params: dict | None = None) -> str:
    """Short stable hash (16 hex chars) of the feature parameters."""
    import hashlib
    import json

    blob = json.dumps(feature_params() if params is None else params, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
