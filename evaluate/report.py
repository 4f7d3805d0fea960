"""``hkd-eval report``: score checkpoints on whole tracks of a dataset against its native reference.

For each track: CFP features (from a shard cache whose feature hash equals ``grid.feature_hash()``, else
computed from the audio), every checkpoint's f0 on the 10 ms grid for all frames, and
``metrics.melody_scores(native ref times, native ref Hz, est times, est Hz)`` (mir_eval resamples the estimate
onto the reference times). Per checkpoint the dataset score is the mean over tracks.

Pitch is right within ``cent_tolerance`` cents: 50 (the literature's), except for datasets with note-level
references (:data:`NOTE_LEVEL`: ``ultrastar``, karaoke notes), scored at 100 cents with the chroma overall
accuracy OAc as a sixth metric; the "real-mix dev score" of a model is its mean OAc over the ultrastar dev songs
(``--split validation``) at 100 cents, frames in gaps shorter than 0.3 s between consecutive notes excluded
(docs/real_mix_dev.md). For ultrastar every metric leaves those frames out
(``metrics.melody_scores(..., exclude=ultrastar.note_gap_mask(ref))``) unless ``keep_note_gaps`` scores them as
unvoiced, as they are written.

Files written to ``out_dir`` (atomically): ``report.md`` (table), ``report.json`` (everything), ``per_track.csv``
(``checkpoint,track_id,VR,VFA,RPA,RCA,OA[,OAc]``), ``plots/<track_id>.png`` (reference and estimates over the CFP
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

from hkdsme.evaluate.metrics import ALL_METRICS, DEFAULT_CENT_TOLERANCE, METRICS, mean_scores, melody_scores
from hkdsme.pipeline import grid
from hkdsme.pipeline.atomic import write_text
from hkdsme.pipeline.errors import InputError


# Datasets whose references are notes, not f0 (no vibrato or glides, octave checked against the audio only):
# their default cent tolerance; they are also scored with OAc.
NOTE_LEVEL = {"ultrastar": 100.0}
DEV_SCORE = ("ultrastar", "validation", 100.0)   # the real-mix dev score: mean OAc on these (dataset, split, cents)
# Datasets whose short gaps between reference notes are left out of every metric by default (docs/real_mix_dev.md).
NOTE_GAPS_EXCLUDED = ("ultrastar",)


def scoring(dataset: str, cent_tolerance: float | None = None) -> tuple[float, tuple[str, ...]]:
    """``(cent tolerance, metrics)`` of a report on ``dataset``: :data:`NOTE_LEVEL` datasets default to their
    tolerance and add OAc; the others default to 50 cents and the five literature metrics."""
    tol = NOTE_LEVEL.get(dataset, DEFAULT_CENT_TOLERANCE) if cent_tolerance is None else float(cent_tolerance)
    return tol, (ALL_METRICS if dataset in NOTE_LEVEL else METRICS)


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
               tracks_file=None, all_tracks: bool = False, cent_tolerance: float | None = None,
               keep_note_gaps: bool = False) -> dict:
    """Evaluate ``checkpoints`` on ``dataset`` and write the report files; returns the ``report.json`` dict.

    ``cent_tolerance``: None = the dataset's default (:func:`scoring`). ``keep_note_gaps``: for
    :data:`NOTE_GAPS_EXCLUDED` datasets, score the short gaps between reference notes as unvoiced instead of
    leaving them out (:func:`hkdsme.pipeline.ultrastar.note_gap_mask`). Checkpoints are all loaded first, so a bad
    one stops the run (``InputError``) before any work is done.
    """
    from tqdm import tqdm

    import mir_eval

    from hkdsme.evaluate.plots import plot_summary, plot_track
    from hkdsme.evaluate.inference import Predictor
    from hkdsme.evaluate.predict import check_out_dir
    from hkdsme.pipeline.datasets import list_tracks, track_list_name

    if not checkpoints:
        raise ValueError("give at least one checkpoint")
    tol, metrics = scoring(dataset, cent_tolerance)
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"cent tolerance must be a positive number, got {cent_tolerance!r}")
    out = check_out_dir(out_dir)              # an existing file or a read-only folder: one line, before any work
    names = checkpoint_names(checkpoints)
    preds = {n: Predictor(c, device=device, batch_size=batch_size, precision=precision, decode=decode,
                          voicing_threshold=voicing_threshold) for n, c in zip(names, checkpoints)}
    tracks = list_tracks(dataset, root, split=split, limit=limit, tracks_file=tracks_file, all_tracks=all_tracks)
    track_list = track_list_name(dataset, split, tracks_file, all_tracks) + (f", first {limit}" if limit else "")
    cache = _open_cache(cache_dir, log)

    gaps_out = dataset in NOTE_GAPS_EXCLUDED and not keep_note_gaps
    per_track = {n: {} for n in names}
    sources, failed, alignment, excluded = {}, {}, {}, {}
    for tr in tqdm(tracks, desc=f"report {dataset}", unit="track", disable=not progress):
        try:
            ref = tr.load_f0()
            if ref is None:
                raise InputError(tr.audio_path, "track has no reference annotation")
            feats, sources[tr.track_id] = _features(tr, cache)
            est = {n: p.predict_features(feats) for n, p in preds.items()}
            mask = None
            if gaps_out:
                from hkdsme.pipeline.ultrastar import note_gap_mask

                mask = note_gap_mask(ref[0], ref[1])
            scores = {n: melody_scores(ref[0], ref[1], *e, path=tr.label_path, cent_tolerance=tol, metrics=metrics,
                                       exclude=mask)
                      for n, e in est.items()}
            if dataset == "ultrastar":          # the per-song offset/octave its reference was built with
                from hkdsme.pipeline.ultrastar import resolve_track

                alignment[tr.track_id] = resolve_track(tr).as_dict()
        except InputError as e:
            failed[tr.track_id] = str(e)
            sources.pop(tr.track_id, None)
            if progress:
                tqdm.write(f"failed {tr.track_id}: {e}")
            continue
        if mask is not None:
            excluded[tr.track_id] = float(mask.mean())
        for n in names:
            per_track[n][tr.track_id] = scores[n]
        if plots:
            plot_track(out / "plots" / f"{_safe(tr.track_id)}.png", feats[0], est, reference=ref,
                       title=f"{dataset} {tr.track_id}")

    n_ok = len(sources)
    means = {n: (mean_scores(per_track[n].values(), metrics) if n_ok else {m: None for m in metrics})
             for n in names}
    report = {
        "dataset": dataset, "root": str(root), "split": split, "n_tracks": len(tracks), "n_scored": n_ok,
        "track_list": track_list,
        "feature_hash": grid.feature_hash(), "cache": str(cache_dir) if cache_dir else None,
        "feature_source": sources,
        "protocol": f"mir_eval.melody (native ref times/Hz, est on 10 ms grid); pitch within {tol:g} cents; %; "
                    "mean over tracks",
        "cent_tolerance": tol, "metrics": list(metrics),
        "note_gaps": (None if dataset not in NOTE_GAPS_EXCLUDED else
                      "scored as unvoiced" if keep_note_gaps else _gaps_excluded_text()),
        "excluded": excluded,   # per track: the share of its reference frames left out of every metric
        "dev_score": _dev_score_note(dataset, split, tol, tracks_file, all_tracks, limit, bool(failed),
                                     keep_note_gaps),
        "alignment": alignment,
        "mir_eval_version": mir_eval.__version__, "python": platform.python_version(),
        "checkpoints": {n: {"path": str(c), "kind": preds[n].kind, "feature_hash": preds[n].meta.get("feature_hash"),
                            "mean": means[n], "per_track": per_track[n]} for n, c in zip(names, checkpoints)},
        "failed": failed,
    }
    write_text(out / "report.json", json.dumps(report, indent=1))
    write_text(out / "per_track.csv", _per_track_csv(per_track, metrics))
    write_text(out / "report.md", _markdown(report))
    if n_ok:
        plot_summary(out / "summary.png", means, metrics,
                     title=f"{dataset}{' ' + split if split else ''}: mean over {n_ok} tracks")
    return report


def _safe(track_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in track_id)


def _gaps_excluded_text() -> str:
    from hkdsme.pipeline.ultrastar import GAP_S

    return (f"frames in gaps shorter than {GAP_S:g} s between consecutive notes excluded from every metric "
            "(the singer often still sounds there; per-song share below)")


def _dev_score_note(dataset, split, tol, tracks_file, all_tracks, limit, any_failed: bool,
                    keep_note_gaps: bool = False) -> str | None:
    """For ultrastar: whether this report's mean OAc is the real-mix dev score, in words."""
    if dataset != DEV_SCORE[0]:
        return None
    from hkdsme.pipeline.ultrastar import GAP_S

    what = ("real-mix dev score = mean OAc over the ultrastar dev songs (split validation = splits.json 'dev') "
            f"at 100 cents, frames in note gaps shorter than {GAP_S:g} s excluded")
    if (split, tol, tracks_file, all_tracks, limit) != (DEV_SCORE[1], DEV_SCORE[2], None, False, None):
        return what + "; this report's tracks or tolerance differ, so its OAc is NOT that score"
    if keep_note_gaps:
        return what + "; this report scores those gaps as unvoiced (--keep-note-gaps), so its OAc is NOT that score"
    if any_failed:
        return what + "; a dev song failed (below), so this report's OAc is NOT that score"
    return what + ": the OAc column below"


