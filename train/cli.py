"""`hkd-train` command line: `teacher` (supervised FTANet pre-training), `run` (HKDSME student), `plot` (curves).

Options resolve as packaged defaults ← ``--config FILE.toml`` ← flags (hkdsme.train.config). With
``--resume`` the run's saved ``config.json`` is the base and only flags given now override it (e.g. a larger
``--epochs``). Before any work the resolved config is validated (one line per bad value, hkdsme.train.config),
the kinds of ``--teacher`` / ``--init`` are checked from their metadata, and a RUN that already holds a run is
refused unless ``--resume`` (continue it) or ``--force`` (delete it, start over) (hkdsme.train.rundir).
Launch under ``torchrun --nproc_per_node N`` for DDP.
"""
from __future__ import annotations

import functools
import os

import click

from hkdsme.pipeline.atomic import writable_dir
from hkdsme.pipeline.errors import InputError, display, os_reason


@functools.cache
def _opt(command: str):
    """``opt(*decls, key=..., help=..., **kw)``: a click option whose ``--help`` ends with ``command``'s packaged
    default of ``key`` (hkdsme/configs/default.toml). The option's own default stays None: a flag given on the
    command line overrides ``--config``, which overrides the packaged default (hkdsme.train.config)."""
    from hkdsme.train import config

    d = config.defaults(command)

    def opt(*decls, key: str, help: str = "", **kw):
        v = d[key]
        shown = (("" if v else "no-") + key.replace("_", "-")) if isinstance(v, bool) else str(v)
        return click.option(*decls, help=f"{help}  [default: {shown}]".lstrip(), **kw)
    return opt


def _common(command: str):
    """The options every training command shares, ``--help`` showing ``command``'s packaged defaults."""
    opt = _opt(command)

    opts = [
        click.option("--out", type=click.Path(file_okay=False), help="run folder"),
        click.option("--val", type=click.Path(), help="validation cache (best.pt by its OA)"),
        click.option("--val-robust", type=click.Path(),
                     help="robustness validation cache; best.pt by the mean OA of --val and this"),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML options file"),
        click.option("--resume", is_flag=True, help="continue RUN/last.pt exactly"),
        click.option("--force", is_flag=True, help="start over in a RUN that holds a run (deletes its outputs)"),
        opt("--epochs", key="epochs", type=int, help="epochs to train"),
        opt("--batch", key="batch", type=int, help="segments (64 frames each) per optimiser step"),
        opt("--lr", key="lr", type=float, help="Adam learning rate"),
        opt("--lr-schedule", key="lr_schedule", type=click.Choice(["constant", "cosine"]),
            help="cosine: lr·(1 + cos(π·epoch/epochs))/2"),
        opt("--seed", key="seed", type=int),
        opt("--device", key="device", type=click.Choice(["cpu", "cuda"])),
        opt("--precision", key="precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
            help="auto = bf16 where the hardware runs it natively, else fp32"),
        opt("--channels-last/--no-channels-last", key="channels_last", default=None),
        opt("--workers", key="workers", type=int, help="DataLoader worker processes"),
        opt("--max-steps-per-epoch", key="max_steps_per_epoch", type=int,
            help="step budget of an epoch: at most N optimiser steps, drawn from a fresh shuffle each epoch "
                 "(0 = one full pass over the data)"),
        opt("--val-batch", key="val_batch", type=int, help="segments per forward pass in validation"),
        opt("--val-every", key="val_every", type=int, help="validate after every N-th epoch and the last"),
        opt("--patience", key="patience", type=int,
            help="stop once N epochs bring no better validation score (0 = off)"),
        opt("--faithful/--no-faithful", key="faithful", default=None, help="official loss/HCR behaviour"),
        opt("--harmonic/--no-harmonic", key="harmonic", default=None, help="4 harmonic classes or melody only"),
        click.option("--init", type=click.Path(dir_okay=False), help="start from this checkpoint's weights"),
    ]

    def apply(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return apply


def _run(command: str, fn, config_file, resume: bool, force: bool, overrides: dict):
    from hkdsme.train import config, rundir

    cfg = {"out": overrides.get("out")}
    try:
        base = None
        if resume and overrides.get("out"):
            base = config.load_saved(overrides["out"])
        cfg = config.resolve(command, config_file, overrides, base=base)     # validated (one line per bad value)
        rundir.check_checkpoints(command, cfg)                               # kinds, from metadata only
        if cfg.get("out"):
            writable_dir(cfg["out"], "run folder (--out)")                   # a read-only place: before any work
        rundir.prepare_out(cfg, resume=resume, force=force, main=os.environ.get("RANK", "0") == "0")
        metrics = fn(cfg, resume=resume)
    except InputError as e:
        raise click.ClickException(display(e)) from None
    except OSError as e:      # a file that cannot be read or written mid-run: the file and the reason, one line
        raise click.ClickException(f"{e.filename or cfg.get('out')}: {os_reason(e)}") from None
    if metrics and os.environ.get("RANK", "0") == "0":
        click.echo(" ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()) if isinstance(v, float)))


@click.group()
@click.version_option(package_name="hkdsme")
def main():
    """Train the teacher and distil the student."""
    from hkdsme.pipeline.signals import terminable

    click.get_current_context().with_resource(terminable())     # SIGTERM / SIGHUP: clean exit 143 / 129, no orphans
    from hkdsme.model import runtime

    runtime.keep_freed_memory()     # this process is ours: reuse freed tensor memory (runtime docstring)


@main.command()
@click.option("--data", multiple=True, type=click.Path(), help="labeled training cache (repeatable)")
@_common("teacher")
def teacher(config_file, resume, force, data, **kw):
    """Supervised 4-class pre-training of the FTANet teacher."""
    from hkdsme.train.teacher import train_teacher

    kw["data"] = list(data) or None
    _run("teacher", train_teacher, config_file, resume, force, kw)


@main.command()
@click.option("--teacher", help="teacher checkpoint, an ensemble 'A.pt*w+B.pt*w', or 'random' (untrained, as the "
              "official code)")
@click.option("--pool-teacher", help="another teacher (checkpoint or ensemble) for the --unlabeled sets only")
@click.option("--labeled", multiple=True, type=click.Path(), help="labeled cache (repeatable)")
@click.option("--unlabeled", multiple=True, type=click.Path(), help="unlabeled cache for HCR (repeatable)")
@_opt("distill")("--hcr/--no-hcr", key="hcr", default=None, help="pseudo-label selection (HCR)")
@_opt("distill")("--kd/--no-kd", key="kd", default=None, help="teacher terms (CGL + KL)")
@_opt("distill")("--cgl/--no-cgl", key="cgl", default=None, help="confidence-guided loss")
@_opt("distill")("--heads/--no-heads", key="heads", default=None, help="student projector heads")
@click.option("--student-teacher", is_flag=True, default=None,
              help="allow a 4-class student checkpoint as --teacher (e.g. the best supervised student)")
@_opt("distill")("--hcr-threshold", key="hcr_threshold", type=float,
                 help="fraction of a segment's frames that must be octave-consistent for HCR to keep it")
@_opt("distill")("--hcr-tolerance", key="hcr_tolerance", type=int,
                 help="bins the octave relations may miss by (0 = paper's exact rule)")
@_opt("distill")("--hcr-batch", key="hcr_batch", type=int, help="segments per student forward pass in HCR")
@_opt("distill")("--teacher-batch", key="teacher_batch", type=int,
                 help="segments per teacher forward pass when filling the teacher cache")
@click.option("--teacher-cache", type=click.Path(dir_okay=False),
              help="teacher-logit cache file shared by runs with the same teacher and data [default: RUN/teacher_cache.h5]")
@_opt("distill")("--unlabeled-max", key="unlabeled_max", type=int,
                 help="fixed seeded sample of N unlabeled segments (0 = all)")
@_common("distill")
def run(config_file, resume, force, labeled, unlabeled, **kw):
    """HKDSME: distil the MSNet student (KD + CGL + HCR)."""
    from hkdsme.train.distill import train_student

    kw["labeled"] = list(labeled) or None
    kw["unlabeled"] = list(unlabeled) or None
    _run("distill", train_student, config_file, resume, force, kw)


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="inference checkpoint to write")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True,
              help="stored weight type (float16: half the bytes, weights rounded to 11 significant bits)")
