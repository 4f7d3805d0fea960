"""Batch feature extraction: tracks → CFP + labels → one HDF5 shard each, resumable, in parallel (joblib).

Per track: ``audio = track.load_audio()``, ``feats = cfp(audio)`` (3, 320, T); if the track is labeled, its
native-time f0 goes onto the 10 ms grid (``labels.f0_to_grid``) and ``bins = grid.hz_to_bin(f0)``.
The manifest is rewritten atomically after every finished track, so an interrupted run keeps everything that
finished and the next run only does the rest.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from hkdsme.pipeline import grid, shards
from hkdsme.pipeline.errors import InputError

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


def process_track(track, out: str | os.PathLike, shard_rel: str, dataset: str) -> dict:
    """Extract one track into ``out/shard_rel``; return its manifest entry or ``{"failed": "<file>: <reason>"}``.

    Runs inside a joblib worker. Bad input (``InputError``) is returned, not raised, so one file never stops
    a batch; any other exception is returned too, prefixed by its type, so a library bug on one odd file
    shows up in the summary instead of killing hours of work.
    """
    try:
        audio = track.load_audio()
        duration = len(audio) / grid.SR
        try:
            feats = compute_features(audio)
        except InputError as e:   # cfp names no file
            raise InputError(track.audio_path, e.reason) from None
        feats = np.asarray(feats, dtype=np.float32)
        t = feats.shape[-1]
        if not np.all(np.isfinite(feats)):
            raise InputError(track.audio_path, "features contain NaN/inf")
        ann = track.load_f0()
        bins = f0 = None
        if ann is not None:
            times, hz = ann
            check_label_span(track.label_path or track.audio_path, times, duration)
            f0 = np.asarray(f0_on_grid(times, hz, t), dtype=np.float32)
            bins = grid.hz_to_bin(f0)
        info = shards.write_shard(Path(out) / shard_rel, feats, bins, f0, track_id=track.track_id,
                                  dataset=dataset, audio_path=track.audio_path)
        return {"shard": shard_rel, "n_frames": info["n_frames"], "n_segments": info["n_segments"],
                "n_voiced": info["n_voiced"], "duration_s": round(duration, 4), "labeled": ann is not None}
    except InputError as e:
        return {"failed": str(e) if e.path is not None else f"{track.audio_path}: {e.reason}"}
    except Exception as e:  # noqa: BLE001 - reported per file, see docstring
        return {"failed": f"{track.audio_path}: {type(e).__name__}: {e}"}


def _prepare(out: Path, dataset: str, force: bool, augment: dict | None = None) -> dict:
    """Load / create the manifest, refusing a cache built with other feature parameters or another
    augmentation spec (``shards.cache_hash``) unless ``force``."""
    out.mkdir(parents=True, exist_ok=True)
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
    for leftover in list(out.glob("*.tmp-*")) + list((out / shards.SHARD_DIR).glob("*.tmp-*")):
        leftover.unlink(missing_ok=True)   # from a killed run; safe: one extract per cache at a time
    return m


def extract(tracks, out, jobs: int = -1, backend: str = "loky", force: bool = False, strict: bool = False,
            progress: bool = True, dataset: str | None = None, echo=print, augment: dict | None = None) -> dict:
    """Extract ``tracks`` into the cache folder ``out``; return the run summary.

    Summary: ``done`` / ``skipped`` (already cached) / ``failed`` counts, ``failures`` (one line each),
    ``hours`` and ``segments`` of the whole cache. Each failure is also reported via ``echo`` as
    ``skip <file>: <reason>``. ``strict`` only marks the summary (``summary["ok"]``); the CLI turns it into the
    exit code. ``augment``: the augmentation spec (``AugmentSpec.to_dict()``) the tracks were made with; it is
    stored in the manifest and part of its ``cache_hash``. ``audio_s``: seconds of audio extracted by this run.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    tracks = list(tracks)
    out = Path(out).absolute()   # reused loky workers may run in another cwd (track paths: see the CLI)
    ids = [t.track_id for t in tracks]
    dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dupes:
        raise ValueError(f"duplicate track ids: {dupes[:5]}")
    if dataset is None:
        names = sorted({t.dataset for t in tracks})
        dataset = names[0] if len(names) == 1 else "+".join(names)
    m = _prepare(out, dataset, force, augment)

    todo, skipped = [], 0
    for t in tracks:
        entry = m["tracks"].get(t.track_id)
        if entry is not None and shards.shard_ok(out / entry["shard"]):
            skipped += 1
        else:
            m["tracks"].pop(t.track_id, None)
            todo.append(t)
    shards.write_manifest(out, m)

    failures = []
    done = 0
    audio_s = 0.0
    if todo:
        if backend == "dask":
            _dask_client()
        par = Parallel(n_jobs=jobs, backend=backend, return_as="generator_unordered")
        tasks = (delayed(_task)(t, str(out), shards.shard_relpath(t.track_id), dataset) for t in todo)
        bar = tqdm(total=len(todo), desc=f"extract {dataset}", unit="track", disable=not progress)
        try:
            for track_id, res in par(tasks):
                if "failed" in res:
                    m["failed"][track_id] = res["failed"]
                    failures.append(res["failed"])
                    msg = f"skip {res['failed']}"
                    if progress:
                        bar.write(msg)   # keeps the bar intact
                    else:
                        echo(msg)
                else:
                    m["failed"].pop(track_id, None)
                    m["tracks"][track_id] = res
                    done += 1
                    audio_s += res["duration_s"]
                shards.write_manifest(out, m)
                bar.update()
        finally:
            bar.close()

    entries = m["tracks"].values()
    summary = {
        "out": str(out), "dataset": dataset, "done": done, "skipped": skipped, "failed": len(failures),
        "failures": failures, "tracks": len(m["tracks"]),
        "hours": sum(e["duration_s"] for e in entries) / 3600.0,
        "segments": sum(e["n_segments"] for e in entries), "audio_s": audio_s,
    }
    summary["ok"] = not (strict and failures)
    return summary


def _dask_client():
    """joblib's dask backend runs on the current ``distributed.Client``: connect to ``$DASK_SCHEDULER_ADDRESS``
    (a cluster) or start a local one."""
    try:
        from dask.distributed import Client, default_client
    except ImportError:
        raise RuntimeError("--backend dask needs `pip install 'dask[distributed]'`") from None
    try:
        return default_client()
    except ValueError:
        return Client(os.environ.get("DASK_SCHEDULER_ADDRESS"))


def _task(track, out, shard_rel, dataset):
    """joblib task: ``(track_id, process_track(...))`` (results arrive unordered)."""
    return track.track_id, process_track(track, out, shard_rel, dataset)
