#!/usr/bin/env bash
# Issue 15 follow-up: does a longer distillation pass more of the teacher's robustness to the student?
# issue15.sh's control and arms (same start, data, seed, lr 3e-4 cosine over 8 epochs) with STEPS (default 150)
# steps per epoch instead of 60, in folders runs/aug/<run>-steps<STEPS><TAG><BTAG> (tags.sh); resumable and
# reported exactly as there.
#   nohup bash experiments/mir1k/long_kd.sh > runs/aug/long_kd.log 2>&1 &                        # s-cont, h-aug
#   RUNS="h-nohcr h-nosongs" nohup bash experiments/mir1k/long_kd.sh > runs/aug/long_kd-ablations.log 2>&1 &
# Table: python experiments/mir1k/table15.py runs/aug/s-cont-steps150-on-supervised runs/aug/h-aug-steps150-ftanet-on-supervised
set -uo pipefail
export BASE=${BASE:-hkdsme/weights/supervised.pt} TEACHER=${TEACHER:-hkdsme/weights/ftanet.pt} STEPS=${STEPS:-150}
export RUNS=${RUNS:-s-cont h-aug}
exec bash experiments/mir1k/issue15.sh
