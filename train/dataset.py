"""Segments of one or more feature caches as a torch ``Dataset``, read zero-copy from memory-mapped shards.

A cache (``hkd-prep extract``) holds one HDF5 shard per track whose ``features`` are float16, chunked one
segment per chunk ``(1, 3, 320, 64)`` and uncompressed. Such a chunk is a plain run of
``3·320·64·2 = 122,880`` bytes at ``dset.id.get_chunk_info(i).byte_offset``, so we look the offsets up once
per shard and read segments straight from an ``np.memmap`` of the file: no HDF5 call, no decompression, one
float16→float32 cast into the batch buffer. A compressed or otherwise unusual dataset falls back to h5py
reads. Small per-segment arrays (``bins``, ``mask``) are loaded into RAM when a shard is first opened.

Handles are opened lazily in the process that reads (DataLoader workers inherit nothing open), and a
``__getitems__`` fills a whole batch at once; use :func:`collate_batch` as the DataLoader ``collate_fn``.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import torch

from hkdsme.pipeline import grid, shards
from hkdsme.pipeline.errors import InputError

SEG_SHAPE = (3, grid.N_FREQ, grid.SEG_LEN)
# Shards with an open file handle (memory map) per process at most; the rest are reopened on demand (their
# offsets, bins and mask stay in RAM, so a reopen is one open + mmap). $HKDSME_MAX_OPEN_SHARDS overrides it.
MAX_OPEN_SHARDS = 64


def default_max_open() -> int:
    """:data:`MAX_OPEN_SHARDS`, or a quarter of the soft ``ulimit -n`` where that is lower."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return MAX_OPEN_SHARDS
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return MAX_OPEN_SHARDS
    return max(1, min(MAX_OPEN_SHARDS, soft // 4))


class ChunkedArray:
    """Row ``i`` of an HDF5 dataset ``(N, *shape)`` chunked ``(1, *shape)``, read through a memory map.

    ``read_into(out, rows)`` casts the rows into ``out`` (any float dtype). Falls back to ``dset[i]`` when the
    dataset is compressed/filtered or not chunked one row per chunk. :meth:`close` gives the file handle back
    but keeps the row offsets, and the next read reopens it (one ``open`` + ``mmap``): what lets
    :class:`ShardDataset` bound its open files. Not picklable once opened; open it in the process that reads.
    """

    def __init__(self, path, name: str):
        self.path = Path(path)
        self.name = name
        self._file = h5py.File(self.path, "r")
        d = self._file[name]
        self.shape = d.shape
        self.dtype = d.dtype
        self._row_bytes = int(np.prod(d.shape[1:])) * d.dtype.itemsize
        self.offsets = self._offsets(d, self._row_bytes)
        self._mm = None
        if self.offsets is not None:
            self._dset = None
            self._file.close()           # everything needed is in the offsets; the map opens on first read
            self._file = None
        else:
            self._dset = d

    @staticmethod
    def _offsets(d: h5py.Dataset, row: int):
        """Byte offset of every row, or None when rows are not plain contiguous runs in the file."""
        if d.compression is not None or d.scaleoffset is not None or d.shuffle or d.fletcher32:
            return None
        if d.chunks is None:                                 # contiguous layout: one run for the whole array
            off = d.id.get_offset()
            return None if off is None else off + row * np.arange(d.shape[0], dtype=np.int64)
        if d.chunks != (1, *d.shape[1:]) or d.id.get_num_chunks() != d.shape[0]:
            return None
        offs = np.empty(d.shape[0], np.int64)
        for i in range(d.id.get_num_chunks()):
            info = d.id.get_chunk_info(i)
            if info.filter_mask != 0 or info.size != row:
                return None
            offs[info.chunk_offset[0]] = info.byte_offset
        return offs

    @property
    def mapped(self) -> bool:
        """Rows are read through a memory map (not through h5py)."""
        return self.offsets is not None

    @property
    def is_open(self) -> bool:
        """Holds an open file handle (a map or an h5py file) right now."""
        return self._mm is not None or self._file is not None

    def row(self, i: int) -> np.ndarray:
        """Row ``i`` in the stored dtype (a view into the map when mapped)."""
        if self.offsets is None:
            if self._dset is None:
                self._file = h5py.File(self.path, "r")
                self._dset = self._file[self.name]
            return self._dset[i]
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        o = int(self.offsets[i])
        return self._mm[o:o + self._row_bytes].view(self.dtype).reshape(self.shape[1:])

    def read_into(self, out: np.ndarray, rows) -> np.ndarray:
        for j, i in enumerate(rows):
            out[j] = self.row(int(i))
        return out

    def close(self):
        """Give the file handle back (the map's file descriptor is closed when the map is freed)."""
        self._mm = None
        self._dset = None
        if self._file:
            self._file.close()
        self._file = None


def cache_index(dirs, *, expected_hash: str | None = None):
    """Shards of one or more caches: ``(feature_hash, [(shard_path, n_segments, labeled, checksum), ...])``.

    ``checksum`` is the manifest's (None for caches made before checksums).

    All folders must share one feature hash; raises ``InputError`` naming both folders otherwise, and for a
    missing/empty folder or one without segments.
    """
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    if not dirs:
        raise InputError(None, "no data folder given")
    entries, first = [], None
    for d in dirs:
        cache = shards.open_cache(d, expected_hash=expected_hash)
        if first is None:
            first = cache
        elif cache.feature_hash != first.feature_hash:
            raise InputError(cache.root, f"feature hash {cache.feature_hash} differs from {first.root} "
                                         f"({first.feature_hash}): the caches were extracted with other parameters")
        n = 0
        for track_id, path in cache:
            info = cache.tracks[track_id]
            s = int(info["n_segments"])
            if s > 0:
                entries.append((Path(path), s, bool(info.get("labeled", True)), info.get("checksum")))
                n += s
        if n == 0:
            raise InputError(cache.root, "cache holds no segments (empty or every track failed)")
    return first.feature_hash, entries


class ShardDataset(torch.utils.data.Dataset):
    """Every 64-frame segment of the given caches, in (folder, sorted track id, segment) order.

    Item ``i``: ``dict(x float32 (3,320,64), bins int64 (64,), mask bool (64,), idx int)``; ``idx`` is the
    global segment index (used to look up teacher logits and pseudo-labels). ``labeled=True`` requires every
    track to carry labels. ``self.track_of[i]`` / ``self.seg_of[i]`` locate segment ``i``.

    Integrity: a shard is checked against its manifest checksum when this process first opens it
    (``shards.verify_shard``: 0.8-2 s per GiB, once), and a batch with a non-finite feature is an ``InputError``
    naming the shard and segment, never a training step. At most ``max_open`` shards (default
    ``$HKDSME_MAX_OPEN_SHARDS`` or :func:`default_max_open`) hold an open file at once (least recently used first
    out), so a pool of thousands of shards stays under ``ulimit -n``.
    """

    def __init__(self, dirs, labeled: bool = True, *, expected_hash: str | None = None,
                 max_open: int | None = None):
        self.feature_hash, entries = cache_index(dirs, expected_hash=expected_hash)
        if labeled:
            bad = [p for p, _, lab, _ in entries if not lab]
            if bad:
                raise InputError(bad[0], "track has no labels but was given as labeled data")
        self.labeled = labeled
        self.paths = [p for p, _, _, _ in entries]
        self.track_labeled = np.array([lab for _, _, lab, _ in entries], bool)
        self.checksums = [c for _, _, _, c in entries]
        if max_open is None:
            max_open = int(os.environ.get("HKDSME_MAX_OPEN_SHARDS", 0)) or default_max_open()
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self.max_open = int(max_open)
        counts = np.array([s for _, s, _, _ in entries], np.int64)
        self.first = np.concatenate([[0], np.cumsum(counts)])           # first global index of each track
        self.track_of = np.repeat(np.arange(len(counts)), counts)
        self.seg_of = np.arange(int(counts.sum())) - self.first[self.track_of]
        self._pid = None
        self._open: dict[int, tuple] = {}                  # track -> (features, bins, mask), kept per process
        self._lru: OrderedDict[int, None] = OrderedDict()  # tracks whose features hold an open file

    def __len__(self) -> int:
        return int(self.first[-1])

    def __getstate__(self):             # send to workers without open handles
        state = self.__dict__.copy()
        state["_open"], state["_lru"], state["_pid"] = {}, OrderedDict(), None
        return state

    def __setstate__(self, state):
        state.setdefault("_lru", OrderedDict())
        self.__dict__.update(state)

    @property
    def open_files(self) -> int:
        """Shards holding an open file handle in this process."""
        return sum(1 for t in self._lru if self._open[t][0].is_open)

    def _track(self, t: int):
        """``(features ChunkedArray, bins (S,64) int16, mask (S,64) bool)`` of track ``t``, opened (and its
        checksum verified) once per process; its file handle is one of at most ``max_open``."""
        if self._pid != os.getpid():          # forked worker: never reuse the parent's maps
            self._open, self._lru, self._pid = {}, OrderedDict(), os.getpid()
        h = self._open.get(t)
        if h is None:
            path = self.paths[t]
            shards.verify_shard(path, self.checksums[t])
            try:
                feats = ChunkedArray(path, "features")
                with h5py.File(path, "r") as f:
                    bins, mask = f["bins"][()], f["mask"][()]
            except (OSError, KeyError, ValueError) as e:
                raise InputError(path, f"unreadable shard: {e}") from None
            if feats.shape[1:] != SEG_SHAPE or bins.shape != (feats.shape[0], grid.SEG_LEN):
                raise InputError(path, f"corrupt shard: features {feats.shape}, bins {bins.shape}")
            h = self._open[t] = (feats, bins, mask)
        if t in self._lru:
            self._lru.move_to_end(t)
        else:
            self._lru[t] = None
            while len(self._lru) > self.max_open:
                old, _ = self._lru.popitem(last=False)
                self._open[old][0].close()
        return h

    def __getitem__(self, i: int) -> dict:
        b = self.__getitems__([i])
        return {"x": b["x"][0], "bins": b["bins"][0], "mask": b["mask"][0], "idx": int(b["idx"][0])}

    def __getitems__(self, indices) -> dict:
        """A whole batch: ``x (B,3,320,64) float32``, ``bins (B,64) int64``, ``mask (B,64) bool``, ``idx (B,) int64``."""
        idx = np.asarray(indices, np.int64)
        x = np.empty((len(idx), *SEG_SHAPE), np.float32)
        bins = np.empty((len(idx), grid.SEG_LEN), np.int64)
        mask = np.empty((len(idx), grid.SEG_LEN), bool)
        for j, i in enumerate(idx):
            t, s = int(self.track_of[i]), int(self.seg_of[i])
            feats, b, m = self._track(t)
            try:
                x[j] = feats.row(s)                   # float16 map → float32 batch buffer, one cast
            except (OSError, ValueError) as e:        # e.g. a shard truncated after it was indexed
                raise InputError(self.paths[t], f"unreadable shard: {e}") from None
            bins[j], mask[j] = b[s], m[s]
        # features lie in [0, 1]: the sum of a batch is finite unless one value is NaN/inf (~1 ms per
        # batch of 32, a fraction of the copy above)
        if not np.isfinite(x.sum()):
            j = int(np.nonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0][0])
            t, s = int(self.track_of[idx[j]]), int(self.seg_of[idx[j]])
            raise InputError(self.paths[t], f"segment {s}: features contain NaN/inf (corrupt shard; "
                                            "rerun `hkd-prep extract` on its cache)")
        return {"x": torch.from_numpy(x), "bins": torch.from_numpy(bins), "mask": torch.from_numpy(mask),
                "idx": torch.from_numpy(idx)}

    def has_labels(self, indices) -> np.ndarray:
        """Per segment of ``indices``: does its shard carry labels (e.g. an unlabeled pool's MIR-1K part, whose labels
        training never reads but which can score pseudo-labels)?"""
        return self.track_labeled[self.track_of[np.asarray(indices, np.int64)]]

    def track_segments(self, t: int) -> np.ndarray:
        """Global indices of the segments of track ``t`` in time order."""
        return np.arange(self.first[t], self.first[t + 1])

    def track_reference(self, t: int) -> tuple[int, np.ndarray]:
        """``(n_frames, f0 (n_frames,) float64 Hz)`` of track ``t``: the reference on the 10 ms grid, padding dropped."""
        path = self.paths[t]
        shards.verify_shard(path, self.checksums[t])
        try:
            with h5py.File(path, "r") as f:
                f0, mask = f["f0"][()], f["mask"][()]
        except (OSError, KeyError) as e:
            raise InputError(path, f"unreadable shard: {e}") from None
        mask = mask.reshape(-1)
        n = int(mask.sum())
        if not mask[:n].all():
            raise InputError(path, "corrupt shard: mask does not mark the first n_frames frames")
        return n, f0.reshape(-1)[:n].astype(np.float64)


class SegmentSample(torch.utils.data.Dataset):
    """Segments ``index`` of ``base``, renumbered ``0..len-1``.

    :meth:`draw` takes a fixed, seeded sample without replacement: a compute budget for a large unlabeled pool
    (every sampled segment still gets its teacher logits and goes through HCR each epoch).
    """

    def __init__(self, base: ShardDataset, index):
        self.base = base
        self.index = np.asarray(index, np.int64)
        if self.index.ndim != 1 or (len(self.index) and (self.index.min() < 0 or self.index.max() >= len(base))):
            raise ValueError(f"sample indices must lie in [0, {len(base)})")
        self.feature_hash, self.paths, self.first = base.feature_hash, base.paths, base.first

    @classmethod
    def draw(cls, base: ShardDataset, n: int, seed: int) -> "SegmentSample":
        n = min(int(n), len(base))
        idx = np.random.default_rng(seed).choice(len(base), size=n, replace=False)
        return cls(base, np.sort(idx))

    def __len__(self) -> int:
        return len(self.index)

    def has_labels(self, indices) -> np.ndarray:
        return self.base.has_labels(self.index[np.asarray(indices, np.int64)])

    def __getitems__(self, indices) -> dict:
        idx = np.asarray(indices, np.int64)
        b = self.base.__getitems__(self.index[idx])
        b["idx"] = torch.from_numpy(idx)
        return b


def collate_batch(batch):
    """``collate_fn`` for a dataset whose ``__getitems__`` already returns a batch (also handles items)."""
    if isinstance(batch, dict):
        return batch
    return torch.utils.data.default_collate(batch)


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy/random per worker from torch's per-worker seed (handles are opened lazily per process)."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class SegmentBatchSampler(torch.utils.data.Sampler):
    """Shuffled batches of segment indices across all shards, reproducible from ``(seed, epoch)``.

    ``indices`` (default ``range(n)``) are permuted with ``np.random.default_rng([seed, epoch])``, trimmed to a
    multiple of ``batch_size·world`` when ``drop_last``, and rank ``r`` takes every ``world``-th batch, so ranks
    see disjoint, equally many batches (DistributedSampler semantics). ``max_batches`` caps the epoch.
    """

    def __init__(self, n_or_indices, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, rank: int = 0, world: int = 1, max_batches: int | None = None):
        self.indices = (np.arange(n_or_indices) if np.isscalar(n_or_indices)
                        else np.asarray(n_or_indices, np.int64))
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), shuffle
        self.drop_last, self.rank, self.world = drop_last, rank, world
        self.max_batches = max_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def _batches(self) -> list[np.ndarray]:
        idx = self.indices
        if self.shuffle:
            idx = idx[np.random.default_rng([self.seed, self.epoch]).permutation(len(idx))]
        step = self.batch_size * self.world
        n = (len(idx) // step) * step if self.drop_last else len(idx)
        batches = [idx[i:i + self.batch_size] for i in range(0, n, self.batch_size)][self.rank::self.world]
        if self.max_batches is not None:
            batches = batches[:self.max_batches]
        return batches

    def __iter__(self):
        return iter([b.tolist() for b in self._batches()])

    def __len__(self) -> int:
        return len(self._batches())


def make_loader(dataset, sampler: SegmentBatchSampler, *, workers: int = 0, pin_memory: bool = False):
    """DataLoader over ``dataset`` with batches from ``sampler`` (batched ``__getitems__`` reads)."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_batch,
        worker_init_fn=worker_init_fn if workers else None, persistent_workers=False,
        pin_memory=pin_memory, prefetch_factor=4 if workers else None)
