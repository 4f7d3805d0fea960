#!/usr/bin/env bash
# Issue 15 follow-up: does a longer distillation pass more of the teacher's robustness to the student?
# The same control and HKDSME arm as issue15.sh (same start, data, seed, lr 3e-4 cosine over 8 epochs), with
# STEPS (default 150) steps per epoch instead of 60: folders runs/aug/<run>-steps<STEPS><TAG><BTAG>.
#   nohup bash experiments/mir1k/long_kd.sh > runs/aug/long_kd.log 2>&1 &
# Resumable: a run whose metrics.jsonl holds all 8 epochs is skipped, one with last.pt continues (--resume).
# Then the test-singer report and the robustness breakdown of each best.pt. Table:
#   python experiments/mir1k/table15.py runs/aug/s-cont-steps150-on-supervised runs/aug/h-aug-steps150-ftanet-on-supervised
set -uo pipefail
export BASE=${BASE:-hkdsme/weights/supervised.pt} TEACHER=${TEACHER:-hkdsme/weights/ftanet.pt} STEPS=${STEPS:-150}
R=runs/aug
source experiments/mir1k/tags.sh
source experiments/mir1k/reports.sh
folder() { case $1 in h-*) echo "$1-steps$STEPS$TAG$BTAG" ;; *) echo "$1-steps$STEPS$BTAG" ;; esac; }
RUNS=${RUNS:-s-cont h-aug}
for run in $RUNS; do
  dir=$R/$(folder "$run")
  done_epochs=$( [[ -f $dir/metrics.jsonl ]] && wc -l < "$dir/metrics.jsonl" || echo 0 )
  if (( done_epochs >= ${EPOCHS:-8} )); then echo "$run: complete ($dir)"; continue; fi
  extra=(); [[ -f $dir/last.pt ]] && extra=(--resume)
  echo "$(date -u +%FT%TZ) $run -> $dir ${extra[*]}"
  # runs_aug.sh passes trailing options on to hkd-train; the later --out wins
  /usr/bin/time -f "$run: %e s wall, %U s user" bash experiments/mir1k/runs_aug.sh "$run" --out "$dir" "${extra[@]}" \
    >> "$dir.log" 2>&1 || echo "$run failed (see $dir.log)"
  tail -n 2 "$dir.log"
done
for run in $RUNS; do run_reports "$R/$(folder "$run")"; done
echo "$(date -u +%FT%TZ) done"
