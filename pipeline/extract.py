"""Batch feature extraction: tracks → CFP + labels → one HDF5 shard each, resumable, in parallel (joblib).

Per track: ``audio = track.load_audio()``, ``feats = cfp(audio)`` (3, 320, T); if the track is labeled, its
native-time f0 goes onto the 10 ms grid (``labels.f0_to_grid``) and ``bins = grid.hz_to_bin(f0)``.
Each finished track is appended to the cache's journal (one fsync'd JSON line, ``shards.Journal``) and the
journal is folded into ``manifest.json`` at the end (or by the next run after a kill), so an interrupted run
keeps everything that finished and the next run only does the rest. A shard is skipped only when its bytes match
the checksum the manifest records; a corrupt one is redone. One extract per cache folder at a time: the run holds
an exclusive ``flock`` on ``<out>/.lock`` (which names its pid) until it ends.
"""
from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hkdsme.pipeline import grid, shards, signals, stream
from hkdsme.pipeline.atomic import file_lock
from hkdsme.pipeline.errors import InputError, display

MAX_END_GAP_S = 1.0      # annotation end may differ from the audio duration by at most this
MIN_COVERAGE = 0.5       # ... and must span at least this fraction of the audio


def compute_features(audio: np.ndarray) -> np.ndarray:
    """CFP of 8 kHz audio, ``(3, 320, T)`` float32 (indirection so tests can swap the feature)."""
    from hkdsme.pipeline.cfp import cfp
    return cfp(audio)


def f0_on_grid(times, f0, n_frames: int) -> np.ndarray:
    """Native-time f0 annotation → Hz per CFP frame (``labels.f0_to_grid``)."""
    from hkdsme.pipeline.labels import f0_to_grid
    return f0_to_grid(times, f0, n_frames)


def check_label_span(path, times, duration_s: float) -> None:
    """Refuse labels that do not belong to the audio.

    Fails when ``|t_last - duration| > 1 s`` or ``(t_last - t_first) < 0.5 * duration``
    (wrong file, wrong sample rate, truncated annotation).
    """
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        raise InputError(path, "label file has no frames")
    if not np.all(np.isfinite(times)):
        raise InputError(path, "label times contain NaN/inf")
    end, span = float(times[-1]), float(times[-1] - times[0])
    if abs(end - duration_s) > MAX_END_GAP_S or span < MIN_COVERAGE * duration_s:
        raise InputError(path, f"label span {end:.1f} s does not match audio {duration_s:.1f} s")


# Audio longer than this many frames is streamed (:mod:`hkdsme.pipeline.stream`, torch-free): pass 1 finds the
# per-channel extrema of the global normalisation, pass 2 recomputes each block, normalises it and writes its
# segments into the shard, so memory is one block plus the shard's labels instead of ~70 MB per minute of
# audio. The same 10-minute bound as predict's one-pass regime. 20-min synthetic file, peak RSS: 1561 MB
# one-pass, 518 MB streamed (when this path still imported torch for its blocks: ~310 MB of that).
STREAM_FRAMES = stream.MAX_HELD_FRAMES


def _stream_frames() -> int:
    return STREAM_FRAMES


def _block_frames() -> int:
    return stream.frames_per_block(stream.DEFAULT_BLOCK_S)


