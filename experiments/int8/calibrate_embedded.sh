#!/usr/bin/env bash
# The int8 calibration stored in the embedded students (extra["int8"]): input ranges measured on real music,
# the 13 unlabeled songs (pool data) and the MIR-1K validation singers (every other clip); never the test sets.
#   bash experiments/int8/calibrate_embedded.sh          # MODELS="hkdsme" for one
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared/data}
VAL=$(ls "$SHARED"/MIR-1K/Wavfile/{Kenshin,heycat}_*.* | awk 'NR % 2 == 1')
for m in ${MODELS:-hkdsme hkdsme-mir1k supervised}; do
  hkd-eval calibrate-int8 hkdsme/weights/$m.pt "$SHARED/unlabeled-songs/audio" $VAL --write
done
