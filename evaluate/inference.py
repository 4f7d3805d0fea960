"""Inference API: melody f0 of any audio, every 10 ms (import ``hkdsme.evaluate.inference``).

A ladder in the style of torchcrepe; each rung returns or writes ``(times, f0)`` (float64, f0 in Hz, 0 = unvoiced,
frame ``i`` at ``(i + 1)·10 ms``), plus on request the per-frame confidence ``1 − p(unvoiced)`` (float32), and
shares the per-process cache of loaded networks:

- :func:`predict` ``(audio, sr, ...)``: an array with its sample rate (resampled to 8 kHz, channels averaged);
- :func:`predict_from_file` ``(path, ...)``: any file ``pipeline.audio`` decodes;
- :func:`predict_from_files_to_files` ``(paths, outputs, ...)``: many files, one melody file each (csv, mirex or
  jams), in worker processes or with decoding + CFP of the next file overlapped with the network on the current
  one; a bad input or an unwritable output is recorded and the others continue (:mod:`hkdsme.evaluate.files`);
- :func:`extract_melody`: the top-level convenience (``hkdsme.extract_melody``), a path or an array;
- :class:`Predictor`: the loaded network and the streaming pipeline underneath all of them.

Batch file handling of the command line (folders, output names, ``--overwrite``) is in
:mod:`hkdsme.evaluate.predict`, built on :func:`predict_from_files_to_files`.

Pipeline for 8 kHz mono ``x`` with ``T = grid.n_frames(len(x))`` frames (frame ``i`` at ``(i+1)·10 ms``):

1. CFP, streamed (:mod:`hkdsme.pipeline.stream`). ``cfp_raw`` runs on blocks of ``block_s`` seconds of audio, each widened by
   ``CONTEXT_FRAMES`` frames of audio on both sides; the context frames are dropped, so every kept frame saw
   exactly the samples it sees in a whole-file CFP (the 768-sample window reaches 4.8 frames either side).
2. Normalisation is global per channel, as in ``cfp()``: ``v = log(1 + raw)``, ``(v - min_T v) / (max_T v - min_T v)``
   over the whole track. Two regimes, both exact:

   - ``T <= max_held_frames`` (default 10 min): one CFP pass; the raw blocks are kept (3·320·4 B = 3.75 KB per
     frame, 22.5 MB per minute of audio), then normalised together.
   - longer audio: two CFP passes. Pass 1 keeps only the 3 per-channel minima and maxima; pass 2 recomputes each
     block, normalises it with the global extrema and runs the network on it right away. Memory is bounded by
     the block size (plus the output: 16 B per frame), at the price of computing the CFP twice.

3. The network sees non-overlapping 64-frame segments (frame ``64·s`` starts segment ``s``, exactly as in
   training and in the shards), batched by ``batch_size``; the last one is zero-padded and its padding dropped.
   Blocks are a multiple of 64 frames, so streaming never changes the segmentation.
4. Decoding (:mod:`hkdsme.model.decode`): by default the voicing decoder — voiced iff ``1 − p(row 0) ≥ θ``
   (θ stored in the checkpoint by calibration, else 0.5), pitch = sub-bin refined argmax over rows 1..320;
   ``decode="argmax"`` gives the paper's ``k = argmax`` over all 321 rows, ``f0 = 31·2^(k/60)`` Hz, 0 when ``k = 0``.
   The confidence (``return_confidence=True``) is ``1 − p(row 0)`` under either decoder, from the same pass.

Front ends (``front_end``): ``"cfp-8k"``, the pipeline above, for every model; ``"native"``, only for the
published MSNet vocal network (``model="msnet-vocal"``): its own input, the CFP of 44.1 kHz audio every 256
samples (:mod:`hkdsme.pipeline.cfp_native`). The network then runs on chunks of up to ``NATIVE_CHUNK`` native
frames (as its authors ran it), its posteriors over the 321 rows are interpolated linearly in time onto the
10 ms frame times (:func:`hkdsme.pipeline.cfp_native.to_grid`), and the decoders above read them. The whole
track's native CFP is held (0.66 MB per second of audio). ``front_end=None``: the checkpoint's
``extra["front_end"]`` if it has one, else ``"cfp-8k"``.

There is no silent fallback to a random network: without ``checkpoint`` the package's embedded default model
(:mod:`hkdsme.evaluate.models`) is used, and if it is absent
:class:`~hkdsme.evaluate.models.NoDefaultModel` says how to get one.
"""
from __future__ import annotations

