#!/usr/bin/env bash
# Everything the issue 14/15 runs read, rebuilt on a fresh machine (data_cache/ and runs/ are not in git): the
# plain caches of the train / validation / test singers, the augmented train set and the robustness validation set,
# the 13 real songs and the augmented MIR-1K part of the HCR pool. Each cache is resumable and skipped when
# complete, so rerunning is cheap. ~10 min on the 2-core VM (session 4 table in docs/results.md).
#   bash experiments/mir1k/rebuild_caches.sh
set -euo pipefail
ROOT=${ROOT:-../shared/data/MIR-1K}
SONGS=${SONGS:-../shared/data/unlabeled-songs/audio}
E=experiments/mir1k
# runs/ lives outside the work tree (the next session's work tree is laid anew, while its machine may be this
# one, handed back): a link to $RUNS_HOME, made once; an existing runs/ folder or link is left as it is.
RUNS_HOME=${RUNS_HOME:-$HOME/hkdsme-runs}
[[ -e runs || -L runs ]] || { mkdir -p "$RUNS_HOME" && ln -s "$RUNS_HOME" runs && echo "runs -> $RUNS_HOME"; }
x() { echo "$(date -u +%T) hkd-prep extract $*"; hkd-prep extract "$@" --no-progress; }
x --dataset mir1k --root "$ROOT" --split train --tracks $E/labeled_half.txt   --out data_cache/mir1k-labeled
x --dataset mir1k --root "$ROOT" --split train --tracks $E/unlabeled_half.txt --out data_cache/mir1k-unlabeled
x --dataset mir1k --root "$ROOT" --split validation --out data_cache/mir1k-validation
x --dataset mir1k --root "$ROOT" --split test       --out data_cache/mir1k-test
x --dataset unlabeled --root "$SONGS" --out data_cache/unlabeled-songs
bash $E/extract_augmented.sh robust
bash $E/runs_aug.sh pool
bash $E/extract_augmented.sh train
echo "$(date -u +%T) caches complete"
