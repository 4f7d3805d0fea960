#!/usr/bin/env bash
# Build the provoices training cache: professional a cappella voices (shared/data/pro-voices), labeled by the
# chosen f0 tracker, mixed over accompaniments, 4 augmented variants per voice.
# Resumable: every step keeps what a previous run finished (labels: existing files; extract: its manifest), so
# rerun it after a kill or on a fresh machine (only ../shared and the installed project are needed; the Frets on
# Fire stems are fetched from Debian's archive with apt-get download into out/, which git ignores).
# Run from the repository root:  bash experiments/real/build_provoices.sh
# Measured on the shared 2-core AMD EPYC (other jobs running): labels 160 clips / 26.4 min of voice in 18 min
# (pyin, 1.5x realtime, 72.2 % of frames voiced); extract 640 variants in 13 min (8.1x realtime, 2 jobs):
# 1:45:33 of audio, 10192 segments, 65.6 % voiced frames, 1.2 GiB (`hkd-prep info data_cache/provoices-aug`).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
PREP=${PREP:-.venv/bin/hkd-prep}
SHARED=${SHARED:-../shared/data}
LABELS=data_cache/pro-voices-f0
OUT=data_cache/provoices-aug
FOF=out/fof/usr/share/games/fretsonfire/data/songs

# 1. Frets on Fire band stems (Debian: fretsonfire-songs-muldjord, CC BY-SA 3.0; -sectoid, MIT-style licence).
#    Used: Muldjord's song.ogg (backing without the guitar; the default model calls 2-9 % of its frames voiced,
#    like the known instrumentals' 5-10 %, against 14-47 % for songs with vocals: no pitched singing) and every
#    guitar.ogg (a guitar stem, no vocals by construction). Sectoid's song.ogg stems are left out: 12-64 % voiced
#    (a lead melody that may be sung). Measured with experiments/real/accomp_vocal_check.py.
if [ ! -d "$FOF/muldjord" ] || [ ! -d "$FOF/sectoid" ]; then
    mkdir -p out/fof
    (cd out/fof && apt-get download fretsonfire-songs-muldjord fretsonfire-songs-sectoid && for d in *.deb; do dpkg -x "$d" .; done)
fi

# 2. f0 labels (one process, resumable: existing <id>.f0.csv files are kept)
"$PREP" label-f0 "$SHARED/pro-voices" --out "$LABELS" --tracker pyin

# 3. mixtures: 4 groups drawn with equal probability
"$PREP" extract --dataset provoices --root "$SHARED/pro-voices" --labels "$LABELS" \
    --accomp "mir1k:$SHARED/MIR-1K" \
    --accomp "$SHARED/ultrastar-cc/songs/*/instrumental.ogg" \
    --accomp "$FOF/muldjord/*/song.ogg" \
    --accomp "$FOF/*/*/guitar.ogg" \
    --augment train --variants 4 --out "$OUT" --jobs 2 --no-progress

"$PREP" info "$OUT"