import math
from importlib import resources  # noqa: F401 (re-exported: tests patch resources.files)
from pathlib import Path

import numpy as np
import torch

from hkdsme.model.runtime import autocast
from hkdsme.pipeline import cfp_native, grid
from hkdsme.pipeline.cfp import log_compress, scale_, validate_audio
from hkdsme.evaluate.files import predict_from_files_to_files  # noqa: F401 (the ladder's third rung)
from hkdsme.evaluate.models import resolve_checkpoint
from hkdsme.pipeline.errors import InputError
# the streamed CFP (shared with hkd-prep extract and report); its names stay importable from here
from hkdsme.pipeline.stream import (  # noqa: F401
    CONTEXT_FRAMES, DEFAULT_BLOCK_S, MAX_HELD_FRAMES, raw_cfp_blocks, streamed_cfp,
)
from hkdsme.pipeline.stream import frames_per_block as _block_frames
from hkdsme.pipeline.stream import log_extrema as _log_extrema  # noqa: F401
from hkdsme.pipeline.stream import raw_block as _raw_block  # noqa: F401

DEFAULT_BATCH = None              # segments per forward pass; None = runtime.inference_batch (by measurement)
FRONT_ENDS = ("cfp-8k", "native")  # the project's 8 kHz CFP; the MSNet vocal network's own 44.1 kHz CFP
NATIVE_CHUNK = 5120               # native frames per forward pass (the published model's inference code)


def _device(device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU; use device='cpu'")
    return dev


def check_audio(x, path=None) -> np.ndarray:
    """float32 contiguous 1-D copy of ``x``; :class:`InputError` naming ``path`` if empty, non-finite or silent.

    The checks are :func:`hkdsme.pipeline.cfp.validate_audio`'s (the one audio validator); too-short audio is
    left to the CFP, which names it the same way.
    """
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1))
    return validate_audio(x, path=path, min_frames=0, reject_silent=True)


def _decoder(decode: str, threshold, meta: dict, path) -> tuple[str, float | None]:
    """``(decode, θ)``: θ given > θ stored in the checkpoint (``extra["voicing_threshold"]``) > 0.5."""
    from hkdsme.model.decode import DECODERS, VOICING_THRESHOLD, check_threshold

    if decode not in DECODERS:
        raise ValueError(f"decode must be one of {', '.join(DECODERS)}, got {decode!r}")
    if decode == "argmax":
        return decode, None
    if threshold is not None:
        return decode, check_threshold(threshold)
    stored = (meta.get("extra") or {}).get("voicing_threshold")
    if stored is None:
        return decode, VOICING_THRESHOLD
    try:
        return decode, check_threshold(stored)
    except ValueError as e:
        raise InputError(path, f"checkpoint metadata: {e}") from None


def _front_end(front_end, meta: dict, path) -> str:
    """The front end: ``front_end`` given > the checkpoint's ``extra["front_end"]`` > ``"cfp-8k"``; ``"native"``
    only for a checkpoint of the MSNet vocal network (``config["source"] == "msnet-vocal"``)."""
    stored = (meta.get("extra") or {}).get("front_end")
    if front_end is None and stored is not None and stored not in FRONT_ENDS:
        raise InputError(path, f"checkpoint metadata: front_end {stored!r} is not one of {', '.join(FRONT_ENDS)}")
    fe = front_end if front_end is not None else (stored or "cfp-8k")
    if fe not in FRONT_ENDS:
        raise ValueError(f"front_end must be one of {', '.join(FRONT_ENDS)}, got {fe!r}")
    if fe == "native" and (meta.get("config") or {}).get("source") != "msnet-vocal":
        raise ValueError(f"front_end='native' is the input of the published MSNet vocal network "
                         f"(model='msnet-vocal'); {Path(path).name} reads the 8 kHz CFP")
    return fe


