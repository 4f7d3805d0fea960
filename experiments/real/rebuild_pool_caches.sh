#!/usr/bin/env bash
# Every cache experiments/real/cpu_pool.sh reads, rebuilt on a fresh machine (data_cache/ is not in git); each
# step is resumable and skips what is complete. The UltraStar pool is the 12 train songs only (splits.json):
# the 5 dev songs are for selection and never enter training, not even unlabeled.
#   nohup bash experiments/real/rebuild_pool_caches.sh > out/rebuild_pool_caches.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared/data}
M=$SHARED/MIR-1K
E=experiments/mir1k
x() { echo "$(date -u +%T) hkd-prep extract $*"; hkd-prep extract "$@" --no-progress; }
x --dataset mir1k --root "$M" --split train --tracks $E/labeled_half.txt   --out data_cache/mir1k-labeled
x --dataset mir1k --root "$M" --split train --tracks $E/unlabeled_half.txt --out data_cache/mir1k-unlabeled
x --dataset mir1k --root "$M" --split validation --out data_cache/mir1k-validation
x --dataset mir1k --root "$M" --split validation --augment robust --variants 2 --out data_cache/mir1k-robust
x --dataset unlabeled --root "$SHARED/unlabeled-songs/audio" --out data_cache/unlabeled-songs
mkdir -p out/ultrastar-train
python - "$SHARED/ultrastar-cc" out/ultrastar-train <<'PY'
import json, os, sys
from pathlib import Path
root, dst = Path(sys.argv[1]), Path(sys.argv[2])
for song in json.loads((root / "splits.json").read_text())["train"]:
    link = dst / f"{song}.ogg"
    if not link.exists():
        os.symlink((root / "songs" / song / "audio.ogg").resolve(), link)
PY
x --dataset unlabeled --root out/ultrastar-train --out data_cache/ultrastar-pool
PREP=hkd-prep PY=python bash experiments/real/build_provoices.sh
echo "$(date -u +%T) pool caches complete"
