#!/usr/bin/env bash
# The real-music arms in one GPU job (docs/results.md, "Real music"): caches from the carried audio
# (experiments/real/gpu_bundle.sh → .devdata/), then every arm at once on one GPU, each arm's exported best
# student copied to $OUT as soon as it ends. Scoring and selection (MIR-1K validation, robustness validation,
# the UltraStar dev songs, MIR-1K test) run afterwards on any machine: experiments/real/score_arms.sh.
#
# Arms (all: MIR-1K train singers plain + 4 augmented variants as labeled data, the same steps, lr, seed):
#   warm       --init msnet-vocal, CE only                                   (warm start alone)
#   ens        --init supervised, KD + CGL + HCR from the ensemble teacher    (ensemble KD alone)
#   both       --init msnet-vocal + ensemble KD                               (both)
#   both-pro   both + pro-voices mixed over accompaniments (tracker labels)   (both + pro voices)
#   both-weak  both + UltraStar train songs with note labels                  (both + weak real-mix labels)
#   ftanet-kd  --init supervised, KD from ftanet alone (the shipped recipe at this length: the control)
# Teachers per data set: ftanet on the labeled sets; the ensemble ftanet*W + msnet-vocal*(1-W) on the unlabeled
# real-music pool (--pool-teacher): fused everywhere, MSNet vocal's voicing costs 15 OA on MIR-1K (docs/results.md).
# HCR pool (labels never read): one augmented variant of the "unlabeled half" singers + the UltraStar train songs.
#
# On the device tool: carry .devdata and .whl; DEVICE=cuda. Locally (a smoke test of the whole script):
#   DEVICE=cpu JOBS=2 LIMIT=4 EPOCHS=1 STEPS=2 OUT=/tmp/gpu-smoke bash experiments/real/gpu_arms.sh
set -uo pipefail
T0=$SECONDS
DEADLINE=${DEADLINE:-540}            # seconds: every arm is stopped in time to export and pack
OUT=${OUT:-out/gpu}; D=${DATA:-.devdata}; C=${CACHE:-/tmp/hkd-cache}; R=${RUNS:-/tmp/hkd-runs}
JOBS=${JOBS:-16}; DEVICE=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-10}; STEPS=${STEPS:-400}; W=${W:-0.5}
ARMS=${ARMS:-"warm ens both both-pro both-weak ftanet-kd"}
LIMIT=${LIMIT:+--limit $LIMIT}
mkdir -p "$OUT" "$C" "$R"
log() { echo "$(date -u +%T) [$((SECONDS - T0)) s] $*" | tee -a "$OUT/gpu.log"; }
# each KD arm's teacher cache holds ~9-10 GB of float16 logits: the control goes first when the disk is short
FREE_GB=$(df --output=avail -BG "$C" | tail -1 | tr -dc 0-9)
log "free disk ${FREE_GB} GB"
if [ "${FREE_GB:-0}" -lt 58 ] && [[ " $ARMS " == *" ftanet-kd "* ]]; then
  ARMS=$(echo " $ARMS " | sed 's/ ftanet-kd / /'); log "ftanet-kd dropped (disk)"
fi

# ---- the package without an install: hkdsme.* mapped from the repo's folders (setup.cfg's package_dir)
if [ -d .whl ] && ! python3 -c "import soundfile, pedalboard, librosa, mir_eval" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
PKG=/tmp/hkd-pkg; rm -rf $PKG; mkdir -p $PKG/hkdsme
for f in hkdsme/*; do ln -s "$PWD/$f" "$PKG/hkdsme/"; done
for p in pipeline model train evaluate; do ln -s "$PWD/$p" "$PKG/hkdsme/$p"; done
export PYTHONPATH=$PKG${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1   # not ./hkdsme from the cwd
# several arms share 16 cores: each process would otherwise take all 16 threads (a run here with 3 arms x 16
# threads + their loader workers never finished a first training step within 150 s)
export OMP_NUM_THREADS=${THREADS:-3}
prep() { python3 -m hkdsme.pipeline.cli "$@"; }
train() { python3 -m hkdsme.train.cli "$@"; }
python3 -c "import torch, hkdsme.pipeline.cfp, hkdsme.train.distill; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$OUT/gpu.log"
nproc | sed 's/^/cores /' >> "$OUT/gpu.log"

# ---- MIR-1K: Opus → FLAC under $C/MIR-1K (the adapter reads wav/flac), 16 processes
M=$C/MIR-1K; mkdir -p $M/Wavfile; cp $D/MIR-1K/splits.json $M/; ln -sfn "$PWD/$D/MIR-1K/PitchLabel" $M/PitchLabel
python3 - "$D/MIR-1K/Wavfile" "$M/Wavfile" <<'EOF2'
import sys
from multiprocessing import Pool
from pathlib import Path
import soundfile as sf
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
def dec(p):
    out = dst / (p.stem + ".flac")
    if not out.exists():
        x, sr = sf.read(p, always_2d=True)
        sf.write(dst / (p.stem + ".tmp.flac"), x, sr, subtype="PCM_16")
        (dst / (p.stem + ".tmp.flac")).rename(out)
files = sorted(src.glob("*.opus"))
with Pool() as pool:
    pool.map(dec, files, chunksize=8)
print(f"decoded {len(files)} clips")
EOF2
log "audio ready"

# ---- caches (each resumable; one line per skipped file)
X="--jobs $JOBS --no-progress $LIMIT"
prep extract --dataset mir1k --root $M --split train --out $C/mir1k-train $X
prep extract --dataset mir1k --root $M --split train --augment train --variants 4 --out $C/mir1k-train-aug $X
prep extract --dataset mir1k --root $M --split validation --out $C/mir1k-validation $X
prep extract --dataset mir1k --root $M --split validation --augment robust --variants 2 --out $C/mir1k-robust $X
prep extract --dataset mir1k --root $M --split train --tracks experiments/mir1k/unlabeled_half.txt \
  --augment experiments/mir1k/pool.toml --variants 1 --out $C/mir1k-pool-aug $X
prep extract --dataset unlabeled --root $D/ultrastar-cc/songs --out $C/ultrastar-pool $X
log "MIR-1K and pool caches ready"
if [[ " $ARMS " == *" both-pro "* ]]; then
  prep extract --dataset provoices --root $D/pro-voices --labels $D/pro-voices-f0 --accomp mir1k:$M \
    --accomp "$D/ultrastar-cc/songs/*/instrumental.ogg" --augment train --variants 4 --out $C/provoices-aug $X \
    || log "provoices cache FAILED"
