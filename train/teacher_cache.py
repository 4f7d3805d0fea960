"""The teacher-logit cache ``RUN/teacher_cache.h5``: its format, how it is written, when it may be reused.

One job: store a frozen teacher's logits for every labeled and unlabeled segment once, so the teacher never
runs per training batch (:class:`~hkdsme.train.distill.DistillTrainer` fills it, :class:`~hkdsme.train.pseudo.TrainSet`
reads it).

Format: one HDF5 dataset per data set (``labeled``, ``unlabeled``), shape (N, C, 321, 64) float16, chunked one
segment per chunk so rows are memory-mapped like features (:class:`~hkdsme.train.dataset.ChunkedArray`).
Logits are clamped to ±:data:`LOGIT_MAX` (float16 range); non-finite logits are refused, not stored.
Attributes: the cache *key* (feature hash, teacher checkpoint hash (:func:`file_hash`), teacher mode and
precision, the data's identity (:func:`data_key`), version), ``checksum_<name>`` (``sha256:<hex>`` of each
dataset's stored bytes in row order) and ``complete``. Built in ``.<name>.partial`` beside the cache, which is
renamed onto it when complete; a killed build continues from its last verified flush
(:func:`build_teacher_cache`); temp files of dead writers of older versions are removed first.

Reuse (:func:`cache_matches`): complete, written with exactly the same key, and every checksum matches; a
corrupt or unreadable cache is reported with a warning and rebuilt.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from hkdsme.pipeline import grid
from hkdsme.pipeline.atomic import file_lock, publish
from hkdsme.pipeline.errors import InputError
from hkdsme.train.dataset import ShardDataset
from hkdsme.train.loop import predict_segments

CACHE_NAME = "teacher_cache.h5"
LOGIT_MAX = 6.0e4          # float16 max is 65504: clamp before storing
CHECKSUM_ALGO = "sha256"


def file_hash(path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def data_key(ds: ShardDataset) -> str:
    """Identity of a dataset's segment order: hash of its shard paths and segment counts."""
    blob = "\n".join(f"{p}:{n}" for p, n in zip(ds.paths, np.diff(ds.first))).encode()
    index = getattr(ds, "index", None)            # a SegmentSample: its segments are part of the identity
    if index is not None:
        blob += b"\nsample:" + np.asarray(index, np.int64).tobytes()
    return hashlib.sha256(blob).hexdigest()[:16]


def _chunked(h: h5py.File, name: str, n: int, c: int):
    """A resizable (n, c, 321, 64) float16 dataset chunked one segment per chunk (the layout of this cache and
    of the pseudo-label store, :mod:`hkdsme.train.pseudo`)."""
    return h.create_dataset(name, shape=(n, c, grid.N_BINS, grid.SEG_LEN), dtype=np.float16,
                            chunks=(1, c, grid.N_BINS, grid.SEG_LEN),
                            maxshape=(None, c, grid.N_BINS, grid.SEG_LEN))


def _segment_source(ds, i: int) -> tuple[Path, int]:
    """``(shard path, segment)`` of item ``i`` of a ShardDataset or SegmentSample."""
    base = getattr(ds, "base", ds)
    g = int(ds.index[i]) if hasattr(ds, "index") else int(i)
    return base.paths[int(base.track_of[g])], int(base.seg_of[g])


