#!/usr/bin/env bash
# Issue 14 comparison of checkpoints on: plain validation + robustness validation (θ calibrated on both, with
# argmax / θ=0.5 / θ* rows), the MIR-1K test singers, and 3 synthetic songs sets (seeds 123, 7, 42).
#   bash experiments/mir1k/compare.sh OUT_DIR CKPT...
set -euo pipefail
OUT=${1:?usage: compare.sh OUT_DIR CKPT...}; shift
C=data_cache; mkdir -p "$OUT"
for ck in "$@"; do
  n=$(basename "$(dirname "$ck")")-$(basename "$ck" .pt)
  hkd-eval calibrate --checkpoint "$ck" --cache $C/mir1k-validation --cache $C/mir1k-robust > "$OUT/$n.calibrate.md" 2>/dev/null
  hkd-eval report --checkpoint "$ck" --dataset mir1k --root "${ROOT:-../shared/data/MIR-1K}" --split test \
    --cache $C/mir1k-test --out "$OUT/$n-test" --no-plots > /dev/null 2>&1
done
for seed in 123 7 42; do
  d="$OUT/synthetic-$seed"
  [ -d "$d" ] || python -c "from hkdsme.pipeline import synthetic; synthetic.write_dataset('$d', n=4, seed=$seed)"
  hkd-eval report $(for ck in "$@"; do echo --checkpoint "$ck"; done) --dataset synthetic --root "$d" \
    --out "$OUT/synthetic-$seed-report" --no-plots > /dev/null 2>&1
done
echo "written: $OUT/*.calibrate.md, $OUT/*-test/report.md, $OUT/synthetic-*-report/report.md"
