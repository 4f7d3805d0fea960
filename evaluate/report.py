"""``hkd-eval report``: score checkpoints on whole tracks of a dataset against its native reference.

For each track: CFP features (from a shard cache whose feature hash equals ``grid.feature_hash()``, else
computed from the audio), every checkpoint's f0 on the 10 ms grid for all frames, and
``metrics.melody_scores(native ref times, native ref Hz, est times, est Hz)`` (mir_eval resamples the estimate
onto the reference times). Per checkpoint the dataset score is the mean over tracks.

Files written to ``out_dir`` (atomically): ``report.md`` (table), ``report.json`` (everything), ``per_track.csv``
(``checkpoint,track_id,VR,VFA,RPA,RCA,OA``), ``plots/<track_id>.png`` (reference and estimates over the CFP
spectrum channel) and ``summary.png`` (bar chart of the means). A track that fails (unreadable audio, missing
labels, ...) is listed with its reason and the others continue.
"""
from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path

import numpy as np

from hkdsme.evaluate.metrics import METRICS, mean_scores, melody_scores
from hkdsme.pipeline import grid
from hkdsme.pipeline.atomic import write_text
from hkdsme.pipeline.errors import InputError


def checkpoint_names(paths) -> list[str]:
    """Short unique labels: the file stem, or ``parent/stem`` (then the full path) where stems collide."""
    paths = [Path(p) for p in paths]
    for make in (lambda p: p.stem, lambda p: f"{p.parent.name}/{p.stem}", lambda p: str(p)):
        names = [make(p) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [f"{i}:{p}" for i, p in enumerate(paths)]


def _cached_features(cache, track_id: str):
    """Features of ``track_id`` from the cache, or None when it is not cached."""
    from hkdsme.pipeline.shards import read_track

    if cache is None or track_id not in cache.tracks:
        return None
    feats, _, _ = read_track(cache.shard_path(track_id))
    return feats


def _features(track, cache) -> tuple[np.ndarray, str]:
    from hkdsme.evaluate.inference import check_audio
    from hkdsme.pipeline.stream import streamed_cfp

    feats = _cached_features(cache, track.track_id)
    if feats is not None:
        return feats, "cache"
    x = check_audio(track.load_audio(), track.audio_path)
    try:
        return streamed_cfp(x), "computed"
    except InputError as e:
        raise InputError(track.audio_path, e.reason) from None


def _open_cache(cache_dir, log):
    if cache_dir is None:
        return None
    from hkdsme.pipeline.shards import open_cache

    cache = open_cache(cache_dir)
    if cache.feature_hash != grid.feature_hash():
        log(f"note: cache {cache_dir} has features {cache.feature_hash}, this code computes "
            f"{grid.feature_hash()}: computing features from audio instead")
        return None
    return cache


def run_report(checkpoints, dataset: str, root, *, split=None, out_dir="report", cache_dir=None, device="cpu",
               batch_size: int | None = None, precision: str = "auto", decode: str = "voicing",
               voicing_threshold: float | None = None, plots: bool = True, limit=None, progress: bool = True, log=print,
               tracks_file=None, all_tracks: bool = False) -> dict:
    """Evaluate ``checkpoints`` on ``dataset`` and write the report files; returns the ``report.json`` dict.

    Checkpoints are all loaded first, so a bad one stops the run (``InputError``) before any work is done.
    """
    from tqdm import tqdm

    import mir_eval

    from hkdsme.evaluate.plots import plot_summary, plot_track
    from hkdsme.evaluate.inference import Predictor
    from hkdsme.evaluate.predict import check_out_dir
    from hkdsme.pipeline.datasets import list_tracks, track_list_name

    if not checkpoints:
        raise ValueError("give at least one checkpoint")
    out = check_out_dir(out_dir)              # an existing file or a read-only folder: one line, before any work
    names = checkpoint_names(checkpoints)
    preds = {n: Predictor(c, device=device, batch_size=batch_size, precision=precision, decode=decode,
                          voicing_threshold=voicing_threshold) for n, c in zip(names, checkpoints)}
    tracks = list_tracks(dataset, root, split=split, limit=limit, tracks_file=tracks_file, all_tracks=all_tracks)
    track_list = track_list_name(dataset, split, tracks_file, all_tracks) + (f", first {limit}" if limit else "")
    cache = _open_cache(cache_dir, log)

    per_track = {n: {} for n in names}
    sources, failed = {}, {}
    for tr in tqdm(tracks, desc=f"report {dataset}", unit="track", disable=not progress):
        try:
            ref = tr.load_f0()
            if ref is None:
                raise InputError(tr.audio_path, "track has no reference annotation")
            feats, sources[tr.track_id] = _features(tr, cache)
            est = {n: p.predict_features(feats) for n, p in preds.items()}
            scores = {n: melody_scores(ref[0], ref[1], *e, path=tr.label_path) for n, e in est.items()}
        except InputError as e:
            failed[tr.track_id] = str(e)
            sources.pop(tr.track_id, None)
            if progress:
                tqdm.write(f"failed {tr.track_id}: {e}")
            continue
        for n in names:
            per_track[n][tr.track_id] = scores[n]
        if plots:
            plot_track(out / "plots" / f"{_safe(tr.track_id)}.png", feats[0], est, reference=ref,
                       title=f"{dataset} {tr.track_id}")

    n_ok = len(sources)
    means = {n: (mean_scores(per_track[n].values()) if n_ok else {m: None for m in METRICS}) for n in names}
    report = {
        "dataset": dataset, "root": str(root), "split": split, "n_tracks": len(tracks), "n_scored": n_ok,
        "track_list": track_list,
        "feature_hash": grid.feature_hash(), "cache": str(cache_dir) if cache_dir else None,
        "feature_source": sources,
        "protocol": "mir_eval.melody.evaluate(native ref times/Hz, est on 10 ms grid); 50 cents; %; "
                    "mean over tracks",
        "mir_eval_version": mir_eval.__version__, "python": platform.python_version(),
        "checkpoints": {n: {"path": str(c), "kind": preds[n].kind, "feature_hash": preds[n].meta.get("feature_hash"),
                            "mean": means[n], "per_track": per_track[n]} for n, c in zip(names, checkpoints)},
        "failed": failed,
    }
    write_text(out / "report.json", json.dumps(report, indent=1))
    write_text(out / "per_track.csv", _per_track_csv(per_track))
    write_text(out / "report.md", _markdown(report))
    if n_ok:
        plot_summary(out / "summary.png", means, METRICS,
                     title=f"{dataset}{' ' + split if split else ''}: mean over {n_ok} tracks")
    return report


def _safe(track_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in track_id)


def _per_track_csv(per_track: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["checkpoint", "track_id", *METRICS])
    for name, tracks in per_track.items():
        for tid, s in tracks.items():
            w.writerow([name, tid, *(f"{s[m]:.4f}" for m in METRICS)])
    return buf.getvalue()


def _markdown(r: dict) -> str:
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    src = sorted(set(r["feature_source"].values()))
    lines = [
        f"# hkd-eval report: {r['dataset']}" + (f" ({r['split']})" if r["split"] else ""),
        "",
        f"- root: `{r['root']}`; tracks: {r['n_scored']} scored of {r['n_tracks']}, {len(r['failed'])} failed",
        f"- track list: {r['track_list']}",
        f"- features: {', '.join(src) or 'none'} (feature hash `{r['feature_hash']}`)",
        f"- {r['protocol']} (mir_eval {r['mir_eval_version']})",
        "",
        "| checkpoint | kind | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---:|" * len(METRICS),
    ]
    for name, c in r["checkpoints"].items():
        lines.append(f"| {name} | {c['kind']} | " + " | ".join(fmt(c["mean"][m]) for m in METRICS) + " |")
    if r["failed"]:
        lines += ["", "## Failed tracks", ""] + [f"- `{t}`: {why}" for t, why in r["failed"].items()]
    return "\n".join(lines) + "\n"