def _remove_dead_temps(path: Path) -> None:
    """Delete ``.<name>.tmp-<pid>-*`` leftovers (pipeline.atomic names) of ``path`` whose writer is dead."""
    for f in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(f.name[len(path.name) + 6:].split("-")[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except PermissionError:
            pass


def _donor(donors, name: str, key: dict):
    """Another complete cache made with the same teacher, mode, precision and features that holds dataset ``name``
    for the same segments (``key[name]``, the set's :func:`data_key`): ``(path, recorded checksum)`` or None.
    Only attributes are read; the rows are verified while they are copied (:func:`_copy_verified`)."""
    same = [k for k in key if k not in ("labeled", "unlabeled")]
    for d in donors or ():
        try:
            with h5py.File(d, "r") as h:
                a = dict(h.attrs)
                if (bool(a.get("complete")) and name in h and str(a.get(name)) == str(key[name])
                        and all(str(a.get(k)) == str(key[k]) for k in same)):
                    return Path(d), str(a.get(f"checksum_{name}", ""))
        except (OSError, KeyError, ValueError):
            continue
    return None


def _copy_verified(h: h5py.File, name: str, n: int, donor: Path, recorded: str) -> bool:
    """Copy dataset ``name`` (``n`` rows) of ``donor`` into ``h``, hashing as it goes (one read); True when the
    bytes match ``recorded``, else the copy is removed and False is returned (the caller recomputes)."""
    with h5py.File(donor, "r") as src:
        out = _chunked(h, name, n, src[name].shape[1])
        got = _dataset_checksum(src[name], into=out)
    if got == recorded:
        h.attrs[f"checksum_{name}"] = recorded
        return True
    del h[name]
    warnings.warn(f"{donor}: checksum mismatch in {name} (corrupt teacher cache): not copied", stacklevel=2)
    return False


def partial_path(path) -> Path:
    """Where an unfinished build of cache ``path`` keeps its rows: ``.<name>.partial`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def _resume_point(work: Path, key: dict, sets: dict) -> dict[str, int] | None:
    """Rows of each set that an interrupted build left *verified* in ``work``: ``{name: rows}``, or None when
    ``work`` is missing, unreadable, made with another key or for other data sizes, or fails its progress check
    (the SHA-256 of rows ``[0, rows)`` recorded at the last flush), so the build starts over."""
    if not work.exists():
        return None
    try:
        with h5py.File(work, "r") as h:
            a = dict(h.attrs)
            if not all(str(a.get(k)) == str(v) for k, v in key.items()):
                return None
            done = {}
            for name, ds in sets.items():
                rows = int(a.get(f"rows_{name}", 0))
                if rows and (name not in h or h[name].shape[0] != len(ds) or rows > len(ds)
                             or _dataset_checksum(h[name], stop=rows) != str(a.get(f"upto_{name}"))):
                    return None
                done[name] = rows
            return done
    except (OSError, KeyError, ValueError):
        return None


def build_teacher_cache(path, teacher, sets: dict, key: dict, *, device, precision="fp32", batch=32,
                        train_mode=False, channels_last=False, progress=True, donors=(), log=None,
                        flush_s: float = 60.0) -> Path:
    """Write ``teacher``'s logits (float16) for every segment of each dataset in ``sets`` to ``path``.

    ``sets``: ``{name: ShardDataset}`` → dataset ``name`` of shape (N, C, 321, 64). ``teacher``: one network for
    every set, or ``{name: network}`` (e.g. another teacher for the unlabeled pool). ``key`` is stored as
    attributes; :func:`cache_matches` compares it on reuse. Each dataset's stored bytes get a checksum
    (attribute ``checksum_<name>``, see :func:`cache_checksums`). Non-finite logits are refused (``InputError``
    naming the segment's shard) instead of being stored.
    ``donors``: other cache files; a set that one of them holds intact for the same segments and teacher
    (:func:`_donor`) is copied instead of recomputed (e.g. ablations that share the labeled data).

    Resumable: rows go to :func:`partial_path` (flushed every ``flush_s`` seconds, with the count of rows
    written and their SHA-256), renamed onto ``path`` when every set is complete. A build that was killed
    continues after the last verified flush; a partial file from another key is discarded. One builder at a
    time per file (a lock beside it; a second one gets ``InputError`` naming the holder's pid).
    """
    path = Path(path)
    _remove_dead_temps(path)
    work = partial_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(f".{path.name}.lock"), path, "teacher cache is being written by another "
                   "process", "wait for it, or give this run another --teacher-cache"):
        done = _resume_point(work, key, sets)
        if done is None:
            work.unlink(missing_ok=True)
            done = {}
        elif log and any(done.values()):
            log(f"teacher logits: continuing {work} (" + ", ".join(f"{n} from row {r} of {len(sets[n])}"
                                                                 for n, r in done.items()) + ")")
        teachers = {name: teacher[name] if isinstance(teacher, dict) else teacher for name in sets}
        for t in teachers.values():
            t.train(train_mode)
        try:
            with h5py.File(work, "a") as h:
                h.attrs.update(key)
                for name, ds in sets.items():
                    _fill(h, name, ds, done.get(name, 0), teachers[name], key, path, device=device, precision=precision,
                          batch=batch, channels_last=channels_last, progress=progress, donors=donors, log=log,
                          flush_s=flush_s)
                h.attrs["complete"] = True
            publish(work, path)
        except InputError:
            work.unlink(missing_ok=True)             # a teacher defect: its rows are not worth keeping
            raise
        finally:
            for t in teachers.values():
                t.eval()
    return path


def _fill(h: h5py.File, name: str, ds, start: int, teacher, key: dict, path: Path, *, device, precision, batch,
          channels_last, progress, donors, log, flush_s) -> None:
    """Rows ``[start, len(ds))`` of set ``name`` (all of it copied from a donor where one holds it)."""
    n = len(ds)
    if start == n and f"checksum_{name}" in h.attrs:
        return
    if start == 0:
        if name in h:
            del h[name]
        donor = _donor(donors, name, key) if name in key else None
        if donor is not None and _copy_verified(h, name, n, *donor):
            h.attrs[f"rows_{name}"] = n
            h.attrs[f"upto_{name}"] = h.attrs[f"checksum_{name}"]
            h.flush()
            if log:
                log(f"teacher logits ({name}): copied from {donor[0]} (same teacher and segments)")
            return
    digest = hashlib.new(CHECKSUM_ALGO)
    if start:
        _dataset_checksum(h[name], stop=start, digest=digest)        # verified by _resume_point just before
    out = h[name] if name in h else None
    gen = predict_segments(teacher, ds, np.arange(start, n), device=device, precision=precision, batch=batch,
                           channels_last=channels_last)
    last = time.monotonic()
    for rows, _, o in tqdm(gen, total=-(-(n - start) // batch), desc=f"teacher logits ({name})",
                           disable=not progress, leave=False):
        lg = o.logits.float()
        finite = torch.isfinite(lg).flatten(1).all(dim=1)
        if not bool(finite.all()):
            shard, seg = _segment_source(ds, int(rows[int(torch.nonzero(~finite)[0, 0])]))
            raise InputError(shard, f"segment {seg}: the teacher gives non-finite logits (NaN/inf); "
                                    f"not stored in {path}")
        lg = np.ascontiguousarray(lg.clamp(-LOGIT_MAX, LOGIT_MAX).half().cpu().numpy())
        if out is None:
            out = _chunked(h, name, n, lg.shape[1])
        out[rows[0]:rows[-1] + 1] = lg
        digest.update(lg)                          # rows arrive in order start..N-1
        if time.monotonic() - last >= flush_s:     # progress a killed build can continue from
            h.attrs[f"rows_{name}"] = int(rows[-1]) + 1
            h.attrs[f"upto_{name}"] = f"{CHECKSUM_ALGO}:{digest.copy().hexdigest()}"
            h.flush()
            last = time.monotonic()
    if out is not None:
        h.attrs[f"rows_{name}"] = n
        h.attrs[f"upto_{name}"] = h.attrs[f"checksum_{name}"] = f"{CHECKSUM_ALGO}:{digest.hexdigest()}"
        h.flush()


def cache_checksums(h: h5py.File) -> dict:
    """``{dataset: "sha256:<hex>"}`` of the stored float16 bytes of every dataset, row order (reads them all:
    measured 1.0 s per GiB on the 2-core VM, file in the page cache)."""
    return {name: _dataset_checksum(d) for name, d in h.items() if isinstance(d, h5py.Dataset)}


def _dataset_checksum(d, into=None, stop=None, digest=None) -> str:
    """``"sha256:<hex>"`` of a dataset's stored bytes in row order (rows ``[0, stop)``; all by default), 256 rows
    at a time; ``into``: a dataset of the same shape that receives the rows as they are read (a verified copy in
    one pass); ``digest``: a hashlib object to feed (and go on with) instead of a new one."""
    digest = digest if digest is not None else hashlib.new(CHECKSUM_ALGO)
    stop = d.shape[0] if stop is None else stop
    for i in range(0, stop, 256):
        rows = np.ascontiguousarray(d[i:min(i + 256, stop)])
        digest.update(rows)
        if into is not None:
            into[i:i + len(rows)] = rows
    return f"{CHECKSUM_ALGO}:{digest.hexdigest()}"


def cache_matches(path, key: dict) -> bool:
    """True when ``path`` is a complete, intact teacher cache written with exactly ``key``.

    Intact: every dataset's bytes match the checksum recorded at write time. A mismatch (or an unreadable
    file) is reported with a warning naming the file and answers False, so the caller rebuilds the cache.
    A cache written before checksums is accepted if all its logits are finite.
    """
    try:
        with h5py.File(path, "r") as h:
            attrs = dict(h.attrs)
            if not (bool(attrs.get("complete")) and all(str(attrs.get(k)) == str(v) for k, v in key.items())):
                return False
            recorded = {k[len("checksum_"):]: str(v) for k, v in attrs.items() if k.startswith("checksum_")}
            if recorded:
                got = cache_checksums(h)
                bad = sorted(n for n in set(got) | set(recorded) if got.get(n) != recorded.get(n))
                if bad:
                    warnings.warn(f"{path}: checksum mismatch in {', '.join(bad)} (corrupt teacher cache): "
                                  "rebuilding it", stacklevel=2)
                    return False
            else:
                for name, d in h.items():
                    for i in range(0, d.shape[0], 256):
                        if not np.isfinite(d[i:i + 256]).all():
                            warnings.warn(f"{path}: non-finite logits in {name} (corrupt teacher cache): "
                                          "rebuilding it", stacklevel=2)
                            return False
    except (OSError, KeyError, ValueError) as e:
        if Path(path).exists():
            warnings.warn(f"{path}: unreadable teacher cache ({e}): rebuilding it", stacklevel=2)
        return False
    return True
