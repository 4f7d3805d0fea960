"""Feature cache on disk: one chunked HDF5 shard per track plus a ``manifest.json`` (docs/contracts.md).

A track's CFP ``(3, 320, T)`` is cut into ``S = ceil(T / 64)`` segments of 64 frames; the tail is zero-padded
and flagged by ``mask == False``. Features are stored as float16 in chunks of exactly one segment
``(1, 3, 320, 64)``, uncompressed, so a loader can read one segment with one contiguous read (or memory-map it
at ``dset.id.get_chunk_info(i).byte_offset``). ``benchmarks/bench_shards.py`` holds the measurements behind
this choice.

Every file is written to a temporary name in the same folder and moved into place with ``os.replace``, so a
killed run leaves either the old file, the new file or a ``*.tmp-<pid>`` leftover, never a half-written shard
under the real name.

Integrity: ``write_shard`` returns the SHA-256 of the finished file's bytes (``"sha256:<hex>"``), which the
extractor records as the track's ``checksum`` in the manifest. :func:`verify_shard` checks it once per process
and file (``ShardDataset``, :func:`read_track`, ``hkd-prep extract`` before skipping a track, ``hkd-prep info
--verify``). Cost, measured on the 2-core development VM (busy with a training job) over 0.6 GiB of MIR-1K
shards: 0.8 s per GiB when the files are in the page cache, 2.0 s per GiB read cold from disk (SHA-256 itself
runs at ~1.7 GB/s here, faster than blake2b 0.9 and md5 0.7), i.e. ~1-3 s for a 1.5 GB cache, once per process.
Manifests of caches made before checksums have no ``checksum`` entries: their shards are read unverified.

Journal: while extracting, each finished track is appended as one JSON line to ``manifest.journal``
(fsync'd) instead of rewriting ``manifest.json`` (quadratic in the number of tracks); :func:`compact_journal`
folds it into ``manifest.json`` at the end of a run, or at the start of the next one after a kill.
:func:`load_manifest` applies a journal it finds, so a reader sees every finished track.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hkdsme.pipeline import grid
from hkdsme.pipeline.atomic import atomic_path, write_text
from hkdsme.pipeline.errors import InputError

MANIFEST = "manifest.json"
SHARD_DIR = "shards"
MANIFEST_VERSION = 1
FEATURE_DTYPE = np.float16     # normalised CFP lies in [0, 1]: float16 error <= 2**-12 there (see benchmark)
COMPRESSION = None             # uncompressed chunks can be memory-mapped; see benchmark for lzf / gzip
_DATASETS = ("features", "bins", "f0", "mask", "start")
JOURNAL = "manifest.journal"
CHECKSUM_ALGO = "sha256"       # fastest hashlib digest here (SHA extensions): ~1.7 GB/s, see module docstring


# ---------------------------------------------------------------- checksums

def file_checksum(path) -> str:
    """``"sha256:<hex>"`` of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.new(CHECKSUM_ALGO)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            h.update(view[:n])
    return f"{CHECKSUM_ALGO}:{h.hexdigest()}"


_VERIFIED: dict[str, tuple] = {}    # path -> (size, mtime_ns, inode, checksum) of a file verified in this process


def verify_shard(path, checksum: str | None, *, again: bool = False) -> bool:
    """Check a shard's bytes against its recorded ``checksum``, once per process and file version.

    Returns False (nothing checked) when ``checksum`` is None (caches made before checksums), True when it
    matches. Raises ``InputError(path, "checksum mismatch ...")`` when it does not, and for a missing file.
    ``again`` re-hashes even a file this process already verified.
    """
    if checksum is None:
        return False
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        raise InputError(path, "shard not found") from None
    key = (st.st_size, st.st_mtime_ns, st.st_ino, checksum)   # forked workers trust their parent's check
    if not again and _VERIFIED.get(str(path)) == key:
        return True
    try:
        got = file_checksum(path)
    except OSError as e:
        raise InputError(path, f"unreadable shard: {e}") from None
    if got != checksum:
        raise InputError(path, f"checksum mismatch: the file's {got[:23]}... differs from the manifest's "
                               f"{checksum[:23]}... (corrupt shard; rerun `hkd-prep extract` to redo it)")
    _VERIFIED[str(path)] = key
    return True


_MANIFEST_SUMS: dict[str, tuple] = {}   # cache root -> (manifest stat key, {shard relpath: checksum})