fi
if [[ " $ARMS " == *" both-weak "* ]]; then
  prep extract --dataset ultrastar --root $D/ultrastar-cc --split train --out $C/ultrastar-train $X \
    || log "ultrastar cache FAILED"
fi
log "caches ready"; du -sh $C/* >> "$OUT/gpu.log"

# ---- arms, all at once
ENS="hkdsme/weights/ftanet.pt*$W+hkdsme/weights/msnet-vocal.pt*$(python3 -c "print(round(1-$W, 6))")"
LAB="--labeled $C/mir1k-train --labeled $C/mir1k-train-aug"
POOL="--unlabeled $C/mir1k-pool-aug --unlabeled $C/ultrastar-pool"
V="--val $C/mir1k-validation --val-robust $C/mir1k-robust"
COMMON="$V --lr 3e-4 --lr-schedule cosine --epochs $EPOCHS --max-steps-per-epoch $STEPS --device $DEVICE --workers 2 \
  --val-batch 128 --seed 0"
KD="--heads --hcr-tolerance 2 --teacher-batch 128 $POOL"
arm() {   # name, args...: train until the deadline, then export best.pt into $OUT (synchronous)
  local name=$1; shift
  local left=$((DEADLINE - (SECONDS - T0) - 60))
  timeout --signal=TERM $left python3 -m hkdsme.train.cli run "$@" --out $R/$name > $R/$name.log 2>&1
  echo "exit $?" >> $R/$name.log
  if [ -f $R/$name/best.pt ]; then
    python3 -m hkdsme.train.cli export $R/$name/best.pt -o "$OUT/$name.pt" >> $R/$name.log 2>&1
  fi
  log "arm $name done: $(tail -1 $R/$name.log)"
}
PIDS=()
for a in $ARMS; do
  case $a in
    warm)      arm warm --teacher random --no-kd --no-hcr --no-heads --init hkdsme/weights/msnet-vocal.pt $LAB \
                 $COMMON & ;;
    ens)       arm ens --teacher hkdsme/weights/ftanet.pt --pool-teacher "$ENS" $KD --init hkdsme/weights/supervised.pt $LAB $COMMON \
                 --teacher-cache $C/tc-ens.h5 & ;;
    both)      # shares ens's teacher cache (same teacher and data): starts once that cache is complete
               ( while [ ! -f $C/tc-ens.h5 ] && ! grep -qs '^exit' $R/ens.log && [ $((SECONDS - T0)) -lt $((DEADLINE - 120)) ]; do sleep 3; done
                 [ -f $C/tc-ens.h5 ] || { log "ens teacher cache not ready: both skipped"; exit 0; }
                 arm both --teacher hkdsme/weights/ftanet.pt --pool-teacher "$ENS" $KD --init hkdsme/weights/msnet-vocal.pt $LAB $COMMON \
                   --teacher-cache $C/tc-ens.h5 ) & ;;
    both-pro)  [ -f $C/provoices-aug/manifest.json ] || { log "no provoices cache: both-pro skipped"; continue; }
               arm both-pro --teacher hkdsme/weights/ftanet.pt --pool-teacher "$ENS" $KD --init hkdsme/weights/msnet-vocal.pt $LAB \
                 --labeled $C/provoices-aug $COMMON & ;;
    both-weak) [ -f $C/ultrastar-train/manifest.json ] || { log "no ultrastar cache: both-weak skipped"; continue; }
               arm both-weak --teacher hkdsme/weights/ftanet.pt --pool-teacher "$ENS" $KD --init hkdsme/weights/msnet-vocal.pt $LAB \
                 --labeled $C/ultrastar-train $COMMON & ;;
    ftanet-kd) arm ftanet-kd --teacher hkdsme/weights/ftanet.pt $KD --init hkdsme/weights/supervised.pt $LAB \
                 $COMMON & ;;
    *) log "unknown arm $a"; continue ;;
  esac
  PIDS+=($!)
done
log "arms started: $ARMS (deadline $DEADLINE s)"
( while sleep 30; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null \
    | sed "s/^/$((SECONDS - T0)) s gpu /" >> "$OUT/gpu.log"; done ) &
MON=$!
wait "${PIDS[@]}"
kill $MON 2>/dev/null
log "all arms ended"
tar -czf "$OUT/runs.tgz" -C $R --exclude='*.pt' --exclude='*.h5' --exclude='*.partial' . 2>/dev/null
ls -la "$OUT" >> "$OUT/gpu.log"
