#!/usr/bin/env bash
# Issue 6, step 1: extract all 1000 MIR-1K clips (+ the remixes of the unlabeled half) into data_cache/.
set -euo pipefail
ROOT=${ROOT:-../shared/data/MIR-1K}
E=experiments/mir1k
hkd-prep extract --dataset mir1k --root "$ROOT" --split train --tracks $E/labeled_half.txt   --out data_cache/mir1k-labeled --no-progress
hkd-prep extract --dataset mir1k --root "$ROOT" --split train --tracks $E/unlabeled_half.txt --out data_cache/mir1k-unlabeled --no-progress
hkd-prep extract --dataset mir1k --root "$ROOT" --split validation --out data_cache/mir1k-validation --no-progress
hkd-prep extract --dataset mir1k --root "$ROOT" --split test       --out data_cache/mir1k-test --no-progress
for db in -5 5; do
  hkd-prep extract --dataset mir1k --root "$ROOT" --split train --tracks $E/unlabeled_half.txt --voice-db $db \
    --out data_cache/mir1k-unlabeled-v${db}dB --no-progress
done
# labeled + unlabeled halves of the train singers together (run d/e: all labels), for the remixes of the labeled half:
for db in -5 5; do
  hkd-prep extract --dataset mir1k --root "$ROOT" --split train --tracks $E/labeled_half.txt --voice-db $db \
    --out data_cache/mir1k-labeled-v${db}dB --no-progress
done