def compute_track(track, stream_frames: int | None = None):
    """Features and labels of one track (bad input raises ``InputError`` naming the file).

    Returns ``(duration_s, n_frames, features, bins, f0)``: ``features`` is the float32 ``(3, 320, T)`` CFP, or,
    for audio longer than ``stream_frames`` (default :data:`STREAM_FRAMES`), a function returning an iterator of
    ``(first_frame, block)`` (pass 2 of the streamed CFP; pass 1 has run). ``bins`` / ``f0`` are None when the
    track is unlabeled.
    """
    audio = track.load_audio()
    duration = len(audio) / grid.SR
    limit = _stream_frames() if stream_frames is None else int(stream_frames)
    try:
        if grid.n_frames(len(audio)) > limit:
            audio = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).reshape(-1))
            bf = _block_frames()
            lo, hi = stream.streamed_extrema(audio, bf)
            t = grid.n_frames(len(audio))
            feats = lambda: stream.normalised_blocks(audio, lo, hi, bf, track.audio_path)  # noqa: E731
        else:
            feats = np.asarray(compute_features(audio), dtype=np.float32)
            t = feats.shape[-1]
            if not np.all(np.isfinite(feats)):
                raise InputError(track.audio_path, "features contain NaN/inf")
    except InputError as e:   # cfp names no file
        raise InputError(track.audio_path if e.path is None else e.path, e.reason) from None
    ann = track.load_f0()
    bins = f0 = None
    if ann is not None:
        times, hz = ann
        check_label_span(track.label_path or track.audio_path, times, duration)
        f0 = np.asarray(f0_on_grid(times, hz, t), dtype=np.float32)
        bins = grid.hz_to_bin(f0)
    return duration, t, feats, bins, f0


def _entry(shard_rel: str, info: dict, duration: float, labeled: bool) -> dict:
    return {"shard": shard_rel, "n_frames": info["n_frames"], "n_segments": info["n_segments"],
            "n_voiced": info["n_voiced"], "duration_s": round(duration, 4), "labeled": labeled,
            "checksum": info["checksum"]}


def _failure(track, e: BaseException) -> dict:
    if isinstance(e, InputError):
        return {"failed": str(e) if e.path is not None else f"{track.audio_path}: {e.reason}"}
    return {"failed": f"{track.audio_path}: {type(e).__name__}: {e}"}


def process_track(track, out: str | os.PathLike, shard_rel: str, dataset: str, stream_frames: int | None = None
                  ) -> dict:
    """Extract one track into ``out/shard_rel``; return its manifest entry or ``{"failed": "<file>: <reason>"}``.

    Runs inside a joblib worker. Bad input (``InputError``) is returned, not raised, so one file never stops
    a batch; any other exception is returned too, prefixed by its type, so a library bug on one odd file
    shows up in the summary instead of killing hours of work. Long audio (``stream_frames``, see
    :func:`compute_track`) is streamed into the shard block by block.
    """
    try:
        duration, t, feats, bins, f0 = compute_track(track, stream_frames)
        kw = dict(track_id=track.track_id, dataset=dataset, audio_path=track.audio_path)
        if callable(feats):
            info = shards.write_shard_blocks(Path(out) / shard_rel, t, feats(), bins, f0, **kw)
        else:
            info = shards.write_shard(Path(out) / shard_rel, feats, bins, f0, **kw)
        return _entry(shard_rel, info, duration, bins is not None)
    except Exception as e:  # noqa: BLE001 - reported per file, see docstring
        return _failure(track, e)


def compute_track_arrays(track, stream_frames: int | None = None) -> dict:
    """A dask task: the arrays of one track's shard, returned to the client that writes it (workers need not
    see the output folder). ``{"features": float16 (3, 320, T), "bins", "f0", "duration_s"}`` or
    ``{"failed": ...}``. float16 is the shard's own dtype, so the client writes the same bytes as
    :func:`process_track`; a streamed track is assembled block by block (memory: the float16 result plus one
    block)."""
    try:
        duration, t, feats, bins, f0 = compute_track(track, stream_frames)
        if callable(feats):
            out = np.empty((3, grid.N_FREQ, t), shards.FEATURE_DTYPE)
            for a, blk in feats():
                out[:, :, a:a + blk.shape[-1]] = blk
        else:
            out = feats.astype(shards.FEATURE_DTYPE)
        return {"features": out, "bins": bins, "f0": f0, "duration_s": duration}
    except Exception as e:  # noqa: BLE001 - reported per file
        return _failure(track, e)


