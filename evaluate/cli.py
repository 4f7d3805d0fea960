"""`hkd-eval` command line: ``report`` (score checkpoints on a dataset) and ``predict`` (melody of audio files)."""
from __future__ import annotations

import click

from hkdsme.pipeline.errors import InputError, display

def _inference_options(f):
    """The options every command that runs a network shares (device, batch, precision, decoder)."""
    opts = [
        click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"])),
        click.option("--batch-size", default=None, type=click.IntRange(min=1),
                     help="Segments per forward pass (default: fastest measured for the device and precision)."),
        click.option("--precision", default="auto", show_default=True,
                     type=click.Choice(["auto", "fp32", "bf16", "fp16", "int8"]),
                     help="auto = bf16 where the hardware runs it natively; else int8 on x86 CPUs with AVX2 for "
                          "a student with an int8 calibration (the embedded ones); else fp32, the exact reference."),
        click.option("--decode", default="voicing", show_default=True, type=click.Choice(["voicing", "argmax"]),
                     help="voicing: voiced iff 1 - p(unvoiced) >= threshold, sub-bin pitch; argmax: the paper's."),
        click.option("--voicing-threshold", default=None, type=click.FloatRange(0, 1, max_open=True),
                     help="θ of the voicing decoder (default: the checkpoint's calibrated value, else 0.5; "
                          "0 = every frame voiced, its best pitch)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.group()
@click.version_option(package_name="hkdsme")
def main():
    """Evaluate checkpoints and predict melodies."""
    from hkdsme.pipeline.signals import terminable

    click.get_current_context().with_resource(terminable())     # SIGTERM / SIGHUP: clean exit 143 / 129, no orphans
    from hkdsme.model import runtime

    runtime.keep_freed_memory()     # this process is ours: reuse freed tensor memory (runtime docstring)


def _fail(e):
    raise click.ClickException(display(e)) from None


@main.command()
@click.option("--checkpoint", "checkpoints", multiple=True, required=True, type=click.Path(path_type=str),
              help="Checkpoint to score; repeat for several side by side.")
@click.option("--dataset", required=True,
              help="Dataset adapter name (mir1k, medleydb, adc2004, ..., ultrastar: real band mixes with karaoke "
                   "notes; its --split validation is splits.json's 'dev', train its 'train').")
@click.option("--root", required=True, type=click.Path(path_type=str), help="Dataset folder as it ships.")
@click.option("--split", default=None, help="train / validation / test (where the dataset defines one).")
@click.option("--out", "out_dir", default="report", show_default=True, type=click.Path(path_type=str),
              help="Folder for report.md, report.json, per_track.csv and the PNGs.")
@click.option("--cache", "cache_dir", default=None, type=click.Path(path_type=str),
              help="Feature cache from `hkd-prep extract` (used when its feature hash matches).")
@_inference_options
@click.option("--tracks", "tracks_file", default=None, type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="Text file of track ids to score, one per line (chosen among all tracks).")
@click.option("--all-tracks", is_flag=True,
              help="Every track of the dataset, not its default list (adc2004/mirex05 default to the "
                   "literature's vocal test lists: 12 / 9 tracks).")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Only the first N tracks.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write one PNG per track.")
@click.option("--cent-tolerance", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Pitch is right within this many cents (default: 100 for ultrastar's note-level references, "
                   "else 50).")
@click.option("--keep-note-gaps", is_flag=True,
              help="ultrastar: score the gaps shorter than 0.3 s between consecutive notes as unvoiced, as written "
                   "(default: leave them out of every metric, as the real-mix dev score does).")
def report(checkpoints, dataset, root, split, out_dir, cache_dir, device, batch_size, precision, decode,
           voicing_threshold, tracks_file, all_tracks, limit, plots, cent_tolerance, keep_note_gaps):
    """Score CHECKPOINTs on whole tracks of a dataset with mir_eval (VR, VFA, RPA, RCA, OA).

    ultrastar is also scored with OAc (chroma overall accuracy), leaving out the gaps shorter than 0.3 s between
    consecutive notes; its mean OAc over --split validation at 100 cents is the real-mix dev score
    (docs/real_mix_dev.md).
    """
    from hkdsme.evaluate.report import run_report

    try:
        r = run_report(list(checkpoints), dataset, root, split=split, out_dir=out_dir, cache_dir=cache_dir,
                       device=device, batch_size=batch_size, precision=precision, decode=decode,
                       voicing_threshold=voicing_threshold, plots=plots, limit=limit,
                       tracks_file=tracks_file, all_tracks=all_tracks, cent_tolerance=cent_tolerance,
                       keep_note_gaps=keep_note_gaps, log=click.echo)
    except (InputError, ValueError) as e:
        _fail(e)
    except OSError as e:   # e.g. the --out folder became unwritable during the run
        _fail(f"{e.filename or out_dir}: cannot write: {e.strerror or e}")
    from pathlib import Path

    click.echo((Path(out_dir) / "report.md").read_text(encoding="utf-8"), nl=False)
    if r["n_scored"] == 0:
        raise click.ClickException("no track could be scored")


@main.command()
@click.argument("audio", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--checkpoint", default=None, type=click.Path(path_type=str),
              help="Student or teacher checkpoint (default: the embedded default model).")
@click.option("--model", default=None, metavar="NAME",
              help="An embedded model by name: hkdsme, hkdsme-mir1k, supervised (fast students), ftanet (the "
                   "teacher: more accurate on MIR-1K, ~4.4x slower) or msnet-vocal (the published MSNet vocal "
                   "network); docs/model_card.md; not with --checkpoint.")
@click.option("--out", "out_dir", default=None, type=click.Path(path_type=str),
              help="Output folder (default: next to each audio file).")
@click.option("--format", "fmt", default="csv", show_default=True, type=click.Choice(["csv", "mirex", "jams"]))
@click.option("--confidence", is_flag=True,
              help="Add the per-frame voicing probability 1 - p(unvoiced) (0..1; voiced iff >= the threshold): "
                   "a confidence column in csv, the confidence field in jams (mirex has none).")
@click.option("--plot", is_flag=True,
              help="Also write <name>.f0.png (contour over the CFP spectrum, confidence lane below).")
@click.option("--overwrite", is_flag=True,
              help="Replace existing output files (default: an existing output is refused and that input fails).")
@click.option("--jobs", default=None, type=click.IntRange(min=1),
              help="Worker processes for many files (default: one per core on a CPU, at most 4; same output).")
@_inference_options
def predict(audio, checkpoint, model, out_dir, fmt, confidence, plot, overwrite, jobs, device, batch_size, precision,
            decode, voicing_threshold):
    """Melody f0 every 10 ms of each AUDIO file or folder (0 Hz = unvoiced).

    Bad files, and outputs that exist (without --overwrite) or cannot be written, are reported and skipped;
    the exit status is 1 if any failed.
    """
    from hkdsme.evaluate.models import NoDefaultModel
    from hkdsme.evaluate.predict import predict_files

    try:
        written, failed = predict_files(list(audio), checkpoint, out_dir=out_dir, fmt=fmt, confidence=confidence,
                                        plot=plot,
                                        device=device, batch_size=batch_size, precision=precision, decode=decode,
                                        voicing_threshold=voicing_threshold, overwrite=overwrite, model=model,
                                        jobs=jobs)
    except (InputError, NoDefaultModel, ValueError) as e:
        _fail(e)
    except OSError as e:
        _fail(f"{e.filename or out_dir}: cannot write: {e.strerror or e}")
    import os

    for src, dst in written.items():       # as bytes: a file name that is not UTF-8 is printed as the OS has it
        click.echo(os.fsencode(f"{src} -> {dst}"))
    for src, why in failed.items():
        click.echo(os.fsencode(f"FAILED {src}: {why}"), err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(written) + len(failed)} input(s) failed")


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.option("--cache", "caches", multiple=True, required=True, type=click.Path(exists=True, path_type=str),
              help="Labeled validation cache (repeat: plain + robustness); never the test singers.")
@click.option("--write", is_flag=True, help="Store the calibrated θ in the checkpoint.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]))
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16", "fp16"]))
def calibrate(checkpoint, caches, write, device, precision):
    """Pick the voicing threshold θ of CHECKPOINT for maximum mean OA on validation caches."""
    from hkdsme.evaluate.calibrate import calibrate_checkpoint

    try:
        if write:     # θ is stored by rewriting the checkpoint: a read-only place fails now, not after scoring
            from pathlib import Path

            from hkdsme.pipeline.atomic import writable_dir

            writable_dir(Path(checkpoint).parent, "checkpoint's folder (--write)")
        r = calibrate_checkpoint(checkpoint, list(caches), write=write, device=device, precision=precision)
    except (InputError, ValueError) as e:
        _fail(e)
    except OSError as e:
        _fail(f"{e.filename or checkpoint}: {e.strerror or e}")
    click.echo(f"θ = {r['theta']:g} ({r['precision']})" + (f", written to {checkpoint}" if write else ""))
    click.echo("| cache | decoder | VR | VFA | RPA | RCA | OA |")
    click.echo("|---|---|---:|---:|---:|---:|---:|")
    for name, rows in r["caches"].items():
        for dec, sc in rows.items():
            click.echo(f"| {name} | {dec} | " + " | ".join(f"{sc[k]:.2f}" for k in ("VR", "VFA", "RPA", "RCA", "OA"))
                       + " |")



@main.command("calibrate-int8")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("audio", nargs=-1, required=True, type=click.Path(exists=True, path_type=str))
@click.option("--segments-per-file", default=48, show_default=True, type=click.IntRange(min=1),
              help="64-frame segments taken from each file, evenly spread.")
@click.option("--write", is_flag=True, help="Store the calibration in the checkpoint (then --precision int8, and "
                                            "auto on AVX2 CPUs without bf16, use it).")
def calibrate_int8(checkpoint, audio, segments_per_file, write):
    """Measure the int8 input ranges of the student CHECKPOINT on AUDIO files or folders (real music)."""
    from pathlib import Path

    from hkdsme.evaluate.calibrate import calibrate_int8 as run
    from hkdsme.evaluate.predict import expand_inputs

    files, failed = expand_inputs([Path(a) for a in audio])
    if failed or not files:      # a folder without audio is a mistake here, not a file to skip
        _fail("; ".join(f"{p}: {why}" for p, why in failed.items()) or f"no audio files in {', '.join(audio)}")
    try:
        if write:
            from hkdsme.pipeline.atomic import writable_dir

            writable_dir(Path(checkpoint).parent, "checkpoint's folder (--write)")
        cal = run(checkpoint, files, write=write, segments_per_file=segments_per_file)
    except (InputError, ValueError, RuntimeError) as e:
        _fail(e)
    except OSError as e:
        _fail(f"{e.filename or checkpoint}: {e.strerror or e}")
    click.echo(f"int8 calibration on {len(files)} file(s), {cal['segments']} segments"
               + (f", written to {checkpoint}" if write else ""))
    for name, q in cal["layers"].items():
        click.echo(f"  {name}: scale {q['scale']:.5g}, zero point {q['zero_point']}")


if __name__ == "__main__":
    main()
