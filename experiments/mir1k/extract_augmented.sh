#!/usr/bin/env bash
# Issue 14, sections 2-3: augmented MIR-1K shards (pipeline/augment.py; presets hkdsme/configs/augment/*.toml).
#   train  : 4 variants of every train-singer clip (pitch shift ±7 st, voice/accomp. ratio, cross-mixes,
#            accompaniment-only, EQ / reverb / compression / noise / MP3) -> data_cache/mir1k-train-aug
#   robust : 2 variants of every validation clip with another seed and stronger settings (|shift| 4-7 st, other
#            effects) -> data_cache/mir1k-robust, the robustness validation set (never used for training)
# Resumable: rerunning skips finished variants. Usage: bash experiments/mir1k/extract_augmented.sh [train|robust|all]
set -euo pipefail
ROOT=${ROOT:-../shared/data/MIR-1K}
what=${1:-all}
if [[ $what == train || $what == all ]]; then
  hkd-prep extract --dataset mir1k --root "$ROOT" --split train --augment train --variants 4 \
    --out data_cache/mir1k-train-aug --no-progress
fi
if [[ $what == robust || $what == all ]]; then
  hkd-prep extract --dataset mir1k --root "$ROOT" --split validation --augment robust --variants 2 \
    --out data_cache/mir1k-robust --no-progress
fi
