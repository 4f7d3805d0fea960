#!/usr/bin/env bash
# Issue 15: every run of the semi-supervised study, in order, each resumed where it stopped (a run whose
# metrics.jsonl holds all epochs is skipped), then the test-singer reports. Logs: runs/aug/<run>.log.
#   nohup bash experiments/mir1k/issue15.sh > runs/aug/issue15.log 2>&1 &
# Needs: extract.sh, extract_augmented.sh all, the songs pool (README) and `runs_aug.sh pool`; runs/aug/s-aug.
set -uo pipefail
R=runs/aug; EPOCHS=${EPOCHS:-8}
for run in ${RUNS:-h-aug h-nosongs h-nokd h-exact}; do
  done_epochs=$( [[ -f $R/$run/metrics.jsonl ]] && wc -l < $R/$run/metrics.jsonl || echo 0 )
  if (( done_epochs >= EPOCHS )); then echo "$run: complete"; continue; fi
  extra=(); [[ -f $R/$run/last.pt ]] && extra=(--resume)
  echo "$(date -u +%FT%TZ) $run ${extra[*]}"
  /usr/bin/time -f "$run: %e s wall, %U s user" bash experiments/mir1k/runs_aug.sh "$run" "${extra[@]}" \
    >> $R/$run.log 2>&1 || echo "$run failed (see $R/$run.log)"
  tail -n 2 $R/$run.log
done
for run in ${RUNS:-h-aug h-nosongs h-nokd h-exact}; do
  [[ -f $R/$run/best.pt && ! -f $R/$run/test-report/report.json ]] && bash experiments/mir1k/runs_aug.sh test $R/$run >> $R/$run.log 2>&1
done
echo "$(date -u +%FT%TZ) done"
