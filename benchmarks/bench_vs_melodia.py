"""End-to-end melody extraction throughput on a folder of real songs: ``hkd-eval predict`` vs Melodia, side by side.

Both run as a user would, one process each over the whole folder, in the same run on the same machine, files
decoded from disk: ours is ``hkd-eval predict FOLDER --out TMP`` (model load, decoding, resampling to 8 kHz,
CFP, network, writing the CSVs); Melodia is essentia's ``PredominantPitchMelodia`` after ``EqualLoudness`` at
44.1 kHz, frameSize 2048, hopSize 128, files loaded with ``MonoLoader(sampleRate=44100)`` (its standard recipe),
run by a Python that has essentia (``--melodia-python``, e.g. a scratch venv: ``python -m venv /tmp/mel &&
/tmp/mel/bin/pip install essentia``). × realtime = audio seconds / wall seconds; the order alternates over
``--repeats`` rounds and the best round of each is reported, then every round with its ratio to that round's
Melodia run.

    python benchmarks/bench_vs_melodia.py FOLDER --melodia-python /tmp/mel/bin/python [--repeats 2] [-- predict options]
    python benchmarks/bench_vs_melodia.py FOLDER --melodia-python PY --ours "" --ours "--jobs 1"   # two of ours

Each ``--ours`` is one configuration of ours, timed in the same rounds; ``--baseline HKD_EVAL`` adds another
installation's ``hkd-eval`` (before/after a change); the melody files of all configurations are compared byte
for byte. Melodia (essentia) runs in one process on one core, as its recipe does.
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


def audio_seconds(files) -> float:
    import soundfile as sf

    return sum(sf.info(str(f)).duration for f in files)


def timed(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--melodia-python", required=True, help="a python with essentia installed")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ours", action="append", default=None, metavar="OPTIONS",
                    help="hkd-eval predict options of one configuration to time, e.g. --ours '--jobs 1' "
                         "(repeatable; default: one run with no options)")
    ap.add_argument("--baseline", default=None, metavar="HKD_EVAL",
                    help="another hkd-eval executable (e.g. an older checkout's venv) timed in the same rounds with "
                         "default options; its melody files are compared too")
    ap.add_argument("predict_args", nargs="*", help="extra hkd-eval predict options for every configuration (after --)")
    args = ap.parse_args()
    import shlex

    from hkdsme.evaluate.predict import expand_inputs
    from hkdsme.model import runtime

    files, _ = expand_inputs([args.folder])
    if not files:
        sys.exit(f"no audio files in {args.folder}")
    dur = audio_seconds(files)
    hkd = shutil.which("hkd-eval") or sys.exit("hkd-eval not on PATH (pip install -e .)")
    # (label, executable, options) per configuration of ours
    configs = [(c or "(defaults)", hkd, c) for c in (args.ours or [""])]
    if args.baseline:
        configs.append((f"baseline {args.baseline}", args.baseline, ""))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "melodia.py"
        script.write_text(MELODIA)
        ours, theirs = {c[0]: [] for c in configs}, []
        for r in range(args.repeats):
            jobs = [lambda: theirs.append(timed([args.melodia_python, str(script), *map(str, files)]))]
            for k, (label, exe, c) in enumerate(configs):
                out = Path(tmp) / f"out{k}"
                jobs.append(lambda label=label, exe=exe, c=c, out=out: ours[label].append(timed(
                    [exe, "predict", str(args.folder), "--out", str(out), "--overwrite", *shlex.split(c),
                     *args.predict_args])))
            for j in (jobs if r % 2 else jobs[::-1]):          # alternate the order between rounds
                j()
        same = len({tuple((Path(tmp) / f"out{k}" / f.name).read_bytes() for f in sorted((Path(tmp) / "out0").iterdir()))
                    for k in range(len(configs))}) == 1
    m = min(theirs)
    print(f"# {runtime.describe()}")
    print(f"# {len(files)} files, {dur:.1f} s of audio, best of {args.repeats} alternating rounds\n")
    print("| tool | wall s | × realtime | / Melodia |")
    print("|---|---:|---:|---:|")
    for label, _, _ in configs:
        o = min(ours[label])
        print(f"| hkd-eval predict {label} | {o:.1f} | {dur / o:.1f} | {m / o:.2f}× |")
    print(f"| Melodia (essentia) | {m:.1f} | {dur / m:.1f} | 1.00× |")
    if len(configs) > 1:
        print(f"\nmelody files byte-identical across the hkd-eval configurations: {'yes' if same else 'NO'}")
    # per round: a shared VM's speed drifts between rounds (±7 % within an evening here), so the ratio to the
    # Melodia run of the same round is the steadier number
    print("\n| round | " + " | ".join(label for label, _, _ in configs) + " | Melodia |")
    print("|---:|" + "---:|" * (len(configs) + 1))
    for r in range(args.repeats):
        cells = [f"{ours[label][r]:.1f} s ({theirs[r] / ours[label][r]:.2f}×)" for label, _, _ in configs]
        print(f"| {r + 1} | " + " | ".join(cells) + f" | {theirs[r]:.1f} s |")


if __name__ == "__main__":
    main()
