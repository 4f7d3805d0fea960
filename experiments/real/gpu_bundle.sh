#!/usr/bin/env bash
# The audio a GPU machine needs for experiments/real/gpu_arms.sh, small enough to travel with the work tree
# (the device tool carries at most 64 MiB): .devdata/ (git-ignored through .git/info/exclude) and .whl/ (the
# Python packages the GPU image lacks, Python 3.12 wheels).
#   - MIR-1K train + validation singers as stereo Opus 24 kbit/s (opusenc; FLAC 130 MB → 24 MB). Measured on 24
#     validation clips with the shipped default model: OA 86.78 (FLAC) vs 86.83 (Opus 24k); voice leaks into
#     the accompaniment channel at −30 dB. The .pv labels as they are.
#   - UltraStar train songs (weak labels and the unlabeled pool) and the instrumentals: mono Opus 24 kbit/s in an
#     .ogg named as the adapter expects; the dev songs stay here (they are scored on this machine only).
#   - pro-voices (mono Opus 24 kbit/s) and their tracker labels (hkd-prep label-f0, data_cache/pro-voices-f0).
# Needs opusenc (Debian: opus-tools). Usage: bash experiments/real/gpu_bundle.sh
set -euo pipefail
S=${SHARED:-../shared/data}; D=.devdata
grep -qx '/.devdata/' .git/info/exclude 2>/dev/null || echo '/.devdata/' >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p $D/MIR-1K/Wavfile $D/MIR-1K/PitchLabel $D/ultrastar-cc/songs $D/pro-voices
cp $S/MIR-1K/splits.json $D/MIR-1K/
python - "$S" "$D" <<'EOF'
import json, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from hkdsme.pipeline.datasets import list_tracks, find_audio
S, D = Path(sys.argv[1]), Path(sys.argv[2])
jobs = []
for split in ("train", "validation"):
    for t in list_tracks("mir1k", S / "MIR-1K", split=split):
        jobs.append((t.audio_path, D / "MIR-1K/Wavfile" / f"{t.track_id}.opus", "24", False))
        subprocess.run(["cp", str(t.label_path), str(D / "MIR-1K/PitchLabel/")], check=True)
us = S / "ultrastar-cc"
splits = json.loads((us / "splits.json").read_text())
for name in splits["train"] + splits.get("instrumental_only", []):
    src = us / "songs" / name
    dst = D / "ultrastar-cc/songs" / name
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("song.txt", "license.txt"):
        if (src / f).exists():
            subprocess.run(["cp", str(src / f), str(dst / f)], check=True)
    for f in ("audio.ogg", "instrumental.ogg"):
        if (src / f).exists():
            jobs.append((src / f, dst / f, "24", True))
for name in splits["dev"]:       # instrumentals of dev songs only (their mixes and notes stay here)
    src = S / "ultrastar-cc/songs" / name / "instrumental.ogg"
    if src.exists():
        (D / "ultrastar-cc/songs" / name).mkdir(parents=True, exist_ok=True)
        jobs.append((src, D / "ultrastar-cc/songs" / name / "instrumental.ogg", "32", True))
(D / "ultrastar-cc/splits.json").write_text(json.dumps({"dev": [], "train": splits["train"]}))
pv = S / "pro-voices/audio"
for p in find_audio(pv):
    out = D / "pro-voices/audio" / p.relative_to(pv).with_suffix(".ogg")
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs.append((p, out, "24", True))
def enc(job):
    src, dst, br, mono = job
    if dst.exists():
        return
    tmp = dst.with_suffix(".tmp.opus")
    wav = None
    if src.suffix.lower() not in (".wav", ".flac"):      # opusenc reads wav/flac: decode Vorbis first
        import soundfile as sf
        wav = dst.with_suffix(".tmp.wav")
        x, sr = sf.read(src, always_2d=True)
        sf.write(wav, x.mean(1), sr)
    subprocess.run(["opusenc", "--quiet", "--bitrate", br, *(["--downmix-mono"] if mono else []),
                    str(wav or src), str(tmp)], check=True)
    if wav:
        wav.unlink()
    tmp.rename(dst)
with ThreadPoolExecutor(2) as ex:
    list(ex.map(enc, jobs))
print(f"{len(jobs)} files encoded")
EOF
if [ -d data_cache/pro-voices-f0 ]; then rm -rf $D/pro-voices-f0; cp -r data_cache/pro-voices-f0 $D/pro-voices-f0; fi
mkdir -p .whl
W="python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl"
$W librosa==0.11.0 soundfile==0.14.0 soxr==1.1.0 pedalboard==0.9.26 mir_eval==0.8.2 audioread decorator pooch \
  platformdirs cffi pycparser
du -sb $D .whl
