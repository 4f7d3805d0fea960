"""Shared fixture of the train tests: tiny synthetic shard caches.

Not a test module (no ``test_`` prefix); imported by ``tests/test_train_*.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from hkdsme.pipeline import grid


def write_cache(root, n_tracks: int = 3, frames=(150, 100, 64), *, seed: int = 0, labeled: bool = True,
                feature_hash: str | None = None, dataset: str = "synthetic") -> Path:
    """A contract-format cache (manifest + one shard per track) with learnable features.

    The melody bin of each frame is a slowly moving line; the GC channel gets a bump at that row so a
    network can learn the mapping quickly. Tail frames are padding (mask False).
    """
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fh = feature_hash or grid.feature_hash()
    tracks = {}
    for k in range(n_tracks):
        t = frames[k % len(frames)]
        s = -(-t // grid.SEG_LEN)
        bins = np.clip(100 + np.cumsum(rng.integers(-2, 3, t)), 61, 250).astype(np.int16)
        bins[rng.random(t) < 0.2] = 0
        feats = (rng.random((3, grid.N_FREQ, t)) * 0.2).astype(np.float32)
        v = bins > 0
        feats[2, bins[v] - 1, np.nonzero(v)[0]] = 1.0
        pad = s * grid.SEG_LEN - t
        seg = lambda a: np.concatenate([a, np.zeros(pad, a.dtype)]).reshape(s, grid.SEG_LEN)  # noqa: E731
        f = np.concatenate([feats, np.zeros((3, grid.N_FREQ, pad), np.float32)], 2)
        f = f.reshape(3, grid.N_FREQ, s, grid.SEG_LEN).transpose(2, 0, 1, 3)
        lab = bins if labeled else np.zeros_like(bins)
        tid = f"trk{k:02d}"
        with h5py.File(root / "shards" / f"{tid}.h5", "w") as h:
            h.attrs.update(track_id=tid, dataset=dataset, feature_hash=fh, n_frames=t, labeled=labeled,
                           audio_path="")
            h.create_dataset("features", data=f.astype(np.float16), chunks=(1, 3, grid.N_FREQ, grid.SEG_LEN))
            h.create_dataset("bins", data=seg(lab))
            h.create_dataset("f0", data=seg(grid.bin_to_hz(lab).astype(np.float32)))
            m = np.zeros(s * grid.SEG_LEN, bool)
            m[:t] = True
            h.create_dataset("mask", data=m.reshape(s, grid.SEG_LEN))
            h.create_dataset("start", data=np.arange(s, dtype=np.int64) * grid.SEG_LEN)
        tracks[tid] = {"shard": f"shards/{tid}.h5", "n_frames": t, "n_segments": s, "duration_s": t / 100,
                       "labeled": labeled}
    manifest = {"version": 1, "dataset": dataset, "feature_params": grid.FEATURE_PARAMS, "feature_hash": fh,
                "tracks": tracks, "failed": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root

