"""Audio file → float32 mono at the feature rate (8 kHz), decoded block by block.

Decoding: ``soundfile`` (wav, flac, ogg, mp3, ...) first; anything libsndfile cannot read (m4a, aac, webm, ...)
goes through ``audioread`` (ffmpeg), whose 16-bit samples are scaled by 1/32768 (as ``librosa.load`` does).
Both are read in blocks of :data:`BLOCK_FRAMES` native frames; each block is mixed to mono and fed to a
streaming soxr resampler, so decoding memory does not grow with the file's length: only the 8 kHz result
(32 KB per second) is kept. Streamed soxr output is bit-identical to a one-shot ``soxr.resample`` of the whole
signal, and mixing is per sample, so the result equals decoding the whole file first.

Mixing to mono: mean of the channels, or ``y = Σ_c w_c · x_c`` with explicit ``channel_weights`` (MIR-1K / iKala
voice-vs-accompaniment remixes). Resampling: ``soxr`` ``quality="HQ"`` (the ``resampler`` entry of
``grid.FEATURE_PARAMS``).

Sources: a path (``str``, ``bytes`` or ``os.PathLike``; a name that is not valid UTF-8, as the OS may give it,
is passed to the decoders as its bytes) or a binary file object (soundfile formats only). Every unusable file
raises ``InputError(path, reason)``: missing, undecodable, a format that needs ffmpeg when ffmpeg is absent,
truncated, empty, non-finite samples, channel weights that do not match the channel count.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np

from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError

RESAMPLER = "soxr"             # library of :func:`resample` (part of grid.FEATURE_PARAMS)
RESAMPLE_QUALITY = "HQ"        # its quality setting
BLOCK_FRAMES = 1 << 16         # native frames decoded at a time (1.5 s at 44.1 kHz)

# suffixes libsndfile reads besides its format names (soundfile.available_formats(): WAV, FLAC, OGG, MP3, ...)
_SF_ALIASES = {"wave", "aif", "aiff", "aifc", "oga", "opus", "snd"}


def is_file_object(src) -> bool:
    """A binary file object (anything with ``read``), as opposed to a path."""
    return hasattr(src, "read")


def source_path(src) -> Path:
    """The path of a source for messages: a ``str``/``bytes``/``os.PathLike`` path, or a file object's ``name``."""
    if is_file_object(src):
        name = getattr(src, "name", None)
        return Path(os.fsdecode(name)) if isinstance(name, (str, bytes)) else Path("<file object>")
    if isinstance(src, (str, bytes, os.PathLike)):
        return Path(os.fsdecode(src))
    raise TypeError(f"expected a path (str, bytes, os.PathLike) or a binary file object, got {type(src).__name__}")


class Decoded:
    """An audio source opened for block-wise reading: ``sr``, ``channels``, and iteration over float32
    ``(n, channels)`` blocks. The checks (complete, finite, non-empty) run while iterating; iterate once."""

    def __init__(self, src, block: int = BLOCK_FRAMES):
        self.src, self.block = src, int(block)
        self.path = source_path(src)
        if not is_file_object(src) and not self.path.is_file():
            raise InputError(self.path, "audio file not found")
        self._sf = None
        wav_frames = _wav_declared_frames(src if is_file_object(src) else self.path)   # before the decoder moves it
        try:
            import soundfile as sf

            self._sf = sf.SoundFile(src if is_file_object(src) else os.fsencode(self.path))
        except Exception as sf_err:  # libsndfile cannot decode it: try the audioread / ffmpeg route
            if is_file_object(src):
                raise InputError(self.path, f"cannot decode audio from a file object "
                                            f"(soundfile: {_decoder_reason(sf_err)}); formats that need ffmpeg "
                                            "are read from a path") from None
            self._open_audioread(sf_err)
        else:
            self.sr, self.channels = int(self._sf.samplerate), int(self._sf.channels)
            self.declared = wav_frames if wav_frames is not None else (self._sf.frames if self._sf.frames > 0 else None)

    def _open_audioread(self, sf_err: Exception) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)      # its aifc / sunau imports (Python 3.11+)
            import audioread

        try:
            self._ar = audioread.audio_open(os.fspath(self.path))
        except Exception as err:
            if needs_ffmpeg(self.path) and not ffmpeg_available():
                raise InputError(self.path, f"ffmpeg is needed to read {self.path.suffix.lower()} files and was not "
                                            "found on PATH: install ffmpeg (e.g. `apt install ffmpeg` or `conda "
                                            "install ffmpeg`)") from None
            raise InputError(self.path, f"cannot decode audio: not a readable {self.path.suffix or 'audio'} file "
                                        f"(soundfile: {_decoder_reason(sf_err)}; audioread: {_decoder_reason(err)})"
                             ) from None
        self.sr, self.channels, self.declared = int(self._ar.samplerate), int(self._ar.channels), None

    def __iter__(self):
        n = 0
        try:
            for x in (self._sf_blocks() if self._sf is not None else self._ar_blocks()):
                if x.shape[0] == 0:
                    continue
                if not (np.isfinite(x.min()) and np.isfinite(x.max())):
                    raise InputError(self.path, "audio contains NaN or inf samples")
                n += x.shape[0]
                yield x
        finally:
            self.close()
        if n == 0 or self.channels == 0:
            raise InputError(self.path, "audio file is empty (0 samples)")
        if self.declared is not None and n < self.declared:
            raise InputError(self.path, f"truncated audio file: header declares {self.declared} samples "
                                        f"({self.declared / self.sr:.2f} s), data holds {n} ({n / self.sr:.2f} s)")

    def _sf_blocks(self):
        while True:
            try:
                x = self._sf.read(self.block, dtype="float32", always_2d=True)
            except Exception as err:  # noqa: BLE001 - a decoder error mid-file
                raise InputError(self.path, f"cannot decode audio: {_decoder_reason(err)}") from None
            if x.shape[0] == 0:
                return
            yield x

    def _ar_blocks(self):
        pending = b""
        width = 2 * self.channels                        # audioread gives 16-bit little-endian interleaved PCM
        try:
            for buf in self._ar:
                buf = pending + bytes(buf)
                cut = len(buf) - len(buf) % width
                pending = buf[cut:]
                if cut:
                    # librosa.util.buf_to_float: float32(int16) · (1/32768), exact in float32
                    x = np.frombuffer(buf[:cut], "<i2").astype(np.float32) * np.float32(1.0 / 32768)
                    yield x.reshape(-1, self.channels)
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - ffmpeg gave up mid-file
            raise InputError(self.path, f"cannot decode audio: {_decoder_reason(err)}") from None

    def close(self) -> None:
        if self._sf is not None:
            self._sf.close()
        elif getattr(self, "_ar", None) is not None:
            self._ar.close()


