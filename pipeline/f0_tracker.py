"""Monophonic f0 labels for isolated singing voice: a tracker, its voicing threshold, ``.f0.csv`` label files.

``track(audio, sr, tracker)`` → ``(times_s, f0_hz, confidence)`` on a 10 ms grid, frame ``i`` centred at
``t_i = 0.01 · i`` (``i = 0 … ⌊n / hop⌋``, ``hop`` = 10 ms of samples at the tracker's rate); every frame carries
the tracker's pitch estimate (> 0) and its own confidence in [0, 1]. ``voiced_f0`` applies a threshold:
``f0_i`` if ``confidence_i ≥ θ`` else 0 (unvoiced). The audio is resampled to 16 kHz first (soxr HQ,
``audio.resample``), the rate CREPE and SwiftF0 require (pyin's frame sizes below are for it).

Trackers (``TRACKERS``; weights ship inside the wheels, nothing is downloaded at run time):

============  ================================================================================================
swift         SwiftF0 (``swift-f0``, ONNX Runtime CPU, 16 ms hop): its pitch and confidence are interpolated
              to the 10 ms grid, ``log2 f0`` and confidence linearly in time
pyin          ``librosa.pyin``, fmin 65 Hz, fmax 1250 Hz, 1024-sample frames, 160-sample hop, best-guess f0
              kept in unvoiced frames (``fill_na=None``), confidence = ``voiced_prob``
pyin31        the same with fmin 31 Hz and 2048-sample frames (two periods of 31 Hz must fit a frame)
crepe-tiny,   ``torchcrepe`` 'tiny' / 'full', 160-sample hop, 32.7–1250 Hz, Viterbi decoding, confidence =
crepe-full    periodicity (fmin 32.71 Hz: CREPE's lowest bin)
pesto         ``pesto-pitch`` (checkpoint ``mir-1k_g7``: self-supervised on MIR-1K audio), 10 ms step
============  ================================================================================================

Choice by measurement (``experiments/real/tracker_choice.py --per-singer 12``): 24 MIR-1K validation clips
(12 evenly spaced per singer, 203 s), the voice channel (8 kHz in the files) resampled to 16 kHz with soxr HQ,
against the manual ``.pv`` labels with mir_eval (per-clip means; unvoiced frames given as negative f0, so RPA
ignores the voicing decision). Threshold θ on the tracker's own confidence chosen on Kenshin's clips (grid 0.01,
0.02, 0.05 … 0.95, best mean OA), reported on heycat's; "synthetic": |cents| error on a synthetic voice with
±50 c vibrato (median / max over frames inside the notes). Speed: one thread on a shared 2-core AMD EPYC that
was running other jobs (noisy, comparable only within the table):

===========  =====  =====  =====  =====  =====  ========  =============  ==========
tracker      θ      VR     VFA    RPA    OA     OA calib  synthetic c    × realtime
===========  =====  =====  =====  =====  =====  ========  =============  ==========
pyin         0.05   99.2    9.8   98.1   95.8    97.0      6.1 / 15.1         1.1
pesto        0.80   95.9    1.2   98.7   96.3    98.7     10.0 / 22.5         1.1
crepe-tiny   0.40   97.8   16.9   97.4   92.5    96.7      8.4 / 36.0         1.2
swift        0.35   98.3   36.1   96.2   86.3    96.4      3.6 / 10.3        22.2
pyin31       0.30   96.9   25.8   93.3   87.4    90.2     19.6 / 37.0         1.4
crepe-full   —      —      —      —      —      —         —                  0.11
===========  =====  =====  =====  =====  =====  ========  =============  ==========

``pyin`` is the default. PESTO leads it by 0.5 OA points on the check singer, but its shipped checkpoint was
trained (self-supervised) on MIR-1K's own voice audio, these clips included, so that lead is not evidence
for other voices; on the synthetic voice, which no tracker saw, pyin's pitch is tighter (max 15 c vs 22.5 c),
and it adds no dependency (librosa is one already) where PESTO needs torch checkpoints, omegaconf and a
torchaudio stand-in. SwiftF0 is 20× faster with the most precise pitch, but calls 36 % of the check singer's
unvoiced frames voiced; pyin with fmin 31 Hz (2048-sample frames) smears the pitch; CREPE 'full' ran at 0.11×
realtime on one core (26 minutes of voice would take 4 hours), so it was not measured further. Every tracker
but pyin is optional: ``pip install swift-f0`` / ``torchcrepe`` / ``pesto-pitch omegaconf``.

Label file ``<id>.f0.csv``: a header ``time_s,f0_hz,confidence`` then one row per 10 ms frame; ``f0_hz`` is 0
where the frame is unvoiced (confidence below the threshold), ``confidence`` is always the tracker's.
``label_folder`` writes one per audio file of a folder (ids as the ``unlabeled`` dataset names them), each
atomically, skipping files already labeled (resumable) and reporting unusable audio in one line each.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np

from hkdsme.pipeline import audio as audio_io
from hkdsme.pipeline.atomic import atomic_path
from hkdsme.pipeline.errors import InputError

SR = 16000                     # tracker input rate
HOP_S = 0.01                   # label hop
HOP = int(round(SR * HOP_S))   # 160 samples
FMIN, FMAX = 31.0, 1250.0      # the pitch grid's range (grid.FMIN … the augmentation's f0_limits)
TRACKERS = ("swift", "pyin", "pyin31", "crepe-tiny", "crepe-full", "pesto")
DEFAULT_TRACKER = "pyin"
# Voicing thresholds chosen on MIR-1K validation singer Kenshin (max. mean overall accuracy), checked on heycat
# (experiments/real/tracker_choice.py, table above); crepe-full's 0.5 is unmeasured (too slow to run there).
THRESHOLDS = {"swift": 0.35, "pyin": 0.05, "pyin31": 0.30, "crepe-tiny": 0.40, "crepe-full": 0.5, "pesto": 0.80}
HEADER = "time_s,f0_hz,confidence"
SUFFIX = ".f0.csv"


def n_label_frames(n_samples: int, sr: int = SR) -> int:
    """Frames of a clip of ``n_samples`` at ``sr``: ``⌊n / (0.01 · sr)⌋ + 1`` (centred frames, t = 0.01 · i)."""
    return int(n_samples) // int(round(sr * HOP_S)) + 1


def _fit_frames(a: np.ndarray, n: int, fill: float) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size >= n:
        return a[:n]
    return np.concatenate([a, np.full(n - a.size, fill)])


def _optional(module: str, dist: str):
    """Import an optional tracker's package (not a dependency of hkdsme: only ``pyin`` is) or say how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(f"this tracker needs `pip install {dist}`") from None


