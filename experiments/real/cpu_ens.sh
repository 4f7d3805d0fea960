#!/usr/bin/env bash
# The real-music student on a 2-core CPU (no GPU): the shipped `hkdsme` taught by the fused posteriors of itself
# and MSNet vocal (hkdsme*0.5 + msnet-vocal*0.5: the average that beat both on professional recordings), with
# HKDSME's loss (CE + CGL + projector CGL + KL) and HCR, on MIR-1K train singers + pro-voices mixed over
# accompaniments (tracker labels), and the 12 UltraStar train songs + the 13 unlabeled songs as the HCR pool.
# Caches: experiments/mir1k/rebuild_caches.sh, experiments/real/build_provoices.sh, and
#   hkd-prep extract --dataset unlabeled --root <folder of the 12 UltraStar train songs' audio.ogg> --out data_cache/ultrastar-pool
# Resumable: append --resume.   bash experiments/real/cpu_ens.sh [--resume]
set -euo pipefail
C=data_cache
hkd-train run --teacher "hkdsme/weights/hkdsme.pt*${W:-0.5}+hkdsme/weights/msnet-vocal.pt*$(python -c "print(round(1-${W:-0.5}, 6))")" \
  --heads --hcr-tolerance 2 --init hkdsme/weights/hkdsme.pt \
  --labeled $C/mir1k-labeled --labeled $C/mir1k-unlabeled --labeled $C/provoices-aug \
  --unlabeled $C/ultrastar-pool --unlabeled $C/unlabeled-songs \
  --val $C/mir1k-validation --val-robust $C/mir1k-robust --val-every 2 \
  --lr 3e-4 --lr-schedule cosine --epochs ${EPOCHS:-4} --max-steps-per-epoch ${STEPS:-100} \
  --out runs/real/${NAME:-ens-hkdsme} "$@"
