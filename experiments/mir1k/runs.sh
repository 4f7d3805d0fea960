#!/usr/bin/env bash
# Issue 6 runs (see docs/results.md). Each is resumable: rerun the same line with --resume appended.
set -euo pipefail
C=data_cache; R=runs/mir1k; V="--val $C/mir1k-validation --precision bf16 --lr-schedule cosine"
# c and its variants f, g: half labels + the other half (and its remixes) unlabeled, teacher from the labeled half.
CARGS="--teacher $R/a-half-teacher/best.pt --labeled $C/mir1k-labeled --unlabeled $C/mir1k-unlabeled
  --unlabeled $C/mir1k-unlabeled-v-5dB --unlabeled $C/mir1k-unlabeled-v5dB $V --epochs 30 --max-steps-per-epoch 80"
case "${1:-}" in
  a-half) hkd-train teacher --data $C/mir1k-labeled $V --out $R/a-half-teacher --epochs 40 --max-steps-per-epoch 60 ;;
  a)      hkd-train teacher --data $C/mir1k-labeled --data $C/mir1k-unlabeled $V --out $R/a-teacher --epochs 40 --max-steps-per-epoch 60 ;;
  b)      hkd-train run --teacher random --no-kd --no-hcr --labeled $C/mir1k-labeled $V --out $R/b-student-half --epochs 30 --max-steps-per-epoch 80 ;;
  c)      hkd-train run $CARGS --out $R/c-hkdsme-half ;;
  d)      hkd-train run --teacher random --no-kd --no-hcr --labeled $C/mir1k-labeled --labeled $C/mir1k-unlabeled $V \
            --out $R/d-student-all --epochs 30 --max-steps-per-epoch 80 ;;
  e)      hkd-train run --teacher $R/a-teacher/best.pt --labeled $C/mir1k-labeled --labeled $C/mir1k-unlabeled \
            --unlabeled $C/mir1k-labeled-v-5dB --unlabeled $C/mir1k-labeled-v5dB \
            --unlabeled $C/mir1k-unlabeled-v-5dB --unlabeled $C/mir1k-unlabeled-v5dB \
            $V --out $R/e-hkdsme-all --epochs 30 --max-steps-per-epoch 80 ;;
  f)      hkd-train run $CARGS --faithful --out $R/f-faithful ;;
  g-no-hcr) hkd-train run $CARGS --no-hcr --out $R/g-no-hcr ;;
  g-no-kd)  hkd-train run $CARGS --no-kd --out $R/g-no-kd ;;
  g-no-cgl) hkd-train run $CARGS --no-cgl --out $R/g-no-cgl ;;
  *) echo "usage: $0 a-half|a|b|c|d|e|f|g-no-hcr|g-no-kd|g-no-cgl"; exit 2 ;;
esac
