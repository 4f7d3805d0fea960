#!/usr/bin/env bash
# The real-music recipe (cpu_pool.sh) plus the 12 UltraStar train songs as weak labels: their notes refined by
# the fused teacher's posterior (hkd-prep weak-labels, docs/real_mix_dev.md) join the labeled sets, so real band
# mixes are trained on with labels, not only through HCR's few kept pool segments. Per-set teachers as in
# cpu_pool.sh (`hkdsme-mir1k` on the labeled sets, the fused `hkdsme-mir1k*0.5 + msnet-vocal*0.5` on the pool).
# INIT (default the shipped `hkdsme`), EPOCHS x STEPS (4 x 100), lr 3e-4 cosine.
# Caches: as cpu_pool.sh, plus (≈ 12 min + 2 min on a 2-core CPU):
#   hkd-prep weak-labels --root ../shared/data/ultrastar-cc --split train --out data_cache/ultrastar-weak-labels \
#       --teacher "hkdsme/weights/hkdsme-mir1k.pt*0.5+hkdsme/weights/msnet-vocal.pt*0.5"
#   hkd-prep extract --dataset ultrastar --root ../shared/data/ultrastar-cc --split train \
#       --labels data_cache/ultrastar-weak-labels --out data_cache/ultrastar-weak
# TCACHE: a teacher-cache file shared between arms (its folder's other caches donate matching sets).
#   bash experiments/real/cpu_weak.sh [--resume]
set -euo pipefail
C=data_cache
W=hkdsme/weights
hkd-train run --teacher $W/hkdsme-mir1k.pt --student-teacher \
  --pool-teacher "$W/hkdsme-mir1k.pt*0.5+$W/msnet-vocal.pt*0.5" \
  --heads --hcr-tolerance 2 --init ${INIT:-$W/hkdsme.pt} \
  --labeled $C/mir1k-labeled --labeled $C/mir1k-unlabeled --labeled $C/provoices-aug --labeled $C/ultrastar-weak \
  --unlabeled $C/ultrastar-pool --unlabeled $C/unlabeled-songs \
  --val $C/mir1k-validation --val-robust $C/mir1k-robust --val-every 2 \
  --lr 3e-4 --lr-schedule cosine --epochs ${EPOCHS:-4} --max-steps-per-epoch ${STEPS:-100} \
  ${TCACHE:+--teacher-cache $TCACHE} --out runs/real/${NAME:-weak} "$@"
