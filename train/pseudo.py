"""The pseudo-label store ``RUN/pseudo.h5`` and the epoch's training set built on it.

One job: keep the HCR-selected unlabeled segments' pseudo-labels on disk and serve them, mixed with the
labeled segments, as training items.

Store (one file per rank, :func:`store_path`: ``pseudo.h5``, or ``pseudo.r<k>.h5`` under DDP), rewritten
atomically each epoch by :func:`write_store`:

- ``probs`` (K, C, 321, 64) float16: the student's soft outputs of the kept segments, chunked one segment per
  chunk (the teacher cache's layout, memory-mapped when read);
- ``uidx`` (K,) int64: which unlabeled segment each row is;
- attributes ``epoch`` and ``rank``.

:func:`combine` merges every rank's ``(file, uidx)`` into the index :class:`TrainSet` reads. Memory stays flat
over epochs: pseudo-labels and teacher logits are read from disk per batch.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch

from hkdsme.pipeline.atomic import atomic_path
from hkdsme.train.dataset import ChunkedArray, ShardDataset
from hkdsme.train.teacher_cache import _chunked


def store_path(run, rank: int, world: int) -> Path:
    """This rank's pseudo-label file in ``run``."""
    return Path(run) / ("pseudo.h5" if world == 1 else f"pseudo.r{rank}.h5")


def write_store(path, n_classes: int, kept, *, epoch: int, rank: int) -> np.ndarray:
    """Write the store ``path`` atomically from ``kept`` and return its ``uidx``.

    ``kept``: iterable of ``(uidx (k,) int64, probs (k, n_classes, 321, 64) float16)``, consumed while the file
    is open (so a generator computing them streams to disk).
    """
    uidx = []
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h:
        probs = _chunked(h, "probs", 0, n_classes)
        for u, p in kept:
            n0 = probs.shape[0]
            probs.resize(n0 + len(u), axis=0)
            probs[n0:] = p
            uidx.append(u)
        h.create_dataset("uidx", data=np.concatenate(uidx) if uidx else np.zeros(0, np.int64))
        h.attrs.update(epoch=epoch, rank=rank)
    return np.concatenate(uidx) if uidx else np.zeros(0, np.int64)


def combine(parts) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """``[(file, uidx), ...]`` of every rank → ``(files, file_of, row_of, uidx_of)`` (see :class:`TrainSet`)."""
    files = [p for p, _ in parts]
    file_of = np.concatenate([np.full(len(u), k, np.int64) for k, (_, u) in enumerate(parts)])
    row_of = np.concatenate([np.arange(len(u), dtype=np.int64) for _, u in parts])
    uidx_of = np.concatenate([u for _, u in parts]).astype(np.int64)
    return files, file_of, row_of, uidx_of


class _Lazy:
    """Per-process memory maps of (file, dataset) pairs (never inherited by forked workers)."""

    def __init__(self):
        self._pid, self._maps = None, {}

    def __getstate__(self):
        return {"_pid": None, "_maps": {}}

    def get(self, path, name) -> ChunkedArray:
        if self._pid != os.getpid():
            self._pid, self._maps = os.getpid(), {}
        a = self._maps.get((str(path), name))
        if a is None:
            a = self._maps[(str(path), name)] = ChunkedArray(path, name)
        return a


class TrainSet(torch.utils.data.Dataset):
    """The epoch's training items: labeled segments ``0..NL-1`` then kept pseudo-labeled segments.

    ``pseudo``: ``(files, file_of, row_of, uidx_of)``: pseudo item ``j`` is row ``row_of[j]`` of
    ``files[file_of[j]]`` and unlabeled segment ``uidx_of[j]``. ``__getitems__`` returns the batch dict of
    :class:`ShardDataset` plus ``is_pseudo`` (B,), ``teacher`` (B, C_t, 321, 64) float16 logits (when a
    teacher cache is given) and ``pseudo`` (B, C, 321, 64) float16 soft targets (only if the batch has any).
    """

    def __init__(self, labeled: ShardDataset, unlabeled: ShardDataset | None = None, teacher_cache=None,
                 pseudo=None):
        self.lab, self.unl, self.cache = labeled, unlabeled, teacher_cache
        self.nl = len(labeled)
        empty = np.zeros(0, np.int64)
        self.files, self.file_of, self.row_of, self.uidx_of = pseudo or ([], empty, empty, empty)
        self._maps = _Lazy()

    def __len__(self):
        return self.nl + len(self.uidx_of)

    def __getitems__(self, indices) -> dict:
        idx = np.asarray(indices, np.int64)
        is_p = idx >= self.nl
        j = idx[is_p] - self.nl
        uidx = self.uidx_of[j]
        b = self.lab.__getitems__(idx[~is_p])
        if is_p.any():
            u = self.unl.__getitems__(uidx)
            mix = {}
            for k in ("x", "bins", "mask"):
                t = torch.empty((len(idx), *b[k].shape[1:]), dtype=b[k].dtype)
                t[torch.from_numpy(~is_p)], t[torch.from_numpy(is_p)] = b[k], u[k]
                mix[k] = t
            mix["bins"][torch.from_numpy(is_p)] = 0          # unlabeled: targets come from "pseudo"
            b = mix
        b["idx"] = torch.from_numpy(idx)
        b["is_pseudo"] = torch.from_numpy(is_p)
        if self.cache is not None:
            lab_t = self._maps.get(self.cache, "labeled")
            t = np.empty((len(idx), *lab_t.shape[1:]), np.float16)
            for k, i in enumerate(idx):
                t[k] = lab_t.row(i) if i < self.nl else self._maps.get(self.cache, "unlabeled").row(
                    self.uidx_of[i - self.nl])
            b["teacher"] = torch.from_numpy(t)
        if is_p.any():
            first = self._maps.get(self.files[0], "probs")
            p = np.zeros((len(idx), *first.shape[1:]), np.float16)
            for k in np.nonzero(is_p)[0]:
                q = idx[k] - self.nl
                p[k] = self._maps.get(self.files[self.file_of[q]], "probs").row(self.row_of[q])
            b["pseudo"] = torch.from_numpy(p)
        return b