def _swift(x: np.ndarray, n: int):
    swift_f0 = _optional("swift_f0", "swift-f0")
    det = _swift_detector()
    r = det.detect(x, SR, fmin=swift_f0.FMIN, fmax=FMAX)
    t = np.arange(n) * HOP_S
    logf = np.interp(t, r.timestamps, np.log2(np.maximum(r.pitch_hz, 1e-3)))
    conf = np.interp(t, r.timestamps, r.confidence)
    return 2.0 ** logf, conf


_SWIFT = None


def _swift_detector():
    global _SWIFT
    if _SWIFT is None:
        swift_f0 = _optional("swift_f0", "swift-f0")
        _SWIFT = swift_f0.SwiftF0(threads=1, spin=False)   # one thread, no busy-waiting: a shared machine
    return _SWIFT


def _pyin(x: np.ndarray, n: int, fmin: float, frame: int):
    import librosa

    f0, _, prob = librosa.pyin(x, fmin=fmin, fmax=FMAX, sr=SR, frame_length=frame, hop_length=HOP, center=True,
                               fill_na=None)
    return _fit_frames(f0, n, np.nan), _fit_frames(prob, n, 0.0)


def _import_torchaudio_free(name: str):
    """Import ``torchcrepe`` / ``pesto``, which import ``torchaudio`` only to read files (never used here: audio
    arrives decoded). PyPI's torchaudio wheels are CUDA builds that cannot load beside a CPU-only torch, so when
    torchaudio is absent a stand-in module whose ``load`` refuses is registered first."""
    try:
        _optional("torchaudio", "torchaudio")
    except (RuntimeError, OSError):   # OSError: a CUDA build of torchaudio beside a CPU-only torch
        stub = types.ModuleType("torchaudio")

        def load(*_a, **_k):
            raise RuntimeError("torchaudio is not installed: decode audio with hkdsme.pipeline.audio instead")
        stub.load = load
        sys.modules["torchaudio"] = stub
    return _optional(name, {"torchcrepe": "torchcrepe", "pesto": "pesto-pitch omegaconf"}[name])