def recorded_checksum(path) -> str | None:
    """The checksum the manifest of the cache holding shard ``path`` (``<root>/shards/<id>.h5``) records for
    it, or None (no manifest there, no entry, or a cache made before checksums)."""
    path = Path(path)
    root = path.parent.parent
    files = [root / MANIFEST, root / JOURNAL]
    try:
        key = tuple((st.st_size, st.st_mtime_ns) for st in (os.stat(f) for f in files if f.exists()))
    except OSError:
        return None
    hit = _MANIFEST_SUMS.get(str(root))
    if hit is None or hit[0] != key:
        try:
            m = load_manifest(root)
        except InputError:
            m = None
        sums = {} if m is None else {e.get("shard"): e.get("checksum") for e in m["tracks"].values()}
        hit = _MANIFEST_SUMS[str(root)] = (key, sums)
    return hit[1].get(f"{path.parent.name}/{path.name}")


def shard_relpath(track_id: str) -> str:
    """Manifest path of a track's shard, ``shards/<id>.h5``; path separators in the id become ``__``."""
    safe = track_id.replace("/", "__").replace("\\", "__")
    if safe in ("", ".", ".."):
        raise ValueError(f"unusable track id {track_id!r}")
    return f"{SHARD_DIR}/{safe}.h5"