class Predictor:
    """A loaded network plus the streaming CFP → f0 pipeline of the module docstring.

    ``checkpoint``: a student or teacher checkpoint written by ``model.checkpoint.save_checkpoint`` (its feature
    hash must equal ``grid.feature_hash()``); None → the embedded default model. ``block_s`` / ``max_held_frames``
    trade memory for speed without changing the result. ``front_end``: ``"cfp-8k"`` or ``"native"`` (module
    docstring); the audio this predictor takes is at ``self.sr`` Hz (8000, or 44100 for ``"native"``).
    """

    def __init__(self, checkpoint=None, device="cpu", batch_size: int | None = DEFAULT_BATCH, *,
                 block_s: float = DEFAULT_BLOCK_S, max_held_frames: int = MAX_HELD_FRAMES, precision: str = "auto",
                 channels_last: bool | None = None, decode: str = "voicing", voicing_threshold: float | None = None,
                 model: str | None = None, front_end: str | None = None):
        from hkdsme.model import runtime
        from hkdsme.model.checkpoint import load_checkpoint

        self.device = _device(device)
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.device.type == "cpu":
            runtime.configure_threads()
        self.checkpoint = resolve_checkpoint(checkpoint, model)
        self.model, self.meta = load_checkpoint(self.checkpoint, expected_feature_hash=grid.feature_hash(),
                                                map_location=self.device)
        self.model.eval()
        int8_cal = (self.meta.get("extra") or {}).get("int8") if self.meta.get("kind") == "student" else None
        try:
            self.precision_info = runtime.resolve_precision(precision, self.device, int8_model=int8_cal is not None)
        except ValueError as e:
            raise ValueError(f"{Path(self.checkpoint).name}: {e}") from None
        self.precision = self.precision_info.name
        if self.precision == "int8":      # BatchNorms folded, the large convolutions in int8 (model.int8)
            from hkdsme.model.int8 import int8_model

            try:
                self.model = int8_model(self.model, int8_cal, melody_only=True)
            except ValueError as e:
                raise InputError(self.checkpoint, f"checkpoint metadata: {e}") from None
        if getattr(self.model, "heads", False):
            self.model.heads = False  # projector heads are training-only; the melody logits do not use them
        self.model.logits_only = True     # decoding reads the logits; the networks' softmax would be unused
        for m in self.model.modules():
            if isinstance(m, torch.nn.SELU):
                m.inplace = True      # same numbers, one less temporary per layer (~5 % faster inference)
        self.channels_last = (runtime.use_channels_last(self.device, self.meta["kind"], self.precision)
                              if channels_last is None else bool(channels_last))
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = (runtime.inference_batch(self.device, self.precision) if batch_size is None
                           else int(batch_size))
        self.decode, self.voicing_threshold = _decoder(decode, voicing_threshold, self.meta, self.checkpoint)
        self.front_end = _front_end(front_end, self.meta, self.checkpoint)
        self.sr = cfp_native.SR if self.front_end == "native" else grid.SR
        self.block_frames = _block_frames(block_s)
        self.max_held_frames = int(max_held_frames)
        # what a worker process needs to build the same predictor (evaluate.parallel)
        self.spec = dict(checkpoint=str(self.checkpoint), device=str(self.device), batch_size=self.batch_size,
                         block_s=block_s, max_held_frames=self.max_held_frames, precision=precision,
                         channels_last=self.channels_last, decode=self.decode,
                         voicing_threshold=self.voicing_threshold, front_end=self.front_end)

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "?")

    def _segment_logits(self, feats: np.ndarray):
        """Yield ``(first frame, frames, melody logits (n, 321, 64))`` over 64-frame segments of ``feats`` (3, 320, T),
        the tail zero-padded (its padding is dropped by the callers)."""
        t = feats.shape[-1]
        n_seg = -(-t // grid.SEG_LEN)
        for s0 in range(0, n_seg, self.batch_size):
            s1 = min(s0 + self.batch_size, n_seg)
            f0_, f1_ = s0 * grid.SEG_LEN, min(s1 * grid.SEG_LEN, t)
            chunk = np.zeros((3, grid.N_FREQ, (s1 - s0) * grid.SEG_LEN), dtype=np.float32)
            chunk[:, :, :f1_ - f0_] = feats[:, :, f0_:f1_]
            # (3, 320, n·64) → (n, 3, 320, 64): segment i holds frames 64i .. 64i+63
            batch = torch.from_numpy(chunk.reshape(3, grid.N_FREQ, s1 - s0, grid.SEG_LEN).transpose(2, 0, 1, 3))
            batch = batch.to(self.device).contiguous(
                memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
            with torch.inference_mode(), autocast(self.precision, self.device):
                logits = self.model(batch).logits
            yield f0_, f1_ - f0_, logits[:, :1].float()

    def bins_from_features(self, feats: np.ndarray) -> np.ndarray:
        """(3, 320, T) normalised CFP → (T,) int64 argmax bins (the paper's decoder)."""
        from hkdsme.model.decode import bins_from_output

        out = np.zeros(feats.shape[-1], dtype=np.int64)
        for a, n, logits in self._segment_logits(feats):
            out[a:a + n] = bins_from_output(logits).reshape(-1)[:n].cpu().numpy()
        return out

    def voicing_from_features(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(3, 320, T) normalised CFP → ``(voicing, hz)`` per frame (:func:`hkdsme.model.decode.voicing_and_pitch`)."""
        from hkdsme.model.decode import voicing_and_pitch

        v = np.zeros(feats.shape[-1], dtype=np.float32)
        h = np.zeros(feats.shape[-1], dtype=np.float64)
        for a, n, logits in self._segment_logits(feats):
            vv, hh = voicing_and_pitch(logits)
            v[a:a + n] = vv.reshape(-1)[:n].cpu().numpy()
            h[a:a + n] = hh.reshape(-1)[:n].cpu().numpy()
        return v, h

    def f0_from_features(self, feats: np.ndarray, return_confidence: bool = False):
        """(3, 320, T) normalised CFP → (T,) f0 in Hz (0 = unvoiced) with this predictor's decoder; with
        ``return_confidence``, ``(f0, confidence)``: also the (T,) float32 voicing probability ``1 − p(row 0)``."""
        f0, conf = self._decode(feats, return_confidence)
        return (f0, conf) if return_confidence else f0

    def _decode(self, feats: np.ndarray, want_conf: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """``(f0, confidence or None)`` of (3, 320, T) features, from one network pass."""
        from hkdsme.model.decode import (bins_from_output, bins_to_hz, f0_from_voicing, voicing_and_pitch,
                                         voicing_probability)

        feats = np.asarray(feats, dtype=np.float32)
        f0 = np.zeros(feats.shape[-1], dtype=np.float64)
        conf = np.zeros(feats.shape[-1], dtype=np.float32)     # the voicing decoder needs it either way
        for a, n, logits in self._segment_logits(feats):
            if self.decode == "argmax":
                f0[a:a + n] = bins_to_hz(bins_from_output(logits).reshape(-1)[:n].cpu().numpy())
                if want_conf:
                    conf[a:a + n] = voicing_probability(logits).reshape(-1)[:n].cpu().numpy()
            else:
                v, h = voicing_and_pitch(logits)
                conf[a:a + n] = v.reshape(-1)[:n].cpu().numpy()
                f0[a:a + n] = f0_from_voicing(conf[a:a + n], h.reshape(-1)[:n].cpu().numpy(), self.voicing_threshold)
        return f0, (conf if want_conf else None)

    def predict_features(self, feats: np.ndarray, return_confidence: bool = False):
        """(3, 320, T) normalised CFP → ``(times, f0[, confidence])`` on the 10 ms grid, f0 in Hz, 0 = unvoiced."""
        f0, conf = self._decode(feats, return_confidence)
        return (grid.frame_times(f0.size), f0) + ((conf,) if return_confidence else ())

    def predict_audio(self, x, *, path=None, return_confidence: bool = False, return_spectrum: bool = False):
        """Mono audio at ``self.sr`` (8 kHz; 44.1 kHz for the native front end) → ``(times, f0)``, then the (T,)
        float32 voicing probability ``1 − p(unvoiced)`` if ``return_confidence``, then the normalised spectrum
        channel (320, T) if ``return_spectrum`` (native: mapped onto the 10 ms grid as the posteriors are).

        Raises :class:`InputError` naming ``path`` for non-finite, silent or too-short audio.
        """
        return self._back(self._front(x, path), return_spectrum, return_confidence)

    def _front(self, x, path=None, threads: int | None = None):
        """CPU-only first stage (safe in another thread): checked audio and, up to ``max_held_frames``, its CFP
        (on ``threads`` threads; None = this process's torch threads: nothing else runs meanwhile)."""
        if self.front_end == "native":
            return self._front_native(x, path)
        x = check_audio(x, path)
        n = grid.n_frames(x.size)
        threads = torch.get_num_threads() if threads is None and self.device.type == "cpu" else (threads or 1)
        try:
            feats = streamed_cfp(x, self.block_frames, threads) if n <= self.max_held_frames else None
        except InputError as e:
            raise InputError(path, e.reason) from None
        return x, n, feats, path

    def _back(self, front, want_spec: bool, want_conf: bool = False):
        """Second stage: the network (and, for long audio, the two-pass CFP) →
        ``(times, f0[, confidence][, spectrum])``."""
        x, n, feats, path = front
        try:
            if self.front_end == "native":
                f0, conf, spec = self._back_native(feats, n, want_spec, want_conf)
            elif feats is not None:
                (f0, conf), spec = self._decode(feats, want_conf), (feats[0].copy() if want_spec else None)
            else:
                f0, conf, spec = self._two_pass(x, n, want_spec, want_conf)
        except InputError as e:
            raise InputError(path, e.reason) from None
        return (grid.frame_times(n), np.asarray(f0, dtype=np.float64)) + ((conf,) if want_conf else ()) + (
            (spec,) if want_spec else ())

    def _front_native(self, x, path=None):
        """Checked 44.1 kHz audio, its 10 ms frame count and its normalised native CFP (3, 320, T5)."""
        x = cfp_native.check_audio(np.asarray(x, dtype=np.float32).reshape(-1), path, reject_silent=True)
        n = cfp_native.grid_len(x.size)
        if n < 2:
            raise InputError(path, f"audio too short: {x.size} samples (< 2 frames of 10 ms)")
        return x, n, cfp_native.cfp_native(x), path

    def native_posteriors(self, feats: np.ndarray) -> np.ndarray:
        """Native CFP (3, 320, T5) → the network's posteriors (321, T5) float32 (softmax over rows of channel 0),
        run on consecutive chunks of up to ``NATIVE_CHUNK`` frames."""
        t5 = feats.shape[-1]
        out = np.empty((grid.N_BINS, t5), dtype=np.float32)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for a in range(0, t5, NATIVE_CHUNK):
            b = min(a + NATIVE_CHUNK, t5)
            x = torch.from_numpy(np.ascontiguousarray(feats[None, :, :, a:b], dtype=np.float32))
            with torch.inference_mode(), autocast(self.precision, self.device):
                logits = self.model(x.to(self.device).contiguous(memory_format=fmt)).logits
            out[:, a:b] = torch.softmax(logits[0, 0].float(), dim=0).cpu().numpy()
        return out

    def _back_native(self, feats, n, want_spec, want_conf):
        """Native CFP → posteriors → the 10 ms grid (``n`` frames) → ``(f0, confidence, spectrum or None)``."""
        from hkdsme.model.decode import bins_from_output, bins_to_hz, f0_from_voicing, voicing_and_pitch

        to_grid = cfp_native.to_grid

        post = to_grid(self.native_posteriors(feats), n)[None]               # (1, 321, n)
        conf = (1.0 - post[0, 0]).astype(np.float32)
        if self.decode == "argmax":
            f0 = bins_to_hz(bins_from_output(post))
        else:
            _, hz = voicing_and_pitch(post, logits=False)
            f0 = f0_from_voicing(conf, hz, self.voicing_threshold)
        return f0, (conf if want_conf else None), (to_grid(feats[0], n) if want_spec else None)

    def _two_pass(self, x, n, want_spec, want_conf):
        from hkdsme.pipeline.stream import normalised_blocks, streamed_extrema

        lo, hi = streamed_extrema(x, self.block_frames)
        f0 = np.empty(n, dtype=np.float64)
        conf = np.empty(n, dtype=np.float32) if want_conf else None
        spec = np.empty((grid.N_FREQ, n), dtype=np.float32) if want_spec else None
        for a, v in normalised_blocks(x, lo, hi, self.block_frames):
            b = a + v.shape[-1]
            f0[a:b], c = self._decode(v, want_conf)
            if want_conf:
                conf[a:b] = c
            if want_spec:
                spec[:, a:b] = v[0]
        return f0, conf, spec

    def predict_file(self, path, *, return_confidence: bool = False, return_spectrum: bool = False):
        """Decode ``path`` (any format ``pipeline.audio`` reads), then :meth:`predict_audio`."""
        return self._back(self._front_file(path), return_spectrum, return_confidence)

    def _front_file(self, path, threads: int | None = None):
        from hkdsme.pipeline.audio import load_audio, source_path

        return self._front(load_audio(path, sr=self.sr), source_path(path), threads)

    def predict_many(self, paths, *, return_confidence: bool = False, return_spectrum: bool = False,
                     prefetch: bool = True, jobs: int = 1):
        """Yield ``(path, result or InputError)`` for every path, in order.

        ``jobs > 1`` (CPU only): whole files in that many worker processes with ``usable cores // jobs`` threads
        each (:mod:`hkdsme.evaluate.parallel`); the same numbers, faster for many files on few cores. Otherwise,
        with ``prefetch``, decoding + CFP of file ``i+1`` runs in a worker thread while the network works on file
        ``i`` (numba, scipy.fft, soxr and torch release the GIL), so the two stages overlap. Same results as
        :meth:`predict_file` one by one.
        """
        from concurrent.futures import ThreadPoolExecutor

        paths = list(paths)
        jobs = min(int(jobs), len(paths))
        if jobs > 1 and self.device.type == "cpu":
            from hkdsme.evaluate.parallel import predict_parallel

            threads = max(1, torch.get_num_threads() // jobs)     # this process's threads (set in __init__)
            for _, path, res in predict_parallel(self.spec, paths, jobs, threads, return_confidence=return_confidence,
                                                 return_spectrum=return_spectrum):
                yield path, res
            return
        if not prefetch or len(paths) < 2:
            for p in paths:
                try:
                    yield p, self.predict_file(p, return_confidence=return_confidence,
                                               return_spectrum=return_spectrum)
                except InputError as e:
                    yield p, e
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hkd-cfp") as pool:
            nxt = pool.submit(self._front_file, paths[0])
            for i, p in enumerate(paths):
                cur = nxt
                if i + 1 < len(paths):        # one CFP thread: it overlaps the network on the current file
                    nxt = pool.submit(self._front_file, paths[i + 1], 1)
                try:
                    yield p, self._back(cur.result(), return_spectrum, return_confidence)
                except InputError as e:
                    yield p, e


def _to_rate(audio, sr, rate: int = grid.SR) -> np.ndarray:
    from hkdsme.pipeline.audio import resample, to_float

    x = to_float(audio)                  # integer PCM scaled by its full range; bool / object refused
    if x.ndim == 2:  # (n, channels) as soundfile returns it, or (channels, n) as librosa does
        x = x.mean(axis=1 if x.shape[0] > x.shape[1] else 0)
    if x.ndim != 1:
        raise InputError(None, f"audio array must be 1-D (or 2-D multichannel), got shape {x.shape}")
    if sr is None:
        raise ValueError("an audio array needs its sample rate: extract_melody(x, sr=44100)")
    return resample(x, int(sr), rate)


def _is_source(audio) -> bool:
    """A path (``str``, ``bytes``, ``os.PathLike``) or a binary file object, rather than samples."""
    import os

    return isinstance(audio, (str, bytes, os.PathLike)) or hasattr(audio, "read")


_PREDICTORS: dict = {}
_MAX_PREDICTORS = 4


def _cached_predictor(checkpoint, device, batch_size, precision, decode="voicing", voicing_threshold=None,
                      model=None, front_end=None):
    """One loaded network per (checkpoint file and mtime, device, batch, precision) per process."""
    path = resolve_checkpoint(checkpoint, model).resolve()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None                     # missing file: let Predictor raise its own error
    key = (str(path), stamp, str(device), batch_size, precision, decode, voicing_threshold, front_end)
    pred = _PREDICTORS.pop(key, None) or Predictor(checkpoint=path, device=device, batch_size=batch_size,
                                                    precision=precision, decode=decode,
                                                    voicing_threshold=voicing_threshold, front_end=front_end)
    _PREDICTORS[key] = pred              # most recently used last
    while len(_PREDICTORS) > _MAX_PREDICTORS:
        _PREDICTORS.pop(next(iter(_PREDICTORS)))
    return pred


def extract_melody(audio, sr=None, checkpoint=None, device="cpu", batch_size: int | None = DEFAULT_BATCH,
                   precision: str = "auto", decode: str = "voicing", voicing_threshold: float | None = None,
                   model: str | None = None, return_confidence: bool = False, front_end: str | None = None):
    """Melody of ``audio`` every 10 ms: ``(times, f0)`` float64, f0 in Hz, 0 = unvoiced; with
    ``return_confidence``, ``(times, f0, confidence)``.

    ``audio``: a file path (``str``, ``bytes``, ``os.PathLike``), a binary file object (formats soundfile reads),
    or an array with its sample rate ``sr`` (resampled to 8 kHz with soxr HQ; multichannel arrays are averaged;
    integer PCM is scaled by its full range: int16 ÷ 32768, int32 ÷ 2^31, uint8 (x − 128) ÷ 128). ``checkpoint``:
    any checkpoint path; ``model``: an embedded model by name, ``"hkdsme"``, ``"hkdsme-mir1k"``, ``"supervised"``,
    ``"ftanet"`` or ``"msnet-vocal"`` (docs/model_card.md); neither → the embedded default. The network is loaded once per process
    and reused by later calls with the same arguments. ``decode``: ``"voicing"`` (voiced iff ``1 − p(unvoiced) ≥
    voicing_threshold``; None → the checkpoint's calibrated θ, else 0.5; 0 → every frame voiced, f0 = the pitch
    candidate of each frame) or ``"argmax"`` (the paper's). ``precision``: ``"auto"`` = bf16 where the hardware
    runs it natively, else fp32.

    ``confidence`` (float32, one per frame): the voicing probability ``1 − p(unvoiced row)`` of the melody
    channel — exactly what the voicing decoder compares with θ; the same quantity under ``decode="argmax"``.
    The f0 is the same whether or not it is asked for. :func:`hkdsme.apply_voicing_threshold` applies another θ
    afterwards (:func:`hkdsme.model.decode.apply_voicing_threshold`: to lower θ, predict with
    ``voicing_threshold=0``).

    ``front_end``: ``"cfp-8k"`` (the project's 8 kHz CFP) or, with ``model="msnet-vocal"`` only, ``"native"``
    (the network's own 44.1 kHz CFP; audio resampled to 44.1 kHz instead); None → the checkpoint's choice,
    else ``"cfp-8k"``. The output is on the 10 ms grid either way.
    """
    pred = _cached_predictor(checkpoint, device, batch_size, precision, decode, voicing_threshold, model, front_end)
    if _is_source(audio):
        if sr is not None:
            raise ValueError("sr is only for array input; a file carries its own sample rate")
        return pred.predict_file(audio, return_confidence=return_confidence)
    return pred.predict_audio(_to_rate(audio, sr, pred.sr), return_confidence=return_confidence)


def predict(audio, sr, checkpoint=None, device="cpu", batch_size: int | None = DEFAULT_BATCH, precision: str = "auto",
            decode: str = "voicing", voicing_threshold: float | None = None,
            model: str | None = None, return_confidence: bool = False,
            front_end: str | None = None) -> tuple[np.ndarray, ...]:
    """Melody of the audio array ``audio`` sampled at ``sr`` Hz: ``(times, f0[, confidence])``.

    ``audio``: 1-D, or 2-D ``(n, channels)`` / ``(channels, n)`` (averaged); resampled to 8 kHz with soxr HQ
    (44.1 kHz for the native front end). Other arguments as :func:`extract_melody`.
    """
    if _is_source(audio):
        raise TypeError("predict() takes an audio array; use predict_from_file() for a path or file object")
    pred = _cached_predictor(checkpoint, device, batch_size, precision, decode, voicing_threshold, model, front_end)
    return pred.predict_audio(_to_rate(audio, sr, pred.sr), return_confidence=return_confidence)


def predict_from_file(path, checkpoint=None, device="cpu", batch_size: int | None = DEFAULT_BATCH, precision: str = "auto",
                      decode: str = "voicing", voicing_threshold: float | None = None,
                      model: str | None = None, return_confidence: bool = False,
                      front_end: str | None = None) -> tuple[np.ndarray, ...]:
    """Melody of the audio file ``path``: ``(times, f0[, confidence])`` (arguments as :func:`extract_melody`);
    :class:`InputError` naming the file if unusable."""
    pred = _cached_predictor(checkpoint, device, batch_size, precision, decode, voicing_threshold, model, front_end)
    return pred.predict_file(path, return_confidence=return_confidence)