def export(checkpoint, out, dtype):
    """Small inference copy of CHECKPOINT (no optimiser/RNG state, no student projector heads)."""
    from hkdsme.model.checkpoint import export_checkpoint

    try:
        path = export_checkpoint(checkpoint, out, dtype=dtype)
    except InputError as e:
        raise click.ClickException(display(e)) from None
    click.echo(f"{path}: {path.stat().st_size / 1e6:.2f} MB")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="PNG to write")
@click.option("--label", "labels", multiple=True, help="legend name of each RUN, in order (default: folder names)")
@click.option("--title", default=None, help="figure title")
def plot(runs, out, labels, title):
    """Training curves of RUN folders: validation OA (plain, robustness), loss, HCR pseudo-labels kept."""
    from hkdsme.train.curves import plot_runs

    try:
        path = plot_runs(runs, out, labels=labels or None, title=title)
    except (InputError, ValueError) as e:
        raise click.ClickException(display(e)) from None
    except OSError as e:
        raise click.ClickException(f"{out}: cannot write: {os_reason(e)}") from None
    click.echo(f"wrote {path}")


@main.command("import-msnet")
@click.argument("state_dict", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="hkdsme checkpoint to write")
@click.option("--license", "license_file", type=click.Path(exists=True, dir_okay=False),
              help="the weights' MIT licence text [default: LICENSE beside STATE_DICT]")
def import_msnet(state_dict, out, license_file):
    """The published MSNet vocal weights (MSnet_vocal.pth) as a melody-only student checkpoint."""
    from hkdsme.model.msnet_vocal import write_checkpoint

    try:
        text = open(license_file, encoding="utf-8").read() if license_file else None
        path = write_checkpoint(state_dict, out, license_text=text)
    except InputError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{path}: MSNet vocal, 1 output channel (melody), {path.stat().st_size / 1e6:.2f} MB")


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True, help="demo folder")
@click.option("--jobs", type=int, default=2, show_default=True, help="feature extraction workers")
def demo(out, jobs):
    """The whole job on built-in synthetic songs: shards → teacher → student → report → prediction."""
    from hkdsme.demo import run_demo

    try:
        run_demo(out, jobs=jobs, log=click.echo)
    except InputError as e:
        raise click.ClickException(display(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or out}: {os_reason(e)}") from None


if __name__ == "__main__":
    main()
