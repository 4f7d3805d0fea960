"""End-to-end melody extraction throughput on folders of real audio: ``hkd-eval predict`` vs Melodia, side by side.

Both run as a user would, one process each over a whole folder, in the same run on the same machine, files
decoded from disk: ours is ``hkd-eval predict FOLDER --out TMP`` (model load, decoding, resampling to 8 kHz,
CFP, network, writing the CSVs); Melodia is essentia's ``PredominantPitchMelodia`` after ``EqualLoudness`` at
44.1 kHz, frameSize 2048, hopSize 128, files loaded with ``MonoLoader(sampleRate=44100)`` (its standard recipe),
run by a Python that has essentia (``--melodia-python``, e.g. a scratch venv: ``python -m venv /tmp/mel &&
/tmp/mel/bin/pip install essentia``). × realtime = audio seconds / wall seconds; the order alternates over
``--repeats`` rounds and the best round of each is reported, then every round with its ratio to that round's
Melodia run. Each folder gets its own table: give both mixes users have, many short tracks and whole songs
(``--make-short DIR`` writes a short-track mix first: 16 excerpts of 12–40 s cut from the given folders' songs).

    python benchmarks/bench_vs_melodia.py SHORT_DIR SONGS_DIR --melodia-python /tmp/mel/bin/python [--repeats 2]
    python benchmarks/bench_vs_melodia.py SONGS_DIR --make-short /tmp/short --melodia-python PY   # build + time both
    python benchmarks/bench_vs_melodia.py DIR --melodia-python PY --ours "" --ours "--precision fp32"  # two of ours

Each ``--ours`` is one configuration of ours (``hkd-eval predict`` options), timed in the same rounds;
``--predict-args`` are added to every configuration; ``--baseline HKD_EVAL`` adds another installation's
``hkd-eval`` (before/after a change). Melody files of configurations with the same precision are compared byte
for byte. Melodia (essentia) runs in one process on one core, as its recipe does. The header names the CPU, its
vector level, bf16 support and the precision ``auto`` picks for the default model.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MELODIA = r'''
import sys, essentia.standard as es
files = sys.argv[1:]
eq = es.EqualLoudness()
mel = es.PredominantPitchMelodia(frameSize=2048, hopSize=128)
for f in files:
    x = es.MonoLoader(filename=f, sampleRate=44100)()
    pitch, conf = mel(eq(x))
'''


def timed(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def make_short(songs, out: Path, n: int = 16, lo: float = 12.0, hi: float = 40.0) -> list[Path]:
    """``n`` excerpts of ``lo``..``hi`` s (evenly spaced lengths), cut round-robin from ``songs`` at 20 % into
    each song (past intros), written as 16-bit WAV at the song's own rate; deterministic, so reruns time the
    same audio. Songs shorter than the excerpt are skipped."""
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    lengths = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    written, k = [], 0
    for i, length in enumerate(lengths):
        for _ in range(len(songs)):
            src = songs[k % len(songs)]
            k += 1
            info = sf.info(str(src))
            if info.duration >= length / 0.8:
                start = int(0.2 * info.duration * info.samplerate)
                x, sr = sf.read(str(src), start=start, frames=int(length * info.samplerate), always_2d=True)
                dst = out / f"short_{i:02d}_{src.stem[:40]}.wav"
                sf.write(str(dst), x, sr, subtype="PCM_16")
                written.append(dst)
                break
    return written


def bench_folder(folder: Path, args, configs) -> None:
    import shlex

    from hkdsme.evaluate.predict import expand_inputs

    files, _ = expand_inputs([folder])
    if not files:
        sys.exit(f"no audio files in {folder}")
    import soundfile as sf

    lengths = [sf.info(str(f)).duration for f in files]
    dur = sum(lengths)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "melodia.py"
        script.write_text(MELODIA)
        ours, theirs = {c[0]: [] for c in configs}, []
        for r in range(args.repeats):
            jobs = [lambda: theirs.append(timed([args.melodia_python, str(script), *map(str, files)]))]
            for k, (label, exe, c) in enumerate(configs):
                out = Path(tmp) / f"out{k}"
                jobs.append(lambda label=label, exe=exe, c=c, out=out: ours[label].append(timed(
                    [exe, "predict", str(folder), "--out", str(out), "--overwrite", *shlex.split(c),
                     *shlex.split(args.predict_args)])))
            for j in (jobs if r % 2 else jobs[::-1]):          # alternate the order between rounds
                j()
        by_prec = {}
        for k, (label, _, c) in enumerate(configs):
            opts = shlex.split(c)
            prec = opts[opts.index("--precision") + 1] if "--precision" in opts else "auto"
            by_prec.setdefault(prec, []).append(k)
        same = {p: len({tuple((Path(tmp) / f"out{k}" / f.name).read_bytes()
                              for f in sorted((Path(tmp) / f"out{ks[0]}").iterdir())) for k in ks}) == 1
                for p, ks in by_prec.items() if len(ks) > 1}
    m = min(theirs)
    print(f"## {folder}: {len(files)} files of {min(lengths):.1f}–{max(lengths):.1f} s, "
          f"{dur:.1f} s of audio, best of {args.repeats} alternating rounds\n")
    print("| tool | wall s | × realtime | / Melodia |")
    print("|---|---:|---:|---:|")
    for label, _, _ in configs:
        o = min(ours[label])
        print(f"| hkd-eval predict {label} | {o:.1f} | {dur / o:.1f} | {m / o:.2f}× |")
    print(f"| Melodia (essentia) | {m:.1f} | {dur / m:.1f} | 1.00× |")
    for p, ok in same.items():
        print(f"\nmelody files byte-identical across the {p} configurations: {'yes' if ok else 'NO'}")
    # per round: a shared VM's speed drifts between rounds (±7 % within an evening here), so the ratio to the
    # Melodia run of the same round is the steadier number
    print("\n| round | " + " | ".join(label for label, _, _ in configs) + " | Melodia |")
    print("|---:|" + "---:|" * (len(configs) + 1))
    for r in range(args.repeats):
        cells = [f"{ours[label][r]:.1f} s ({theirs[r] / ours[label][r]:.2f}×)" for label, _, _ in configs]
        print(f"| {r + 1} | " + " | ".join(cells) + f" | {theirs[r]:.1f} s |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+", help="folders of audio, one table each")
    ap.add_argument("--melodia-python", required=True, help="a python with essentia installed")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ours", action="append", default=None, metavar="OPTIONS",
                    help="hkd-eval predict options of one configuration to time, e.g. --ours '--jobs 1' "
                         "(repeatable; default: one run with no options)")
    ap.add_argument("--baseline", default=None, metavar="HKD_EVAL",
                    help="another hkd-eval executable (e.g. an older checkout's venv) timed in the same rounds with "
                         "default options")
    ap.add_argument("--predict-args", default="", help="extra hkd-eval predict options for every configuration")
    ap.add_argument("--make-short", type=Path, default=None, metavar="DIR",
                    help="first write 16 excerpts of 12-40 s from the folders' songs into DIR and time DIR too")
    args = ap.parse_args()

    from hkdsme.evaluate.models import model_checkpoint
    from hkdsme.evaluate.predict import expand_inputs
    from hkdsme.model import runtime
    from hkdsme.model.checkpoint import read_meta

    hkd = shutil.which("hkd-eval") or sys.exit("hkd-eval not on PATH (pip install -e .)")
    configs = [(c or "(defaults)", hkd, c) for c in (args.ours or [""])]
    if args.baseline:
        configs.append((f"baseline {args.baseline}", args.baseline, ""))
    folders = list(args.folders)
    if args.make_short:
        songs = [f for d in folders for f in expand_inputs([d])[0]]
        written = make_short(songs, args.make_short)
        print(f"# wrote {len(written)} excerpts to {args.make_short}")
        folders.insert(0, args.make_short)
    meta = read_meta(model_checkpoint())
    auto = runtime.resolve_precision("auto", "cpu", int8_model=bool((meta.get("extra") or {}).get("int8")))
    print(f"# {runtime.describe()}")
    print(f"# default model, precision auto → {auto.name} ({auto.reason})\n")
    for folder in folders:
        bench_folder(folder, args, configs)

if __name__ == "__main__":
    main()