def needs_ffmpeg(path) -> bool:
    """True for a suffix libsndfile does not read (m4a, aac, webm, wma, ...): only ffmpeg decodes it here."""
    import soundfile as sf

    ext = Path(path).suffix.lower().lstrip(".")
    return bool(ext) and ext.upper() not in sf.available_formats() and ext not in _SF_ALIASES


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def load_multichannel(path) -> tuple[np.ndarray, int]:
    """Decode ``path`` at its native rate: ``(x float32 (n_samples, n_channels), sr)``.

    Raises ``InputError`` for a missing, undecodable, truncated (fewer samples than its header declares) or
    empty file, or one with NaN/inf samples.
    """
    dec = Decoded(path)
    blocks = list(dec)
    return np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32), dec.sr


def _wav_declared_frames(src) -> int | None:
    """Frames the ``data`` chunk header of a RIFF/WAVE file declares, or None (not a WAV, streaming size).

    ``src``: a path, or a seekable binary file object (read from its current position, which is restored).
    libsndfile clamps a WAV's frame count to the bytes present, so a killed copy or download is only seen here.
    """
    import struct

    def scan(f) -> int | None:
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

    try:
        if is_file_object(src):
            pos = src.tell()
            try:
                return scan(src)
            finally:
                src.seek(pos)
        with open(src, "rb") as f:
            return scan(f)
    except (OSError, ValueError, AttributeError):
        return None


def _decoder_reason(err: Exception) -> str:
    """A decoder's error without the path (the InputError names it) and without libsndfile's misleading
    "does not exist or is not a regular file", which it says of any file whose format it does not know."""
    msg = re.sub(r"^Error opening .*?: ", "", str(err).strip())
    if "does not exist or is not a regular file" in msg or msg.endswith(":") or not msg:
        return f"{type(err).__name__}: unrecognised format or corrupt data"
    return f"{type(err).__name__}: {msg.splitlines()[0][:200]}"


def to_float(x, path=None) -> np.ndarray:
    """Samples of any numeric dtype as float32 in [-1, 1], scaled as audio libraries define integer PCM
    (soundfile, ``scipy.io.wavfile``): signed ``intN`` ÷ 2^(N−1) (int16 ÷ 32768, int32 ÷ 2147483648), unsigned
    ``uintN`` (x − 2^(N−1)) ÷ 2^(N−1) (uint8: (x − 128) ÷ 128, 8-bit WAV); floats as they are.

    Bool, complex, object, string or date arrays are refused (``InputError`` naming ``path``): their values are
    not samples.
    """
    x = np.asarray(x)
    kind = x.dtype.kind
    if kind == "f":
        return x.astype(np.float32, copy=False)
    if kind in "iu":
        full = float(2 ** (8 * x.dtype.itemsize - 1))
        y = x.astype(np.float64)
        if kind == "u":
            y -= full
        y *= 1.0 / full
        return y.astype(np.float32)
    raise InputError(path, f"audio samples must be numbers (float, or integer PCM such as int16), got a "
                           f"{x.dtype} array")


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

    Block by block (module docstring): memory is one native block plus the result. Mixing happens before
    resampling: both are linear, so the order does not change the result, and resampling one channel instead
    of all is cheaper.
    """
    dec = Decoded(path)
    where = dec.path
    if channel_weights is not None:
        to_mono(np.zeros((0, dec.channels), np.float32), channel_weights, where)     # refuse bad weights first
    stream = None
    if int(dec.sr) != int(sr):
        import soxr

        stream = soxr.ResampleStream(int(dec.sr), int(sr), 1, dtype="float32", quality=RESAMPLE_QUALITY)
    # the result is written into one buffer of the expected length (grown if ever short), not concatenated
    expect = (dec.declared or 0) * int(sr) // int(dec.sr) + 64
    out, n = np.empty(max(expect, 1024), np.float32), 0

    def put(y):
        nonlocal out, n
        if n + y.size > out.size:
            out = np.resize(out, max(2 * out.size, n + y.size))
        out[n:n + y.size] = y
        n += y.size

    for block in dec:
        y = to_mono(block, channel_weights, where)
        put(stream.resample_chunk(y) if stream is not None else y)
    if stream is not None:
        put(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    if n == 0:
        raise InputError(where, "audio is empty after resampling")
    # the header's length is exact for soundfile formats: the view wastes at most a few samples, a copy would
    # double the peak for a moment
    return out[:n] if out.size - n <= max(4096, n // 100) else out[:n].copy()
