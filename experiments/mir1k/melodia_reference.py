"""Is the robustness set's drop the task's or the model's? Melodia (no training) scored on the same clips.

    python experiments/mir1k/melodia_reference.py --melodia-python /tmp/mel/bin/python --out runs/compare/melodia.md

Renders the validation singers' clips, plain and as the two ``robust`` variants each (the robustness validation
set, recomputed from its seeds exactly as ``hkd-prep extract --augment robust --variants 2`` rendered it), writes
them as 8 kHz WAV, runs essentia's Melodia on them (``PredominantPitchMelodia`` after ``EqualLoudness`` at
44.1 kHz, frameSize 2048, hopSize 128: the recipe of ``benchmarks/bench_vs_melodia.py``) and the embedded
models through ``hkdsme.extract_melody`` (each with its calibrated θ), and scores all of them with
``hkdsme.evaluate.metrics.melody_scores`` against the clips' own labels (shifted with the voice where the variant
shifts it). Mean per clip, every clip weighs the same. A signal-processing baseline that loses as much on the
robustness set as the networks do says the drop is the transforms' (buried, shifted, distorted voices), not
overfitting to the training singers. Analysis only: nothing here feeds back into training or selection.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from hkdsme.evaluate.metrics import METRICS, mean_scores, melody_scores
from hkdsme.pipeline import grid
from hkdsme.pipeline.augment import augment_tracks, load_spec
from hkdsme.pipeline.datasets import list_tracks

# one process, all files: writes each file's pitch track next to it as .melodia.npy (hop 128 at 44.1 kHz)
MELODIA = r'''
import sys, numpy as np, essentia.standard as es
eq = es.EqualLoudness()
mel = es.PredominantPitchMelodia(frameSize=2048, hopSize=128)
for f in sys.argv[1:]:
    pitch, conf = mel(eq(es.MonoLoader(filename=f, sampleRate=44100)()))
    np.save(f + ".melodia.npy", np.asarray(pitch, dtype=np.float64))
'''
MELODIA_HOP_S = 128 / 44100


def render(root: str, variants: int):
    """``[(set name, track id, audio at 8 kHz, (times, f0))]`` for the plain clips and their robust variants."""
    plain = list_tracks("mir1k", root, "validation")
    out = [("plain", t.track_id, t.load_audio(), t.load_f0()) for t in plain]
    for t in augment_tracks(plain, load_spec("robust"), variants):
        out.append(("robust", t.track_id, t.load_audio(), t.load_f0()))
    return out


def run_melodia(python: str, clips, tmp: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    paths = []
    for _, tid, audio, _ in clips:
        p = tmp / f"{tid}.wav"
        sf.write(p, audio, grid.SR, subtype="FLOAT")
        paths.append(p)
    script = tmp / "melodia.py"
    script.write_text(MELODIA)
    subprocess.run([python, str(script), *map(str, paths)], check=True, capture_output=True)
    est = {}
    for (_, tid, _, _), p in zip(clips, paths):
        f0 = np.load(str(p) + ".melodia.npy")
        est[tid] = (np.arange(f0.size) * MELODIA_HOP_S, np.maximum(f0, 0.0))   # Melodia marks unvoiced <= 0
    return est


def run_model(name: str, clips) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import hkdsme

    return {tid: hkdsme.extract_melody(audio, sr=grid.SR, model=name) for _, tid, audio, _ in clips}


def table(clips, estimates: dict[str, dict]) -> tuple[str, dict]:
    res = {}
    for system, est in estimates.items():
        for which in ("plain", "robust"):
            scores = [melody_scores(*ann, *est[tid], path=tid) for s, tid, _, ann in clips if s == which]
            res[(system, which)] = mean_scores(scores)
    lines = ["| system | set | " + " | ".join(METRICS) + " |", "|---|---|" + "---:|" * len(METRICS)]
    for (system, which), m in res.items():
        lines.append(f"| {system} | {which} | " + " | ".join(f"{m[k]:.2f}" for k in METRICS) + " |")
    lines += ["", "| system | plain OA | robust OA | drop |", "|---|---:|---:|---:|"]
    for system in estimates:
        p, r = res[(system, "plain")]["OA"], res[(system, "robust")]["OA"]
        lines.append(f"| {system} | {p:.2f} | {r:.2f} | {p - r:.2f} |")
    return "\n".join(lines) + "\n", {f"{s}/{w}": m for (s, w), m in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="../shared/data/MIR-1K")
    ap.add_argument("--melodia-python", required=True, help="a python with essentia installed")
    ap.add_argument("--models", nargs="*", default=["supervised", "hkdsme"], help="embedded models to score too")
    ap.add_argument("--variants", type=int, default=2, help="robust variants per clip (the cache has 2)")
    ap.add_argument("--out", type=Path, required=True, help="markdown table; a .json beside it")
    args = ap.parse_args()
    clips = render(args.root, args.variants)
    print(f"{sum(s == 'plain' for s, *_ in clips)} plain clips, {sum(s == 'robust' for s, *_ in clips)} variants")
    with tempfile.TemporaryDirectory() as tmp:
        estimates = {"Melodia (essentia)": run_melodia(args.melodia_python, clips, Path(tmp))}
    for name in args.models:
        estimates[f"hkdsme '{name}'"] = run_model(name, clips)
    md, res = table(clips, estimates)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(md)


if __name__ == "__main__":
    main()