def _crepe(x: np.ndarray, n: int, model: str):
    import torch

    torchcrepe = _import_torchaudio_free("torchcrepe")
    with torch.inference_mode():
        f0, per = torchcrepe.predict(torch.from_numpy(np.ascontiguousarray(x))[None], SR, HOP, CREPE_FMIN, FMAX, model,
                                     return_periodicity=True, batch_size=512, device="cpu")
    return _fit_frames(f0[0].numpy(), n, np.nan), _fit_frames(per[0].numpy(), n, 0.0)


CREPE_FMIN = 32.71   # CREPE's lowest bin (C1 = 32.70 Hz): torchcrepe mis-slices its bins below it

_PESTO = None


def _pesto(x: np.ndarray, n: int):
    import torch

    global _PESTO
    if _PESTO is None:   # loaded once: pesto.predict would reload the checkpoint on every call
        pesto = _import_torchaudio_free("pesto")
        _PESTO = pesto.load_model("mir-1k_g7", step_size=HOP_S * 1000.0, sampling_rate=SR)
    pad = max(0, 2 * 2048 + 1 - x.size)   # its CQT reflect-pads 2048 samples per side: very short clips get zeros
    xx = torch.from_numpy(np.ascontiguousarray(np.concatenate([x, np.zeros(pad, np.float32)])))
    with torch.inference_mode():
        f0, conf, _, _ = _PESTO(xx, sr=SR, convert_to_freq=True, return_activations=True)
    return _fit_frames(f0.numpy(), n, np.nan), _fit_frames(conf.numpy(), n, 0.0)


def track(audio, sr: int, tracker: str = DEFAULT_TRACKER):
    """``(times_s, f0_hz, confidence)`` float64 on the 10 ms grid of mono ``audio`` at ``sr`` (see module doc).

    ``f0_hz`` is the tracker's estimate in every frame, clipped to [31, 1250] Hz (frames with none — pyin at the
    edges — get 0); ``confidence`` lies in [0, 1]. Raises ``ValueError`` for an unknown tracker or empty audio.
    """
    if tracker not in TRACKERS:
        raise ValueError(f"unknown tracker {tracker!r}; choose from {', '.join(TRACKERS)}")
    x = np.asarray(audio, dtype=np.float32).ravel()
    if x.size == 0:
        raise ValueError("audio is empty")
    x = audio_io.resample(x, sr, SR)
    n = n_label_frames(x.size)
    if tracker == "swift":
        f0, conf = _swift(x, n)
    elif tracker == "pyin":
        f0, conf = _pyin(x, n, 65.0, 1024)
    elif tracker == "pyin31":
        f0, conf = _pyin(x, n, 31.0, 2048)
    elif tracker.startswith("crepe-"):
        f0, conf = _crepe(x, n, tracker.split("-", 1)[1])
    else:
        f0, conf = _pesto(x, n)
    f0 = np.asarray(f0, dtype=np.float64)
    ok = np.isfinite(f0) & (f0 > 0)
    f0 = np.where(ok, np.clip(np.where(ok, f0, FMIN), FMIN, FMAX), 0.0)
    conf = np.clip(np.nan_to_num(np.asarray(conf, dtype=np.float64), nan=0.0), 0.0, 1.0)
    return np.arange(n) * HOP_S, f0, conf


