#!/usr/bin/env bash
# Accuracy of the int8 path against fp32 for the embedded students: MIR-1K test (OA at 50 cents) and the
# real-mix dev set (UltraStar dev, OA/OAc at 100 cents), each scored twice, --precision fp32 and int8.
#   bash experiments/int8/accuracy.sh   (MODELS="hkdsme" for one) → out/int8/<set>-<precision>/report.json, summary table on stdout
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared/data}
CK=(); for m in ${MODELS:-hkdsme hkdsme-mir1k supervised}; do CK+=(--checkpoint hkdsme/weights/$m.pt); done
for p in fp32 int8; do
  hkd-eval report "${CK[@]}" --dataset mir1k --root $SHARED/MIR-1K \
    --split test --precision $p --no-plots --out out/int8/mir1k-test-$p > /dev/null
  hkd-eval report "${CK[@]}" --dataset ultrastar \
    --root $SHARED/ultrastar-cc --split validation --precision $p --no-plots --out out/int8/ultrastar-dev-$p > /dev/null
done
python - <<'PY'
import json
from pathlib import Path
print("| set | model | fp32 OA | int8 OA | fp32 OAc | int8 OAc |")
print("|---|---|---:|---:|---:|---:|")
for s in ("mir1k-test", "ultrastar-dev"):
    r = {p: json.loads(Path(f"out/int8/{s}-{p}/report.json").read_text()) for p in ("fp32", "int8")}
    for m in r["fp32"]["checkpoints"]:
        a, b = r["fp32"]["checkpoints"][m]["mean"], r["int8"]["checkpoints"][m]["mean"]
        print(f"| {s} | {m} | {a['OA']:.2f} | {b['OA']:.2f} | {a.get('OAc', float('nan')):.2f} | {b.get('OAc', float('nan')):.2f} |")
PY
