# The reports every finished run of the study gets (sourced by issue15.sh and long_kd.sh, not run):
# the MIR-1K test-singer report and the robustness breakdown by transform of DIR/best.pt, each written once.
run_reports() {
  local dir=$1
  [[ -f $dir/best.pt && ! -f $dir/test-report/report.json ]] \
    && bash experiments/mir1k/runs_aug.sh test "$dir" >> "$dir.log" 2>&1
  # which robustness transforms each model loses on (issue 14: does the FTANet teacher hold up on buried voices?)
  [[ -f $dir/best.pt && ! -f $dir/robust-breakdown.md ]] \
    && python experiments/mir1k/robust_breakdown.py --checkpoint "$dir/best.pt" --out "$dir/robust-breakdown.md" \
       >> "$dir.log" 2>&1
  return 0
}
