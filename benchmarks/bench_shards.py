"""Shard storage: float16 vs float32 × none / lzf / gzip-1 (file size, write time, random-segment reads, error).

    python benchmarks/bench_shards.py [--mir1k /work/shared/data/MIR-1K] [--tracks 30] [--reads 3000]

Features are the real CFP of the first ``--tracks`` MIR-1K clips when `hkdsme.pipeline.cfp` and the data are
available, otherwise a stand-in with the same value range (log-compressed, min-max normalised noise with
harmonic ridges), which compresses roughly like the real thing but is flagged in the output.
Reads: random (track, segment) pairs through open h5py handles (files are in the page cache, so this
measures HDF5 + decompression cost, i.e. what a DataLoader worker pays per sample), "raw" as stored, "f32"
including numpy's cast to float32, "torch" casting with ``torch.from_numpy(a).float()`` on one thread
(numpy's float16 → float32 cast is ~15x slower than torch's); "mmap" reads the same chunks through ``np.memmap`` at
``dset.id.get_chunk_info(i).byte_offset`` (uncompressed only) and casts with torch.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch

from hkdsme.pipeline import grid, shards


def real_features(root: Path, n: int):
    from hkdsme.pipeline.audio import load_audio
    from hkdsme.pipeline.cfp import cfp

    clips = sorted((root / "Wavfile").glob("*.flac"))[:n]
    return [cfp(load_audio(c)) for c in clips]


def stand_in_features(n: int, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.uniform(300, 1200))                       # 3-12 s, like MIR-1K
        x = rng.gamma(0.5, 1.0, (3, grid.N_FREQ, t))
        f0 = rng.integers(60, 250, t)
        for h in (1, 2, 3, 4):                                # harmonic ridges
            rows = np.clip(f0 + np.rint(60 * np.log2(h)).astype(int), 0, grid.N_FREQ - 1)
            x[:, rows, np.arange(t)] += 20.0 / h
        x = np.log1p(x)
        lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
        out.append(((x - lo) / (hi - lo)).astype(np.float32))
    return out


def bench(feats, dtype, compression, folder: Path, n_reads: int, rng):
    folder.mkdir()
    level = 1 if compression == "gzip" else None
    t0 = time.perf_counter()
    for i, f in enumerate(feats):
        shards.write_shard(folder / f"{i}.h5", f, None, None, track_id=str(i), dataset="bench",
                           dtype=dtype, compression=compression, compression_opts=level)
    write_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in folder.iterdir())

    err = 0.0
    for i, f in enumerate(feats):
        err = max(err, float(np.abs(shards.read_track(folder / f"{i}.h5")[0] - f).max()))

    # no HDF5 chunk cache: with it, repeated picks of the few segments of these short tracks would be served
    # decompressed from memory, which a loader sampling a large cache does not get
    handles = [h5py.File(folder / f"{i}.h5", "r", rdcc_nbytes=0) for i in range(len(feats))]
    dsets = [h["features"] for h in handles]
    picks = [(k, int(rng.integers(dsets[k].shape[0]))) for k in rng.integers(len(dsets), size=n_reads)]
    t0 = time.perf_counter()
    for k, s in picks:
        dsets[k][s]
    raw_rate = n_reads / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for k, s in picks:
        dsets[k][s].astype(np.float32)
    read_rate = n_reads / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for k, s in picks:
        torch.from_numpy(dsets[k][s]).float()
    torch_rate = n_reads / (time.perf_counter() - t0)

    mmap_rate = float("nan")
    if compression is None:
        seg_shape = (3, grid.N_FREQ, grid.SEG_LEN)
        offsets = [[d.id.get_chunk_info(i).byte_offset for i in range(d.shape[0])] for d in dsets]
        maps = [np.memmap(folder / f"{i}.h5", dtype=np.uint8, mode="r") for i in range(len(feats))]
        nbytes = int(np.prod(seg_shape)) * np.dtype(dtype).itemsize
        t0 = time.perf_counter()
        for k, s in picks:
            o = offsets[k][s]
            torch.from_numpy(np.frombuffer(maps[k][o:o + nbytes], dtype=dtype).reshape(seg_shape)).float()
        mmap_rate = n_reads / (time.perf_counter() - t0)
    for h in handles:
        h.close()
    return size, write_s, raw_rate, read_rate, torch_rate, mmap_rate, err


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mir1k", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/MIR-1K")
    ap.add_argument("--tracks", type=int, default=30)
    ap.add_argument("--reads", type=int, default=3000)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)   # like a DataLoader worker
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")   # read-only mmap
    try:
        feats, source = real_features(a.mir1k, a.tracks), f"real CFP of {a.tracks} MIR-1K clips"
    except (ImportError, OSError, ValueError) as e:
        feats, source = stand_in_features(a.tracks), f"STAND-IN features ({type(e).__name__}: {e})"
    frames = sum(f.shape[2] for f in feats)
    print(f"source: {source}; {frames} frames = {frames / 100:.0f} s, "
          f"{sum(-(-f.shape[2] // 64) for f in feats)} segments; {a.reads} random segment reads")
    print(f"{'dtype':8} {'compr':7} {'MB':>7} {'MB/h':>7} {'write s':>8} {'h5 raw/s':>9} {'h5 f32/s':>9} "
          f"{'h5 torch/s':>10} {'mmap torch/s':>12} {'max|err|':>9}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in (np.float16, np.float32):
            for comp in (None, "lzf", "gzip"):       # gzip at level 1 (compression_opts)
                folder = Path(tmp) / f"{np.dtype(dtype).name}-{comp}"
                size, w, raw, r, tr, m, e = bench(feats, dtype, comp, folder, a.reads, rng)
                print(f"{np.dtype(dtype).name:8} {comp or 'none':7} {size / 1e6:7.1f} "
                      f"{size / 1e6 / (frames / 360000):7.0f} {w:8.2f} {raw:9.0f} {r:9.0f} {tr:10.0f} {m:12.0f} {e:9.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