def write_track_arrays(track, res: dict, out: Path, shard_rel: str, dataset: str) -> dict:
    """Client side of the dask backend: write ``compute_track_arrays``'s result as the track's shard."""
    if "failed" in res:
        return res
    try:
        feats = res["features"]
        t = feats.shape[-1]
        step = _block_frames()
        info = shards.write_shard_blocks(out / shard_rel, t, ((a, feats[:, :, a:a + step]) for a in range(0, t, step)),
                                         res["bins"], res["f0"], track_id=track.track_id, dataset=dataset,
                                         audio_path=track.audio_path)
        return _entry(shard_rel, info, res["duration_s"], res["bins"] is not None)
    except Exception as e:  # noqa: BLE001 - e.g. the output folder became unwritable
        return _failure(track, e)


LOCK = ".lock"
# temp names of pipeline.atomic (".<name>.tmp-<pid>-<random>") and older "<name>.tmp-<pid>" leftovers
_TMP = re.compile(r".+\.tmp-\d+(-[A-Za-z0-9_]+)?")


@contextmanager
def cache_lock(out: Path):
    """Hold the exclusive lock of cache folder ``out`` (``out/.lock``, :func:`hkdsme.pipeline.atomic.file_lock`):
    ``InputError`` naming the holder's pid while another live `hkd-prep extract` writes there."""
    with file_lock(out / LOCK, out, "cache is being written by another `hkd-prep extract`",
                   "wait for it to finish or use another --out"):
        yield


def _remove_leftovers(out: Path) -> int:
    """Delete temp files of killed writes (``pipeline.atomic`` names) in ``out`` and ``out/shards``.

    Safe because the caller holds the cache lock: no other extract is writing here.
    """
    n = 0
    for folder in (out, out / shards.SHARD_DIR):
        for f in folder.glob("*.tmp-*"):
            if _TMP.fullmatch(f.name) and f.is_file():
                f.unlink(missing_ok=True)
                n += 1
    return n


def _entry_ok(out: Path, entry: dict) -> bool:
    """Can a cached track be kept? Its shard must open consistently and match its recorded checksum. An entry
    of a cache made before checksums gets one, if the whole shard reads back with finite features."""
    path = out / entry["shard"]
    if not shards.shard_ok(path):
        return False
    try:
        if entry.get("checksum"):
            return shards.verify_shard(path, entry["checksum"])
        shards.read_track(path, checksum=None)
    except InputError:
        return False
    entry["checksum"] = shards.file_checksum(path)
    return True


def _prepare(out: Path, dataset: str, force: bool, augment: dict | None = None) -> dict:
    """Load / create the manifest, refusing a cache built with other feature parameters or another
    augmentation spec (``shards.cache_hash``) unless ``force``."""
    out.mkdir(parents=True, exist_ok=True)
    if force:
        (out / shards.JOURNAL).unlink(missing_ok=True)
    else:
        shards.compact_journal(out)          # a killed run's finished tracks
    m = shards.load_manifest(out)
    if m is not None and not force:
        if m["feature_hash"] != grid.feature_hash():
            raise InputError(out / shards.MANIFEST,
                             f"cache was built with feature hash {m['feature_hash']}, current parameters give "
                             f"{grid.feature_hash()}; use --force to rebuild it")
        if shards.manifest_cache_hash(m) != shards.cache_hash(grid.feature_hash(), augment):
            have = m.get("augment")
            what = "no augmentation" if have is None else f"augmentation spec {have.get('name', '?')!r}"
            want = "no augmentation" if augment is None else f"spec {augment.get('name', '?')!r}"
            raise InputError(out / shards.MANIFEST, f"cache was built with {what} (hash "
                                                    f"{shards.manifest_cache_hash(m)}), this run uses {want}; "
                                                    "use another --out or --force")
        if m.get("dataset") not in (None, dataset):
            raise InputError(out / shards.MANIFEST, f"cache holds dataset {m['dataset']!r}, not {dataset!r}; "
                                                    "use another --out or --force")
    if m is None or force:
        if force:
            shutil.rmtree(out / shards.SHARD_DIR, ignore_errors=True)
        m = shards.new_manifest(dataset, augment)
    (out / shards.SHARD_DIR).mkdir(exist_ok=True)
    _remove_leftovers(out)
    return m


