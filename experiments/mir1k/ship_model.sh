#!/usr/bin/env bash
# Ship RUN/best.pt as the embedded model NAME (hkdsme | supervised): export without training state and projector
# heads (keeps the calibrated voicing threshold), then score the exported file on the MIR-1K test singers.
#   bash experiments/mir1k/ship_model.sh supervised runs/aug/s-aug-cont
# The default among the named models is set in hkdsme/weights/models.json (higher robustness-validation OA).
set -euo pipefail
NAME=${1:?usage: ship_model.sh hkdsme|supervised RUN_DIR}; RUN=${2:?usage: ship_model.sh NAME RUN_DIR}
case "$NAME" in hkdsme|supervised) ;; *) echo "NAME must be hkdsme or supervised"; exit 2 ;; esac
hkd-train export "$RUN/best.pt" -o hkdsme/weights/$NAME.pt
hkd-eval report --checkpoint hkdsme/weights/$NAME.pt --dataset mir1k --root "${ROOT:-../shared/data/MIR-1K}" \
  --split test --cache data_cache/mir1k-test --out "$RUN/shipped-test-report" --no-plots