def voiced_f0(f0, confidence, threshold: float) -> np.ndarray:
    """``f0`` where ``confidence ≥ threshold`` (and f0 > 0), else 0 (unvoiced)."""
    f0 = np.asarray(f0, dtype=np.float64)
    return np.where((np.asarray(confidence) >= threshold) & (f0 > 0), f0, 0.0)


# ------------------------------------------------------------------------------------------- label files

def write_f0_csv(path, times, f0, confidence) -> Path:
    """Write a label file atomically (header ``time_s,f0_hz,confidence``; 10 ms times, Hz to 1 mHz)."""
    t, f, c = (np.asarray(a, dtype=np.float64).ravel() for a in (times, f0, confidence))
    if not (t.size == f.size == c.size) or t.size == 0:
        raise ValueError(f"label arrays must be non-empty and of one length, got {t.size}, {f.size}, {c.size}")
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savetxt(tmp, np.column_stack([t, f, c]), fmt=("%.3f", "%.3f", "%.4f"), delimiter=",", header=HEADER,
                   comments="")
    return path


def read_f0_csv(path):
    """``(times_s, f0_hz, confidence)`` float64 of a label file; ``InputError(path, ...)`` if unusable."""
    from hkdsme.pipeline.datasets.core import read_table

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "label file not found")
    tab, _ = read_table(path, 3, header=True)
    if tab.shape[0] == 0:
        raise InputError(path, "label file has no rows")
    t, f, c = tab[:, 0], tab[:, 1], tab[:, 2]
    if t.size > 1 and not (np.diff(t) > 0).all():
        raise InputError(path, "label times are not strictly increasing")
    if (f < 0).any() or (c < 0).any() or (c > 1).any():
        raise InputError(path, "f0 must be >= 0 and confidence within [0, 1]")
    return t, f, c


def label_path(out_dir, track_id: str) -> Path:
    return Path(out_dir) / f"{track_id}{SUFFIX}"


def label_folder(audio_dir, out_dir, tracker: str = DEFAULT_TRACKER, threshold: float | None = None,
                 echo=print) -> dict:
    """Label every audio file under ``audio_dir`` into ``out_dir/<id>.f0.csv`` (one process, file by file).

    Ids: those of ``datasets.list_tracks("unlabeled", audio_dir)`` (relative path, folders joined by ``__``).
    A label file that exists is kept (resume); an unusable audio file is reported as ``skip <file>: <reason>``
    and left out. Returns ``{"done", "skipped", "failed", "audio_s", "voiced_frames", "frames"}``.
    """
    from hkdsme.pipeline.datasets import list_tracks

    if tracker not in TRACKERS:
        raise ValueError(f"unknown tracker {tracker!r}; choose from {', '.join(TRACKERS)}")
    if threshold is None:
        threshold = THRESHOLDS[tracker]
    tracks = list_tracks("unlabeled", Path(audio_dir))
    s = {"done": 0, "skipped": 0, "failed": 0, "audio_s": 0.0, "voiced_frames": 0, "frames": 0}
    for tr in tracks:
        dest = label_path(out_dir, tr.track_id)
        if dest.is_file():
            s["skipped"] += 1
            continue
        try:
            x = audio_io.load_audio(tr.audio_path, sr=SR)
            times, f0, conf = track(x, SR, tracker)
        except (InputError, ValueError) as e:
            echo(f"skip {e if isinstance(e, InputError) else f'{tr.audio_path}: {e}'}")
            s["failed"] += 1
            continue
        f = voiced_f0(f0, conf, threshold)
        write_f0_csv(dest, times, f, conf)
        s["done"] += 1
        s["audio_s"] += x.size / SR
        s["voiced_frames"] += int((f > 0).sum())
        s["frames"] += f.size
    return s
