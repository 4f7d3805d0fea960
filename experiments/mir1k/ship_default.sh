#!/usr/bin/env bash
# Ship a run's best (by validation) student as the embedded default model and score it on the test singers.
set -euo pipefail
RUN=${1:?usage: ship_default.sh RUN_DIR}
hkd-train export "$RUN/best.pt" -o hkdsme/weights/default.pt
hkd-eval report --checkpoint hkdsme/weights/default.pt --dataset mir1k --root "${ROOT:-../shared/data/MIR-1K}" \
  --split test --cache data_cache/mir1k-test --out runs/mir1k/report-default --no-plots
