"""Segments/s of the training loader from a warm page cache: memory-mapped ShardDataset (0 / 1 / 2 workers)
vs a naive loader that first reads every array into RAM with h5py (its load time included).

    python benchmarks/bench_loader.py [--tracks 40] [--frames 3000] [--batch 32] [--epochs 2]

Writes a synthetic cache (float16, one uncompressed chunk per segment, as ``hkd-prep extract``) to a temp
folder, reads it once to warm the page cache, then times full shuffled epochs. Prints a table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from train_helpers import write_cache  # noqa: E402

from hkdsme.train.dataset import SegmentBatchSampler, ShardDataset, make_loader  # noqa: E402


def naive_epochs(ds: ShardDataset, batch: int, epochs: int) -> tuple[float, int]:
    """Load every shard fully with h5py, then serve shuffled batches by fancy indexing + float32 cast."""
    t0 = time.perf_counter()
    feats, bins, masks = [], [], []
    for p in ds.paths:
        with h5py.File(p, "r") as h:
            feats.append(h["features"][()])
            bins.append(h["bins"][()])
            masks.append(h["mask"][()])
    feats, bins, masks = np.concatenate(feats), np.concatenate(bins), np.concatenate(masks)
    n = 0
    for e in range(epochs):
        for b in _batches(len(ds), batch, e):
            x = torch.from_numpy(feats[b].astype(np.float32))
            _ = torch.from_numpy(bins[b].astype(np.int64)), torch.from_numpy(masks[b])
            n += len(x)
    return time.perf_counter() - t0, n


def _batches(n, batch, epoch):
    s = SegmentBatchSampler(n, batch, seed=0)
    s.set_epoch(epoch)
    return list(s)


def mmap_epochs(ds: ShardDataset, batch: int, epochs: int, workers: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    sampler = SegmentBatchSampler(len(ds), batch, seed=0)
    for e in range(epochs):
        sampler.set_epoch(e)
        for b in make_loader(ds, sampler, workers=workers):
            n += len(b["x"])
    return time.perf_counter() - t0, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=40)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_cache(Path(tmp) / "cache", n_tracks=a.tracks, frames=(a.frames,))
        ds = ShardDataset([root])
        mb = sum(p.stat().st_size for p in ds.paths) / 2**20
        mmap_epochs(ds, a.batch, 1, 0)                    # warm the page cache
        print(f"{len(ds)} segments, {len(ds.paths)} shards, {mb:.0f} MiB; batch {a.batch}, {a.epochs} epochs")
        print(f"{'loader':<34}{'seconds':>9}{'segments/s':>12}")
        rows = [("naive: h5py load all, then index", *naive_epochs(ds, a.batch, a.epochs))]
        for w in (0, 1, 2):
            rows.append((f"mmap ShardDataset, {w} workers", *mmap_epochs(ds, a.batch, a.epochs, w)))
        for name, dt, n in rows:
            print(f"{name:<34}{dt:>9.2f}{n / dt:>12.0f}")


if __name__ == "__main__":
    main()