def _per_track_csv(per_track: dict, metrics=METRICS) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["checkpoint", "track_id", *metrics])
    for name, tracks in per_track.items():
        for tid, s in tracks.items():
            w.writerow([name, tid, *(f"{s[m]:.4f}" for m in metrics)])
    return buf.getvalue()


def _markdown(r: dict) -> str:
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    src = sorted(set(r["feature_source"].values()))
    metrics = r["metrics"]
    lines = [
        f"# hkd-eval report: {r['dataset']}" + (f" ({r['split']})" if r["split"] else ""),
        "",
        f"- root: `{r['root']}`; tracks: {r['n_scored']} scored of {r['n_tracks']}, {len(r['failed'])} failed",
        f"- track list: {r['track_list']}",
        f"- features: {', '.join(src) or 'none'} (feature hash `{r['feature_hash']}`)",
        f"- {r['protocol']} (mir_eval {r['mir_eval_version']})",
        f"- cent tolerance: {r['cent_tolerance']:g} cents",
    ]
    if "OAc" in metrics:
        lines.append("- OAc = chroma overall accuracy: (frames unvoiced in both + frames voiced in both with the "
                     "octave-folded pitch error within the tolerance) / all scored frames")
    if r.get("note_gaps"):
        lines.append(f"- note gaps: {r['note_gaps']}")
    if r.get("dev_score"):
        lines.append(f"- {r['dev_score']}")
    lines += [
        "",
        "| checkpoint | kind | " + " | ".join(metrics) + " |",
        "|---|---|" + "---:|" * len(metrics),
    ]
    for name, c in r["checkpoints"].items():
        lines.append(f"| {name} | {c['kind']} | " + " | ".join(fmt(c["mean"][m]) for m in metrics) + " |")
    if r.get("alignment"):
        names = list(r["checkpoints"])
        lines += ["", "## Per song: reference alignment and OAc", "",
                  "Notes moved by the offset and octave shift chosen on the audio's harmonic salience "
                  "(`hkdsme.pipeline.ultrastar.resolve_offset_octave`); score = mean salience at the notes "
                  "(the runner-up octave's in brackets); excluded = share of the song's frames left out "
                  "(short note gaps).", "",
                  "| song | offset s | octave | score | excluded % | " + " | ".join(f"OAc {n}" for n in names) + " |",
                  "|---|---:|---:|---:|---:|" + "---:|" * len(names)]
        for tid, a in r["alignment"].items():
            others = [v for k, v in a["octave_scores"].items() if int(k) != a["octave"]]
            runner = f" ({max(others):.2f})" if others else ""
            ex = r.get("excluded", {}).get(tid)
            oac = [fmt(r["checkpoints"][n]["per_track"].get(tid, {}).get("OAc")) for n in names]
            lines.append(f"| {tid} | {a['offset_s']:+.2f} | {a['octave']:+d} | {a['score']:.2f}{runner} | "
                         f"{fmt(None if ex is None else 100 * ex)} | " + " | ".join(oac) + " |")
    if r["failed"]:
        lines += ["", "## Failed tracks", ""] + [f"- `{t}`: {why}" for t, why in r["failed"].items()]
    return "\n".join(lines) + "\n"
