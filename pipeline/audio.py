"""Audio file → float32 mono at the feature rate (8 kHz).

Decoding: ``soundfile`` (wav, flac, ogg, ...) first; anything libsndfile cannot read (mp3 on old builds, m4a, ...)
goes through ``librosa.load`` (audioread / ffmpeg). Mixing to mono: mean of the channels, or
``y = Σ_c w_c · x_c`` with explicit ``channel_weights`` (MIR-1K / iKala voice-vs-accompaniment remixes).
Resampling: ``soxr.resample(..., quality="HQ")`` (the ``resampler`` entry of ``grid.FEATURE_PARAMS``).

Every unusable file raises ``InputError(path, reason)``: missing, undecodable, empty, non-finite samples,
channel weights that do not match the channel count.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError

RESAMPLER = "soxr"             # library of :func:`resample` (part of grid.FEATURE_PARAMS)
RESAMPLE_QUALITY = "HQ"        # its quality setting


def load_multichannel(path) -> tuple[np.ndarray, int]:
    """Decode ``path`` at its native rate: ``(x float32 (n_samples, n_channels), sr)``.

    Raises ``InputError`` for a missing, undecodable, truncated (fewer samples than its header declares) or
    empty file, or one with NaN/inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "audio file not found")
    try:
        import soundfile as sf

        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        declared = sf.info(str(path)).frames
    except Exception as sf_err:  # libsndfile cannot decode it: try the audioread/ffmpeg route
        x, sr = _load_librosa(path, sf_err)
    else:
        _check_complete(path, declared, x.shape[0], sr)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(path, "audio file is empty (0 samples)")
    if not np.isfinite(x).all():
        raise InputError(path, "audio contains NaN or inf samples")
    return np.ascontiguousarray(x, dtype=np.float32), int(sr)


def _check_complete(path: Path, declared: int, n_read: int, sr: int) -> None:
    """A file whose data ends before its header says (a killed copy or download) is bad input, not a short song.

    libsndfile clamps a WAV's frame count to the bytes present, so for RIFF/WAVE the ``data`` chunk size of the
    header is compared with the bytes actually in the file; for other formats the decoder's frame count
    (FLAC STREAMINFO, ...) with the samples read.
    """
    want = _wav_declared_frames(path)
    if want is None and declared > 0:
        want = declared
    if want is not None and n_read < want:
        raise InputError(path, f"truncated audio file: header declares {want} samples ({want / sr:.2f} s), "
                               f"data holds {n_read} ({n_read / sr:.2f} s)")


def _wav_declared_frames(path: Path) -> int | None:
    """Frames the ``data`` chunk header of a RIFF/WAVE file declares, or None (not a WAV, streaming size)."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block = None
            while True:
                ch = f.read(8)
                if len(ch) < 8:
                    return None
                cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size)
                    if len(fmt) < 16:
                        return None
                    block = struct.unpack("<H", fmt[12:14])[0]
                    f.seek(size & 1, 1)
                elif cid == b"data":
                    if not block or size in (0, 0xFFFFFFFF):     # unknown (streamed) or unusable header
                        return None
                    return size // block
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None


def _decoder_reason(err: Exception) -> str:
    """A decoder's error without the path (the InputError names it) and without libsndfile's misleading
    "does not exist or is not a regular file", which it says of any file whose format it does not know."""
    msg = re.sub(r"^Error opening '.*?': ", "", str(err).strip())
    if "does not exist or is not a regular file" in msg or msg.endswith(":") or not msg:
        return f"{type(err).__name__}: unrecognised format or corrupt data"
    return f"{type(err).__name__}: {msg.splitlines()[0][:200]}"


def _load_librosa(path: Path, sf_err: Exception) -> tuple[np.ndarray, int]:
    import warnings

    import librosa

    try:
        with warnings.catch_warnings():
            # librosa warns (PySoundFile failed / audioread deprecated) on exactly the files we route here
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception as err:
        raise InputError(path, f"cannot decode audio: not a readable {path.suffix or 'audio'} file "
                               f"(soundfile: {_decoder_reason(sf_err)}; librosa: {_decoder_reason(err)})") from err
    y = np.asarray(y, dtype=np.float32)
    x = y[:, None] if y.ndim == 1 else y.T   # librosa is (channels, n)
    return x, int(sr)


def to_mono(x: np.ndarray, channel_weights=None, path=None) -> np.ndarray:
    """``(n, ch)`` → ``(n,)``: mean over channels, or ``Σ_c w_c x[:, c]`` when ``channel_weights`` is given."""
    if channel_weights is None:
        return x.mean(axis=1, dtype=np.float64).astype(np.float32)
    w = np.asarray(channel_weights, dtype=np.float64).ravel()
    if w.size != x.shape[1] or not np.isfinite(w).all():
        raise InputError(path, f"channel_weights {w.tolist()} do not fit {x.shape[1]} channel(s)")
    return (x.astype(np.float64) @ w).astype(np.float32)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """soxr HQ resampling of a 1-D signal (identity when the rates agree)."""
    if int(sr_in) == int(sr_out):
        return np.ascontiguousarray(y, dtype=np.float32)
    import soxr

    return np.ascontiguousarray(soxr.resample(y, int(sr_in), int(sr_out), quality=RESAMPLE_QUALITY),
                                dtype=np.float32)


def load_audio(path, sr: int = grid.SR, channel_weights=None) -> np.ndarray:
    """Decode, mix to mono (mean or ``channel_weights``), resample to ``sr``; float32 1-D.

    Mixing happens before resampling: both are linear, so the order does not change the result,
    and resampling one channel instead of all is cheaper.
    """
    x, sr_in = load_multichannel(path)
    y = resample(to_mono(x, channel_weights, path), sr_in, sr)
    if y.size == 0:
        raise InputError(path, "audio is empty after resampling")
    return y
