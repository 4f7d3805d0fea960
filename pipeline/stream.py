"""The streamed CFP: features of long audio block by block, equal to a whole-file ``cfp(x)`` (torch-free).

One implementation for every consumer: ``hkd-eval predict`` / the inference API (:mod:`hkdsme.evaluate.inference`),
``hkd-prep extract`` (:mod:`hkdsme.pipeline.extract`) and ``hkd-eval report``. Nothing here imports torch, so
extraction workers stay light.

For 8 kHz mono ``x`` with ``T = grid.n_frames(len(x))`` frames (frame ``i`` centred on sample ``(i + 1)·80``):

- Blocks. :func:`raw_cfp_blocks` runs ``cfp_raw`` on blocks of ``block_frames`` frames (a multiple of 64, so
  streaming never changes the network's 64-frame segmentation), each widened by ``CONTEXT_FRAMES`` frames of
  audio on both sides; the context frames are dropped, so every kept frame saw exactly the samples it sees in a
  whole-file CFP (the 768-sample window reaches 4.8 frames either side).
- Normalisation is global per channel, as in ``cfp()``: ``v = log(1 + raw)``, ``(v − min_T v) / (max_T v − min_T v)``.
  :func:`streamed_cfp` holds all of ``v`` (3.75 KB per frame) and scales it at the end; for long audio,
  :func:`streamed_extrema` (pass 1: only the 3 per-channel minima and maxima) and :func:`normalised_blocks`
  (pass 2: each block recomputed and scaled with the global extrema) bound memory by one block, at the price of
  computing the CFP twice. Both regimes give the same bits as ``cfp(x)``.
"""
from __future__ import annotations

import math

import numpy as np

from hkdsme.pipeline import cfp as _cfp
from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError

DEFAULT_BLOCK_S = 30.0            # audio per CFP block (the STFT of a block is the largest temporary)
CONTEXT_FRAMES = 8                # > 768 / 2 / 80 = 4.8 frames of window reach on each side
MAX_HELD_FRAMES = 10 * 60 * 100   # up to 10 min: hold the CFP (225 MB) and do one pass; longer: two passes


def frames_per_block(block_s: float = DEFAULT_BLOCK_S) -> int:
    """Frames per block: ``block_s`` seconds rounded up to whole 64-frame segments."""
    return max(1, math.ceil(block_s * 100 / grid.SEG_LEN)) * grid.SEG_LEN


def raw_block(x: np.ndarray, a: int, b: int, context: int = CONTEXT_FRAMES) -> np.ndarray:
    """Raw CFP (3, 320, b − a) of frames ``[a, b)`` of ``x`` (see :func:`raw_cfp_blocks`)."""
    c = min(context, a)
    raw = _cfp.cfp_raw(x[(a - c) * grid.HOP:min(len(x), (b + context + 1) * grid.HOP)])
    return raw[:, :, c:c + (b - a)]


def raw_cfp_blocks(x: np.ndarray, block_frames: int, context: int = CONTEXT_FRAMES):
    """Yield ``(first_frame, raw (3, 320, n))`` covering frames ``0..T-1`` of ``x`` in blocks of ``block_frames``.

    Block ``[a, b)`` is computed from samples ``[(a − c)·80, (b + context + 1)·80)`` with ``c = min(context, a)``:
    local frame ``j`` is then centred on global sample ``(a − c + j + 1)·80``, i.e. global frame ``a − c + j``.
    """
    n_total = grid.n_frames(len(x))
    if n_total < 2:
        _cfp.cfp_raw(x)  # raises the CFP's own InputError for too-short audio
    for a in range(0, n_total, block_frames):
        yield a, raw_block(x, a, min(a + block_frames, n_total), context)


def log_extrema(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(min, max)`` of a (3, 320, n) block."""
    return v.min(axis=(1, 2)), v.max(axis=(1, 2))


def streamed_extrema(x: np.ndarray, block_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1: per-channel min and max of ``log(1 + raw CFP)`` over the whole of ``x`` (the normalisation's)."""
    lo = np.full(3, np.inf, dtype=np.float32)
    hi = np.full(3, -np.inf, dtype=np.float32)
    for _, raw in raw_cfp_blocks(x, block_frames):
        blo, bhi = log_extrema(_cfp.log_compress(raw))
        np.minimum(lo, blo, out=lo)
        np.maximum(hi, bhi, out=hi)
    return lo, hi


def normalised_blocks(x: np.ndarray, lo, hi, block_frames: int, path=None):
    """Pass 2: yield ``(first_frame, normalised CFP block)``, equal to the frames of ``cfp(x)``; ``InputError``
    naming ``path`` if a block is not finite."""
    for a, raw in raw_cfp_blocks(x, block_frames):
        v = _cfp.scale_(_cfp.log_compress(raw), lo, hi)
        if not (np.isfinite(v.min()) and np.isfinite(v.max())):
            raise InputError(path, "features contain NaN/inf")
        yield a, v


def streamed_cfp(x: np.ndarray, block_frames: int | None = None, threads: int = 1) -> np.ndarray:
    """Normalised CFP (3, 320, T) of 8 kHz audio computed block by block (equal to a whole-file ``cfp(x)``).

    ``threads > 1``: the blocks are computed by that many threads (the CFP's numba kernels and FFTs release the
    GIL), in at least ``4·threads`` equal blocks so none is left alone at the end; every block is exact, so the
    result is the same array. Holds the whole (3, 320, T) float32 result (3.75 KB per frame); see
    :func:`streamed_extrema` / :func:`normalised_blocks` for the bounded-memory path used on long audio.
    """
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1))
    n_total = grid.n_frames(x.size)
    feats = np.empty((3, grid.N_FREQ, n_total), dtype=np.float32)
    block_frames = block_frames or frames_per_block(DEFAULT_BLOCK_S)
    threads = max(1, int(threads))
    if threads == 1 or n_total < 2 * grid.SEG_LEN:
        for a, raw in raw_cfp_blocks(x, block_frames):
            _cfp.log_compress(raw, out=feats[:, :, a:a + raw.shape[-1]])
    else:
        from concurrent.futures import ThreadPoolExecutor

        n_blocks = max(4 * threads, -(-n_total // block_frames))
        step = -(-n_total // (n_blocks * grid.SEG_LEN)) * grid.SEG_LEN          # whole segments per block

        def one(a: int) -> None:
            b = min(a + step, n_total)
            _cfp.log_compress(raw_block(x, a, b), out=feats[:, :, a:b])

        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hkd-cfp") as pool:
            list(pool.map(one, range(0, n_total, step)))
    return _cfp.scale_(feats, *log_extrema(feats))