def segment(features: np.ndarray, bins=None, f0=None, seg_len: int = grid.SEG_LEN) -> dict:
    """Cut a track into ``S = ceil(T / seg_len)`` padded segments.

    Returns arrays ``features (S, 3, 320, L)``, ``bins (S, L)`` int16, ``f0 (S, L)`` float32,
    ``mask (S, L)`` bool (False on the zero tail padding) and ``start (S,)`` int64 = ``s * L``.
    Missing ``bins`` / ``f0`` (unlabeled track) are stored as zeros.
    """
    c, f, t = features.shape
    if t < 1:
        raise ValueError("track has no frames")
    s = -(-t // seg_len)
    pad = s * seg_len - t

    feats = np.concatenate([features, np.zeros((c, f, pad), features.dtype)], axis=2)
    feats = feats.reshape(c, f, s, seg_len).transpose(2, 0, 1, 3)
    return {"features": feats, **_segment_labels(t, bins, f0, seg_len)}


def _segment_labels(t: int, bins=None, f0=None, seg_len: int = grid.SEG_LEN) -> dict:
    """``bins``, ``f0``, ``mask``, ``start`` of :func:`segment` for a track of ``t`` frames."""
    s = -(-t // seg_len)
    pad = s * seg_len - t

    def cut(a, dtype):
        a = np.zeros(t, dtype) if a is None else np.asarray(a, dtype)
        if a.shape != (t,):
            raise ValueError(f"label length {a.shape} does not match {t} frames")
        return np.concatenate([a, np.zeros(pad, dtype)]).reshape(s, seg_len)

    mask = np.zeros(s * seg_len, bool)
    mask[:t] = True
    return {
        "bins": cut(bins, np.int16),
        "f0": cut(f0, np.float32),
        "mask": mask.reshape(s, seg_len),
        "start": np.arange(s, dtype=np.int64) * seg_len,
    }


def _text(name) -> str:
    """``name`` as UTF-8-encodable text for an HDF5 attribute: the bytes of a non-UTF-8 file name (which Python
    keeps as surrogates) are written as ``\\xNN`` escapes; any other name is unchanged."""
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_shard(path, features, bins=None, f0=None, *, track_id: str, dataset: str, audio_path="",
                feature_hash: str | None = None, dtype=FEATURE_DTYPE, compression=COMPRESSION,
                compression_opts=None) -> dict:
    """Write one track atomically (temp file + ``os.replace``); return
    ``{"n_frames", "n_segments", "n_voiced", "checksum"}`` (``checksum``: :func:`file_checksum` of the shard).

    ``features`` is the float32 ``(3, 320, T)`` CFP, ``bins`` / ``f0`` per-frame labels or None (unlabeled).
    ``dtype`` / ``compression`` / ``compression_opts`` exist for the benchmark; the cache format is float16, uncompressed.
    """
    path = Path(path)
    features = np.asarray(features)
    if features.ndim != 3 or features.shape[:2] != (3, grid.N_FREQ):
        raise ValueError(f"features must be (3, {grid.N_FREQ}, T), got {features.shape}")
    t = features.shape[2]
    seg = segment(features, bins, f0)
    s = len(seg["start"])
    with atomic_path(path) as tmp:
        # track_times=False (h5py's default, stated here on purpose): no timestamps, so rewriting a track
        # with the same inputs gives the same bytes.
        with h5py.File(tmp, "w", track_order=False) as h:
            h.attrs.update({
                "track_id": _text(track_id), "dataset": _text(dataset), "n_frames": t, "labeled": bins is not None,
                "feature_hash": feature_hash or grid.feature_hash(), "audio_path": _text(audio_path),
            })
            h.create_dataset("features", data=seg["features"].astype(dtype), chunks=(1, 3, grid.N_FREQ, grid.SEG_LEN),
                             compression=compression, compression_opts=compression_opts,
                             track_times=False)
            for name in ("bins", "f0", "mask", "start"):
                h.create_dataset(name, data=seg[name], track_times=False)
        checksum = file_checksum(tmp)      # of the closed file, i.e. exactly the bytes renamed into place
    return {"n_frames": t, "n_segments": s, "n_voiced": int(np.count_nonzero(seg["bins"])), "checksum": checksum}


def write_shard_blocks(path, n_frames: int, blocks, bins=None, f0=None, *, track_id: str, dataset: str,
                       audio_path="", feature_hash: str | None = None) -> dict:
    """:func:`write_shard` for features that arrive block by block (long audio, results of remote workers).

    ``blocks`` yields ``(first_frame, feats (3, 320, n))`` covering frames ``0..n_frames-1`` in order, each
    ``first_frame`` a multiple of ``grid.SEG_LEN``; every block's segments are converted to float16 and written
    into the chunked ``features`` dataset at once, so memory is one block plus the labels, never the track.
    The file is byte-identical to :func:`write_shard` of the concatenated features (same datasets, created in
    the same order, the features dataset closed before the next is made; ``tests/test_extract_stream.py``).
    Returns what :func:`write_shard` returns.
    """
    path = Path(path)
    t = int(n_frames)
    if t < 1:
        raise ValueError("track has no frames")
    labels = _segment_labels(t, bins, f0)
    s = len(labels["start"])
    L = grid.SEG_LEN
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=False) as h:
            h.attrs.update({
                "track_id": _text(track_id), "dataset": _text(dataset), "n_frames": t, "labeled": bins is not None,
                "feature_hash": feature_hash or grid.feature_hash(), "audio_path": _text(audio_path),
            })
            d = h.create_dataset("features", shape=(s, 3, grid.N_FREQ, L), dtype=FEATURE_DTYPE,
                                 chunks=(1, 3, grid.N_FREQ, L), compression=COMPRESSION, track_times=False)
            done = 0
            for a, blk in blocks:
                blk = np.asarray(blk)
                n = blk.shape[-1]
                if a != done or a % L or blk.shape[:2] != (3, grid.N_FREQ) or a + n > t or (n % L and a + n != t):
                    raise ValueError(f"block at frame {a} of {n} frames does not continue frame {done} of {t}")
                k = -(-n // L)
                seg = np.zeros((3, grid.N_FREQ, k * L), FEATURE_DTYPE)
                seg[:, :, :n] = blk
                d[a // L: a // L + k] = seg.reshape(3, grid.N_FREQ, k, L).transpose(2, 0, 1, 3)
                done = a + n
            if done != t:
                raise ValueError(f"blocks cover {done} of {t} frames")
            d.id.close()          # closed before the next dataset, as write_shard's (same file layout)
            del d
            for name in ("bins", "f0", "mask", "start"):
                h.create_dataset(name, data=labels[name], track_times=False)
        checksum = file_checksum(tmp)
    return {"n_frames": t, "n_segments": s, "n_voiced": int(np.count_nonzero(labels["bins"])), "checksum": checksum}


def _check_shard(h: h5py.File, path) -> int:
    """Validate the datasets of an open shard; return its ``n_frames``."""
    missing = [k for k in _DATASETS if k not in h]
    if missing:
        raise InputError(path, f"corrupt shard: missing datasets {missing}")
    s = h["start"].shape[0]
    want = {"features": (s, 3, grid.N_FREQ, grid.SEG_LEN), "bins": (s, grid.SEG_LEN),
            "f0": (s, grid.SEG_LEN), "mask": (s, grid.SEG_LEN)}
    for k, shape in want.items():
        if h[k].shape != shape:
            raise InputError(path, f"corrupt shard: {k} has shape {h[k].shape}, expected {shape}")
    t = int(h.attrs.get("n_frames", -1))
    if not (s - 1) * grid.SEG_LEN < t <= s * grid.SEG_LEN:
        raise InputError(path, f"corrupt shard: n_frames={t} does not fit {s} segments")
    return t


def read_track(path, checksum: str | None = "manifest"):
    """Rebuild a whole track from its shard: ``(features (3, 320, T) float32, bins (T,) int16, f0 (T,) float32)``.

    The segments are concatenated along time and the tail padding (``mask == False``) is dropped.
    Raises ``InputError(path, ...)`` for a missing, unreadable, inconsistent or non-finite shard and for one
    whose bytes do not match ``checksum`` (default: the one its cache's manifest records, see
    :func:`recorded_checksum`; None: not checked).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "shard not found")
    verify_shard(path, recorded_checksum(path) if checksum == "manifest" else checksum)
    try:
        with h5py.File(path, "r") as h:
            t = _check_shard(h, path)
            feats = h["features"][()]
            bins, f0, mask = h["bins"][()], h["f0"][()], h["mask"][()]
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as e:   # h5py reports truncated / non-HDF5 files as OSError
        raise InputError(path, f"corrupt shard: {e}") from None
    mask = mask.reshape(-1)
    if int(mask.sum()) != t or not mask[:t].all():
        raise InputError(path, "corrupt shard: mask does not mark the first n_frames frames")
    s = feats.shape[0]
    feats = feats.transpose(1, 2, 0, 3).reshape(3, grid.N_FREQ, s * grid.SEG_LEN)[:, :, :t].astype(np.float32)
    if not np.isfinite(feats.sum(dtype=np.float64)):
        raise InputError(path, "corrupt shard: features contain NaN/inf")
    return feats, bins.reshape(-1)[:t], f0.reshape(-1)[:t]


def shard_ok(path) -> bool:
    """True when ``path`` opens as a shard with consistent datasets (cheap: reads metadata only)."""
    try:
        with h5py.File(path, "r") as h:
            _check_shard(h, path)
        return True
    except (InputError, OSError, KeyError, ValueError):
        return False


# ---------------------------------------------------------------- manifest

def cache_hash(feature_hash: str, augment: dict | None = None) -> str:
    """Hash of what a cache's shards depend on: the feature parameters and, for augmented caches, the
    augmentation spec (its canonical JSON). Plain caches: ``cache_hash(fh) == cache_hash(fh, None)``."""
    import hashlib

    blob = feature_hash + "|" + ("" if augment is None else json.dumps(augment, sort_keys=True, separators=(",", ":")))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def manifest_cache_hash(manifest: dict) -> str:
    """``cache_hash`` of a loaded manifest (older manifests have no ``augment`` entry: plain)."""
    return cache_hash(manifest["feature_hash"], manifest.get("augment"))


def new_manifest(dataset: str, augment: dict | None = None) -> dict:
    m = {"version": MANIFEST_VERSION, "dataset": dataset, "feature_params": grid.FEATURE_PARAMS,
         "feature_hash": grid.feature_hash(), "tracks": {}, "failed": {}}
    if augment is not None:
        m["augment"] = augment
    m["cache_hash"] = cache_hash(m["feature_hash"], augment)
    return m


def load_manifest(cache_dir) -> dict | None:
    """The manifest of ``cache_dir`` with its journal applied, or None if it has none.

    Raises ``InputError`` if it is unreadable.
    """
    p = Path(cache_dir) / MANIFEST
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(p, f"unreadable manifest: {e}") from None
    if not isinstance(m, dict) or not {"feature_hash", "tracks"} <= m.keys():
        raise InputError(p, "unreadable manifest: missing 'feature_hash' / 'tracks'")
    m.setdefault("failed", {})
    apply_journal(m, cache_dir)
    return m


def read_journal(cache_dir) -> list[dict]:
    """Records of ``cache_dir``'s journal, in order; a torn last line (a kill mid-append) is dropped."""
    p = Path(cache_dir) / JOURNAL
    try:
        lines = p.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise InputError(p, f"unreadable journal: {e}") from None
    out = []
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
            if not isinstance(rec, dict) or not isinstance(rec.get("track"), str) or not (
                    isinstance(rec.get("entry"), dict) or isinstance(rec.get("failed"), str)):
                raise ValueError("not a journal record")
        except ValueError:
            if i >= len(lines) - 2:      # the last line (possibly before a final newline): a torn append
                break
            raise InputError(p, f"corrupt journal: line {i + 1} is not a record") from None
        out.append(rec)
    return out


def apply_journal(manifest: dict, cache_dir) -> int:
    """Apply ``cache_dir``'s journal to ``manifest`` in place; return the number of records."""
    recs = read_journal(cache_dir)
    for r in recs:
        if "entry" in r:
            manifest["tracks"][r["track"]] = r["entry"]
            manifest["failed"].pop(r["track"], None)
        else:
            manifest["tracks"].pop(r["track"], None)
            manifest["failed"][r["track"]] = r["failed"]
    return len(recs)


class Journal:
    """Append-only log of finished tracks: one JSON line each, flushed and fsync'd before ``append`` returns."""

    def __init__(self, cache_dir):
        self.path = Path(cache_dir) / JOURNAL
        self._fh = open(self.path, "ab")

    def append(self, track_id: str, *, entry: dict | None = None, failed: str | None = None) -> None:
        rec = {"track": track_id, **({"entry": entry} if entry is not None else {"failed": failed})}
        self._fh.write(json.dumps(rec, sort_keys=True).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def compact_journal(cache_dir) -> bool:
    """Fold ``cache_dir``'s journal into ``manifest.json`` (atomic rewrite), then delete it; True if there was one.

    Idempotent: a kill between the two steps leaves a journal whose records the manifest already holds.
    """
    j = Path(cache_dir) / JOURNAL
    if not j.exists():
        return False
    m = load_manifest(cache_dir)          # applies the journal
    if m is not None:
        write_manifest(cache_dir, m)
    j.unlink(missing_ok=True)
    return True


def write_manifest(cache_dir, manifest: dict) -> None:
    """Write ``manifest.json`` atomically (temp file + ``os.replace``)."""
    write_text(Path(cache_dir) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


@dataclass
class Cache:
    """An extracted feature cache: ``manifest.json`` + ``shards/*.h5``."""

    root: Path
    manifest: dict = field(repr=False)

    @property
    def feature_hash(self) -> str:
        return self.manifest["feature_hash"]

    @property
    def dataset(self) -> str:
        return self.manifest.get("dataset", "")

    @property
    def tracks(self) -> dict:
        """``{track_id: {"shard", "n_frames", "n_segments", "duration_s", "labeled", ...}}``."""
        return self.manifest["tracks"]

    @property
    def failed(self) -> dict:
        return self.manifest.get("failed", {})

    def shard_path(self, track_id: str) -> Path:
        return self.root / self.tracks[track_id]["shard"]

    def checksum(self, track_id: str) -> str | None:
        """The shard's recorded checksum (None for caches made before checksums)."""
        return self.tracks[track_id].get("checksum")

    def shard_paths(self) -> list[Path]:
        """Absolute shard paths, in sorted track-id order."""
        return [self.shard_path(t) for t in sorted(self.tracks)]

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self):
        """Yield ``(track_id, shard_path)`` in sorted track-id order."""
        return ((t, self.shard_path(t)) for t in sorted(self.tracks))


def open_cache(cache_dir, expected_hash: str | None = None) -> Cache:
    """Open a cache written by ``hkd-prep extract``.

    Raises ``InputError`` for a missing / empty folder, a missing or unreadable manifest, or (with
    ``expected_hash``) features computed with other parameters.
    """
    root = Path(cache_dir)
    if not root.is_dir():
        raise InputError(root, "cache folder does not exist")
    m = load_manifest(root)
    if m is None:
        what = "empty folder" if not any(root.iterdir()) else "no manifest.json"
        raise InputError(root, f"{what}: not a feature cache (run `hkd-prep extract` first)")
    if expected_hash is not None and m["feature_hash"] != expected_hash:
        raise InputError(root / MANIFEST, f"features have hash {m['feature_hash']}, expected {expected_hash} "
                                          "(re-extract with `hkd-prep extract --force`)")
    unchecked = sum(1 for e in m["tracks"].values() if not e.get("checksum"))
    if unchecked and str(root.absolute()) not in _NOTED:
        _NOTED.add(str(root.absolute()))
        warnings.warn(f"{root}: {unchecked} of {len(m['tracks'])} shards have no checksum (cache made before "
                      "checksums): they are read unverified; `hkd-prep extract` on it adds them", stacklevel=2)
    return Cache(root, m)


_NOTED: set[str] = set()     # caches whose "no checksums" note was given in this process
