#!/usr/bin/env bash
# Does bf16 autocast learn as well as fp32? Same seed, same batches, supervised student on the labeled half.
set -euo pipefail
for p in fp32 bf16; do
  hkd-train run --teacher random --no-kd --no-hcr --labeled data_cache/mir1k-labeled --val data_cache/mir1k-validation \
    --out runs/mir1k/bf16check-$p --precision $p --epochs 2 --max-steps-per-epoch 40 --seed 1
done
