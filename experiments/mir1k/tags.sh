# Run-folder tags shared by runs_aug.sh and issue15.sh (sourced, not run).
#   TEACHER=runs/aug/RUN/best.pt               -> TAG "-RUN"  (a teacher still in its run folder)
#   TEACHER=hkdsme/weights/NAME.pt            -> TAG "-NAME" (an exported teacher kept in git, e.g. ftanet)
#   BASE=path/NAME.pt                          -> BTAG "-on-NAME" (the common start of control and arms)
#   STEPS=N                                    -> STAG "-stepsN" (control and arms with N steps per epoch, not 60)
teacher_tag() {
  [[ -z ${TEACHER:-} ]] && return 0
  local b; b=$(basename "$TEACHER" .pt)
  case $b in best|last) echo "-$(basename "$(dirname "$TEACHER")")" ;; *) echo "-$b" ;; esac
}
TAG=$(teacher_tag)
BTAG=${BASE:+-on-$(basename "$BASE" .pt)}
STAG=${STEPS:+-steps$STEPS}