def extract(tracks, out, jobs: int = -1, backend: str = "loky", force: bool = False, strict: bool = False,
            progress: bool = True, dataset: str | None = None, echo=print, augment: dict | None = None,
            scheduler: str | None = None) -> dict:
    """Extract ``tracks`` into the cache folder ``out``; return the run summary.

    Summary: ``done`` / ``skipped`` (already cached) / ``failed`` counts, ``failures`` (one line each),
    ``hours`` and ``segments`` of the whole cache. Each failure is also reported via ``echo`` as
    ``skip <file>: <reason>``. ``strict`` only marks the summary (``summary["ok"]``); the CLI turns it into the
    exit code; ``summary["all_failed"]`` (every track failed, nothing usable) makes it non-zero regardless.
    Raises ``InputError`` if another extract holds the folder's lock. ``augment``: the augmentation spec
    (``AugmentSpec.to_dict()``) the tracks were made with; it is stored in the manifest and part of its ``cache_hash``. ``audio_s``: seconds of audio extracted by this run.

    ``backend="dask"`` runs the tracks on a ``distributed`` cluster: the scheduler at ``scheduler`` (or
    ``$DASK_SCHEDULER_ADDRESS``), else the current ``distributed.Client``, else a ``LocalCluster`` of ``jobs``
    worker processes (-1: one per usable core) started and closed here. Workers compute each track's arrays and
    return them; this process writes every shard (lock, journal and checksums stay here), so workers must read
    the dataset at the tracks' paths but need not see ``out``.
    """
    tracks = list(tracks)
    out = Path(out).absolute()   # reused loky workers may run in another cwd (track paths: see the CLI)
    ids = [t.track_id for t in tracks]
    dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dupes:
        raise ValueError(f"duplicate track ids: {dupes[:5]}")
    if dataset is None:
        names = sorted({t.dataset for t in tracks})
        dataset = names[0] if len(names) == 1 else "+".join(names)
    out.mkdir(parents=True, exist_ok=True)
    with cache_lock(out):
        return _extract_locked(tracks, out, jobs, backend, force, strict, progress, dataset, echo, augment,
                               scheduler)


