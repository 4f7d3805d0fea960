#!/usr/bin/env bash
# The real-music student on a 2-core CPU (the recipe of the shipped default `hkdsme`,
# hkdsme/configs/recipes/hkdsme.toml), per-set teachers: `hkdsme-mir1k` teaches on the labeled sets
# (MIR-1K train singers + pro-voices mixes with tracker labels), while the fused posteriors of `hkdsme-mir1k` and MSNet
# vocal (W = 0.5, the best real-mix dev score of the fusion table in docs/results.md) teach on the real-music pool
# (the 12 UltraStar train songs + the 13 unlabeled songs), where HCR picks the pseudo-labels. HKDSME's loss
# (CE + CGL + projector CGL + KL), 4 x 100 steps from `hkdsme-mir1k`, lr 3e-4 cosine.
# Caches: experiments/mir1k/rebuild_caches.sh, experiments/real/build_provoices.sh, and the UltraStar pool:
#   hkd-prep extract --dataset unlabeled --root <folder of the 12 UltraStar train songs' audio.ogg> --out data_cache/ultrastar-pool
#   bash experiments/real/cpu_pool.sh [--resume]
set -euo pipefail
C=data_cache
hkd-train run --teacher hkdsme/weights/hkdsme-mir1k.pt --student-teacher \
  --pool-teacher "hkdsme/weights/hkdsme-mir1k.pt*0.5+hkdsme/weights/msnet-vocal.pt*0.5" \
  --heads --hcr-tolerance 2 --init hkdsme/weights/hkdsme-mir1k.pt \
  --labeled $C/mir1k-labeled --labeled $C/mir1k-unlabeled --labeled $C/provoices-aug \
  --unlabeled $C/ultrastar-pool --unlabeled $C/unlabeled-songs \
  --val $C/mir1k-validation --val-robust $C/mir1k-robust --val-every 2 \
  --lr 3e-4 --lr-schedule cosine --epochs ${EPOCHS:-4} --max-steps-per-epoch ${STEPS:-100} \
  --out runs/real/${NAME:-hkdsme} "$@"
