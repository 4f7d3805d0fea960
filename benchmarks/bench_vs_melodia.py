"""End-to-end melody extraction throughput on a folder of real songs: ``hkd-eval predict`` vs Melodia, side by side.

Both run as a user would, one process each over the whole folder, in the same run on the same machine, files
decoded from disk: ours is ``hkd-eval predict FOLDER --out TMP`` (model load, decoding, resampling to 8 kHz,
CFP, network, writing the CSVs); Melodia is essentia's ``PredominantPitchMelodia`` after ``EqualLoudness`` at
44.1 kHz, frameSize 2048, hopSize 128, files loaded with ``MonoLoader(sampleRate=44100)`` (its standard recipe),
run by a Python that has essentia (``--melodia-python``, e.g. a scratch venv: ``python -m venv /tmp/mel &&
/tmp/mel/bin/pip install essentia``). × realtime = audio seconds / wall seconds; the order alternates over
``--repeats`` rounds and the best round of each is reported.

    python benchmarks/bench_vs_melodia.py FOLDER --melodia-python /tmp/mel/bin/python [--repeats 2] [-- predict options]
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
    ap.add_argument("predict_args", nargs="*", help="extra hkd-eval predict options (after --)")
    args = ap.parse_args()
    from hkdsme.evaluate.predict import expand_inputs
    from hkdsme.model import runtime

    files, _ = expand_inputs([args.folder])
    if not files:
        sys.exit(f"no audio files in {args.folder}")
    dur = audio_seconds(files)
    hkd = shutil.which("hkd-eval") or sys.exit("hkd-eval not on PATH (pip install -e .)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "melodia.py"
        script.write_text(MELODIA)
        ours, theirs = [], []
        for r in range(args.repeats):
            out = Path(tmp) / f"out{r}"
            run_ours = lambda: ours.append(timed([hkd, "predict", str(args.folder), "--out", str(out),  # noqa: E731
                                                  *args.predict_args]))
            run_mel = lambda: theirs.append(timed([args.melodia_python, str(script), *map(str, files)]))  # noqa: E731
            (run_ours, run_mel)[r % 2]()
            (run_mel, run_ours)[r % 2]()
    o, m = min(ours), min(theirs)
    print(f"# {runtime.describe()}")
    print(f"# {len(files)} files, {dur:.1f} s of audio, best of {args.repeats} alternating rounds\n")
    print("| tool | wall s | × realtime |")
    print("|---|---:|---:|")
    print(f"| hkd-eval predict | {o:.1f} | {dur / o:.1f} |")
    print(f"| Melodia (essentia) | {m:.1f} | {dur / m:.1f} |")
    print(f"\nhkd-eval / Melodia throughput: {m / o:.2f}x")


if __name__ == "__main__":
    main()