def _extract_locked(tracks, out, jobs, backend, force, strict, progress, dataset, echo, augment,
                    scheduler=None) -> dict:
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    m = _prepare(out, dataset, force, augment)
    todo, skipped = [], 0
    for t in tracks:
        entry = m["tracks"].get(t.track_id)
        if entry is not None and _entry_ok(out, entry):
            skipped += 1
        else:
            m["tracks"].pop(t.track_id, None)
            todo.append(t)
    shards.write_manifest(out, m)        # once per run; finished tracks go to the journal

    failures = []
    done = 0
    audio_s = 0.0
    if todo:
        if backend == "dask":
            results = _dask_results(todo, out, dataset, jobs, scheduler)
        else:
            par = Parallel(n_jobs=jobs, backend=backend, return_as="generator_unordered")
            results = par(delayed(_task)(t, str(out), shards.shard_relpath(t.track_id), dataset) for t in todo)
        bar = tqdm(total=len(todo), desc=f"extract {dataset}", unit="track", disable=not progress)
        journal = shards.Journal(out)
        try:
            for track_id, res in results:
                if "failed" in res:
                    journal.append(track_id, failed=res["failed"])
                    m["failed"][track_id] = res["failed"]
                    failures.append(res["failed"])
                    msg = display(f"skip {res['failed']}")
                    if progress:
                        bar.write(msg)   # keeps the bar intact
                    else:
                        echo(msg)
                else:
                    journal.append(track_id, entry=res)
                    m["failed"].pop(track_id, None)
                    m["tracks"][track_id] = res
                    done += 1
                    audio_s += res["duration_s"]
                bar.update()
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()               # a dask run shuts its cluster down here; joblib aborts its workers
            bar.close()
            journal.close()
            shards.compact_journal(out)           # the tracks that finished are kept
            if signals.received():                # SIGTERM / SIGHUP: no worker left writing, then no temporaries
                signals.end_workers()
                _remove_leftovers(out)

    entries = m["tracks"].values()
    summary = {
        "out": str(out), "dataset": dataset, "done": done, "skipped": skipped, "failed": len(failures),
        "failures": failures, "tracks": len(m["tracks"]),
        "hours": sum(e["duration_s"] for e in entries) / 3600.0,
        "segments": sum(e["n_segments"] for e in entries), "audio_s": audio_s,
    }
    summary["all_failed"] = bool(tracks) and len(failures) == len(tracks)
    summary["ok"] = not (strict and failures) and not summary["all_failed"]
    return summary


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _dask_client(jobs: int = -1, scheduler: str | None = None):
    """``(client, close)``: a client of ``scheduler`` / ``$DASK_SCHEDULER_ADDRESS``, else the current
    ``distributed.Client``, else a new ``LocalCluster`` of ``jobs`` single-threaded worker processes (-1: one
    per usable core); ``close()`` shuts down only what was started here."""
    try:
        from dask.distributed import Client, LocalCluster, default_client
    except ImportError:
        raise RuntimeError("--backend dask needs `pip install 'dask[distributed]'` (or `pip install "
                           "'hkdsme[dask]'`)") from None
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            client = Client(address)          # waits distributed.comm.timeouts.connect (dask config)
        except (OSError, TimeoutError) as e:
            raise RuntimeError(f"cannot reach the dask scheduler at {address}: {e}") from None
        return client, client.close
    try:
        return default_client(), lambda: None
    except ValueError:
        pass
    import logging

    n = int(jobs) if jobs and jobs > 0 else _usable_cores()
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)

    def close():
        client.close()
        cluster.close()
    return client, close


class _DaskResults:
    """Iterator of ``(track_id, manifest entry or {"failed"})`` for ``todo`` run on a dask cluster.

    At most two tasks per worker are in flight (finished results wait on the workers until fetched, so this
    bounds their memory); each result is fetched, written as a shard here, and released.
    """

    def __init__(self, todo, out: Path, dataset: str, jobs: int, scheduler: str | None):
        self.client, self._close = _dask_client(jobs, scheduler)     # first: a clear error without dask
        from dask.distributed import as_completed

        self.todo, self.out, self.dataset = list(todo), out, dataset
        n_workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self.pending = iter(self.todo)
        self.by_key = {}
        self.ac = as_completed()
        for _ in range(2 * n_workers):
            if not self._submit():
                break

    def _submit(self) -> bool:
        t = next(self.pending, None)
        if t is None:
            return False
        fut = self.client.submit(compute_track_arrays, t, pure=False)
        self.by_key[fut.key] = t
        self.ac.add(fut)
        return True

    def __iter__(self):
        for fut in self.ac:
            t = self.by_key.pop(fut.key)
            try:
                res = fut.result()
            except Exception as e:  # noqa: BLE001 - a worker died / the task could not run: this track fails
                res = _failure(t, e)
            fut.release()
            self._submit()
            yield t.track_id, write_track_arrays(t, res, self.out, shards.shard_relpath(t.track_id), self.dataset)

    def close(self):
        if self._close is not None:
            for fut in list(self.ac.futures):
                fut.cancel()
            self._close()
            self._close = None


def _dask_results(todo, out, dataset, jobs, scheduler):
    return _DaskResults(todo, out, dataset, jobs, scheduler)


def _task(track, out, shard_rel, dataset):
    """joblib task: ``(track_id, process_track(...))`` (results arrive unordered)."""
    return track.track_id, process_track(track, out, shard_rel, dataset)
