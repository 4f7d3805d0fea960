"""`hkd-prep` command line: CFP of one file, batch extraction into a shard cache, cache summary."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

from hkdsme.pipeline.atomic import atomic_path, writable_dir
from hkdsme.pipeline.errors import InputError, display, os_reason, output_error
from hkdsme.pipeline.f0_tracker import DEFAULT_TRACKER, TRACKERS



def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


@click.group()
@click.version_option(package_name="hkdsme")
def main():
    """Prepare features: datasets → CFP + labels → HDF5 shards."""
    from hkdsme.pipeline.signals import terminable

    click.get_current_context().with_resource(terminable())     # SIGTERM / SIGHUP: clean exit 143 / 129, no orphans


@main.command()
@click.argument("audio", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output .npy file: float32 (3, 320, T).")
def cfp(audio, out):
    """CFP features of one AUDIO file (8 kHz mono after loading) saved as a .npy array."""
    from hkdsme.pipeline.audio import load_audio
    from hkdsme.pipeline.cfp import cfp as cfp_fn

    try:
        x = load_audio(audio)
        try:
            feats = cfp_fn(x)
        except InputError as e:
            raise InputError(audio, e.reason) from None
    except InputError as e:
        raise click.ClickException(display(e)) from None
    try:
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:   # a file object: np.save adds no ".npy" to it
            np.save(fh, np.asarray(feats, dtype=np.float32))
    except OSError as e:
        raise click.ClickException(str(output_error(out, e))) from None
    click.echo(f"{out}: {feats.shape[0]}x{feats.shape[1]}x{feats.shape[2]} ({feats.shape[2] / 100:.2f} s)")


@main.command()
@click.option("--dataset", required=True,
              help="mir1k, medleydb, adc2004, mirex05, ikala, unlabeled, synthetic, ultrastar, provoices")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Dataset folder.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache folder [default: data_cache/<dataset>[-<split>]].")
@click.option("--split", default=None, help="Dataset split (e.g. train / validation / test).")
@click.option("--tracks", "tracks_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Text file of track ids to extract, one per line (chosen among all tracks).")
@click.option("--all-tracks", is_flag=True,
              help="Every track of the dataset, not its default list (adc2004/mirex05 default to the "
                   "literature's vocal test lists: 12 / 9 tracks).")
@click.option("--jobs", default=-1, show_default=True, help="Parallel workers (-1 = all cores).")
@click.option("--backend", type=click.Choice(["loky", "threading", "dask"]), default="loky", show_default=True)
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="--backend dask: address of a running dask scheduler (default: $DASK_SCHEDULER_ADDRESS, else a "
                   "local cluster of --jobs worker processes). Workers must read the dataset at the same paths; "
                   "shards are written by this process.")
@click.option("--limit", type=int, default=None, help="Only the first N tracks.")
@click.option("--force", is_flag=True, help="Recompute everything (also rebuilds a cache with another feature hash).")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any track failed.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--voice-db", type=float, default=None,
              help="mir1k/ikala: remix voice vs accompaniment at this ratio in dB (track ids get _v<dB>dB).")
@click.option("--augment", "augment_spec", default=None, metavar="SPEC",
              help="mir1k/ikala/provoices: render augmented variants (pitch shift, mixes, effects) with this spec: "
                   "a preset (train, robust) or a TOML file; track ids get __aug<k>.")
@click.option("--variants", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --augment: variants per clip.")
@click.option("--labels", "labels_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="provoices: folder of <id>.f0.csv labels written by `hkd-prep label-f0`; ultrastar: weak labels "
                   "written by `hkd-prep weak-labels` (used instead of the notes).")
@click.option("--accomp", "accomp", multiple=True, metavar="SPEC",
              help="provoices --augment: accompaniment pool, repeatable; each value is one group drawn with equal "
                   "probability: an audio file, a folder, a quoted glob ('songs/*/instrumental.ogg'), or "
                   "mir1k:ROOT (channel 0 of MIR-1K's train clips).")
def extract(dataset, root, out, split, tracks_file, all_tracks, jobs, backend, scheduler, limit, force, strict,
            no_progress, voice_db, augment_spec, variants, labels_dir, accomp):
    """Extract CFP features + labels of a dataset into resumable HDF5 shards."""
    from hkdsme.pipeline import datasets
    from hkdsme.pipeline.extract import extract as run_extract

    if out is None:
        out = Path("data_cache") / (dataset + (f"-{split}" if split else "")
                                    + (f"-aug-{Path(augment_spec).stem}" if augment_spec else ""))
    augment = None
    try:   # absolute paths: worker processes need not share our cwd
        options = {} if voice_db is None else {"voice_db": voice_db}
        if dataset == "ultrastar" and labels_dir is not None and not accomp:
            options["labels"] = labels_dir.absolute()
        elif labels_dir is not None or accomp:
            if dataset != "provoices":
                raise click.ClickException("--labels / --accomp are options of --dataset provoices "
                                           "(--labels also of ultrastar)")
            options.update(labels=labels_dir.absolute() if labels_dir else None, accomp=list(accomp))
        elif dataset == "provoices":
            options["labels"] = None          # list_tracks explains that provoices needs --labels
        tracks = datasets.list_tracks(dataset, root.absolute(), split=split, tracks_file=tracks_file, limit=limit,
                                      all_tracks=all_tracks, **options)
        if augment_spec is not None:
            from hkdsme.pipeline import augment as aug

            spec = aug.load_spec(augment_spec)
            tracks = aug.augment_tracks(tracks, spec, variants)
            augment = spec.to_dict()
    except (InputError, ValueError, KeyError) as e:
        raise click.ClickException(display(e)) from None
    if not tracks:
        raise click.ClickException(f"no tracks found for dataset {dataset!r} in {root}")
    if scheduler and backend != "dask":
        raise click.ClickException("--scheduler is for --backend dask")
    t0 = time.perf_counter()
    try:
        writable_dir(out, "cache folder (--out)")          # a read-only place: one line, before any work
        s = run_extract(tracks, out, jobs=jobs, backend=backend, force=force, strict=strict,
                        progress=not no_progress, dataset=dataset, echo=click.echo, augment=augment,
                        scheduler=scheduler)
    except (InputError, RuntimeError) as e:
        raise click.ClickException(display(e)) from None
    except OSError as e:      # e.g. the cache folder became unwritable or full during the run
        raise click.ClickException(f"{e.filename or out}: {os_reason(e)}") from None
    wall = time.perf_counter() - t0
    click.echo(f"{out}: {s['done']} done, {s['skipped']} skipped (already there), {s['failed']} failed "
               f"in {wall:.1f} s; cache holds {s['tracks']} tracks, "
               f"{_hms(s['hours'] * 3600)} of audio, {s['segments']} segments")
    if s.get("all_failed"):
        click.echo(f"Error: every track failed ({s['failed']} of {s['failed']}); nothing was extracted", err=True)
    if s["done"]:
        click.echo(f"extraction speed: {s['audio_s']:.1f} s of audio in {wall:.1f} s wall = "
                   f"{s['audio_s'] / max(wall, 1e-9):.1f}x realtime")
    if not s["ok"]:
        sys.exit(1)


@main.command("label-f0")
@click.argument("audio_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the label files <id>.f0.csv (id: relative path, folders joined by '__').")
@click.option("--tracker", type=click.Choice(TRACKERS), default=DEFAULT_TRACKER, show_default=True,
              help="Monophonic f0 tracker (weights ship in its package).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Voicing threshold on the tracker's confidence [default: the tracker's calibrated one].")
def label_f0(audio_dir, out, tracker, threshold):
    """f0 labels of isolated voices: one <id>.f0.csv (time_s, f0_hz, confidence; 10 ms; f0 0 = unvoiced) per
    audio file under AUDIO_DIR, one file at a time. Existing label files are kept (rerun to resume); unusable
    audio is skipped with one line."""
    from hkdsme.pipeline import f0_tracker

    t0 = time.perf_counter()
    try:
        s = f0_tracker.label_folder(audio_dir, out, tracker, threshold, echo=click.echo)
    except (InputError, ValueError, RuntimeError) as e:   # RuntimeError: an optional tracker not installed
        raise click.ClickException(str(e)) from None
    wall = time.perf_counter() - t0
    th = f0_tracker.THRESHOLDS[tracker] if threshold is None else threshold
    voiced = f", {s['voiced_frames'] / s['frames']:.1%} of frames voiced" if s["frames"] else ""
    click.echo(f"{out}: {s['done']} labeled, {s['skipped']} already there, {s['failed']} failed in {wall:.1f} s "
               f"({tracker}, threshold {th:g}; {s['audio_s']:.1f} s of audio{voiced})")
    if s["done"] == 0 and s["failed"]:
        sys.exit(1)


@main.command("weak-labels")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The ultrastar-cc folder (songs/<name>/{audio.ogg,song.txt}, splits.json).")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train"]),
              help="Songs to label (the dev songs are for selection only).")
@click.option("--teacher", required=True,
              help="Checkpoint or fused ensemble 'A.pt*w+B.pt*w' whose posterior refines the notes.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the label files <song>.f0.csv.")
@click.option("--window-cents", type=click.FloatRange(min=0.0, min_open=True), default=100.0, show_default=True,
              help="How far the teacher may move a label from the written note.")
@click.option("--limit", type=int, default=None, help="Only the first N songs.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def weak_labels(root, split, teacher, out, window_cents, limit, no_progress):
    """Weak f0 labels for UltraStar songs: inside each note the teacher's best pitch within --window-cents of it,
    short gaps between notes voiced where the teacher hears the neighbouring note, silence elsewhere. Writes
    <out>/<song>.f0.csv for `hkd-prep extract --dataset ultrastar --labels OUT`."""
    from hkdsme.pipeline import datasets
    from hkdsme.pipeline.weak_labels import write_weak_labels

    t0 = time.perf_counter()
    try:
        tracks = datasets.list_tracks("ultrastar", root.absolute(), split=split, limit=limit)
        writable_dir(out, "label folder (--out)")
        s = write_weak_labels(tracks, teacher, out, window_cents=window_cents, echo=click.echo,
                              progress=not no_progress)
    except (InputError, ValueError) as e:
        raise click.ClickException(display(e)) from None
    for r in s["rows"]:
        click.echo(f"  {r['song']}: offset {r['offset_s']:+.2f} s, octave {r['octave']:+d}, teacher inside the window "
                   f"on {r['agree']:.1%} of note frames, labels {r['moved']:.0f} cents from the notes on average, "
                   f"{r['gap_voiced']:.0%} of short gaps voiced, {r['voiced']:.1%} of frames voiced")
    click.echo(f"{out}: {len(s['done'])} songs labeled, {len(s['failed'])} failed in {time.perf_counter() - t0:.1f} s")
    if s["failed"] and not s["done"]:
        sys.exit(1)


@main.command()
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--verify", is_flag=True,
              help="Read every shard: check its checksum, structure and that features are finite (~1-2 s/GiB); "
                   "exit 1 if any is bad.")
def info(cache_dir, verify):
    """Summary of a feature cache written by `hkd-prep extract`."""
    from hkdsme.pipeline.shards import open_cache, read_track, verify_shard

    try:
        c = open_cache(cache_dir)
    except InputError as e:
        raise click.ClickException(display(e)) from None
    entries = list(c.tracks.values())
    labeled = [e for e in entries if e.get("labeled")]
    frames = sum(e["n_frames"] for e in labeled)
    voiced = sum(e.get("n_voiced", 0) for e in labeled)
    size = sum(p.stat().st_size for p in Path(cache_dir).rglob("*") if p.is_file())
    rows = [
        ("dataset", c.dataset),
        ("feature hash", c.feature_hash),
        ("tracks", f"{len(entries)} ({len(labeled)} labeled, {len(entries) - len(labeled)} unlabeled)"),
        ("failed", str(len(c.failed))),
        ("duration", _hms(sum(e["duration_s"] for e in entries))),
        ("segments", str(sum(e["n_segments"] for e in entries))),
        ("voiced", f"{voiced / frames:.1%} of labeled frames" if frames else "n/a"),
        ("size on disk", _size(size)),
    ]
    for k, v in rows:
        click.echo(f"{k:<13} {v}")
    for tid, reason in sorted(c.failed.items()):
        click.echo(f"  failed {tid}: {reason}")
    if verify:
        bad, unchecked = [], 0
        for tid in sorted(c.tracks):
            path = c.shard_path(tid)
            try:
                if not verify_shard(path, c.checksum(tid), again=True):
                    unchecked += 1
                read_track(path, checksum=None)        # structure, mask and finite features
            except InputError as e:
                bad.append(str(e))
        note = f"; {unchecked} without checksum (structure only)" if unchecked else ""
        click.echo(f"{'verified':<13} {len(entries) - len(bad)} of {len(entries)} shards ok, {len(bad)} bad{note}")
        for msg in bad:
            click.echo(f"  bad {msg}")
        if bad:
            sys.exit(1)


if __name__ == "__main__":
    main()
