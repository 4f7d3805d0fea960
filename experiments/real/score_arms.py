"""Score students by the real-music selection rule (docs/results.md, "Real music"; written before the runs).

selection = mean of (MIR-1K validation OA, robustness validation OA, real-mix dev score = mean OAc at 100 cents
over the UltraStar dev songs). θ of every trained student is calibrated on the two MIR-1K validation caches and
written into its file (``--write``, as for every shipped student); the embedded models keep their stored θ
(MSNet vocal has none: 0.5). MIR-1K test OA is reported, never used to select.

    python experiments/real/score_arms.py --out runs/real/scores runs/real/gpu/*.pt \
        --baseline hkdsme --baseline supervised --baseline msnet-vocal [--baseline ftanet]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

C = Path("data_cache")
US_ROOT = Path("../shared/data/ultrastar-cc")
MIR1K_ROOT = Path("../shared/data/MIR-1K")


def _cache(name):
    """A feature cache when it was built (faster), else None: the report computes the CFP from the audio."""
    return C / name if (C / name).is_dir() else None


def main():
    from hkdsme.evaluate.calibrate import calibrate_checkpoint
    from hkdsme.evaluate.models import model_checkpoint
    from hkdsme.evaluate.report import run_report
    from hkdsme.model.checkpoint import read_meta

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--baseline", action="append", default=[], help="an embedded model name")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-test", action="store_true")
    ap.add_argument("--precision", default="fp32", help="of every network (default fp32, the reference: auto would "
                    "give a calibrated student int8 on a CPU without native bf16 and the others fp32)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpts = {Path(c).stem: Path(c) for c in args.checkpoints}
    ckpts.update({f"[{b}]": model_checkpoint(b) for b in args.baseline})
    val = [C / "mir1k-validation", C / "mir1k-robust"]
    rows = {}
    for name, path in ckpts.items():
        trained = not name.startswith("[")
        res = calibrate_checkpoint(path, val, write=trained, progress=False, precision=args.precision)
        stored = (read_meta(path).get("extra") or {}).get("voicing_threshold")
        key = f"voicing@{res['theta']:g}" if trained else f"voicing@{stored:g}" if stored else "voicing@0.5"
        if not trained and stored and key not in res["caches"][str(val[0])]:
            key = "voicing@0.5"   # a stored θ the grid does not hold: report at 0.5 and say so
        rows[name] = {"theta": res["theta"] if trained else (stored or 0.5),
                      "val": res["caches"][str(val[0])][key]["OA"], "robust": res["caches"][str(val[1])][key]["OA"]}
        print(name, rows[name], flush=True)
    names = list(ckpts)
    rep = run_report([str(ckpts[n]) for n in names], "ultrastar", US_ROOT, split="validation",
                     out_dir=out / "ultrastar-dev", cache_dir=_cache("ultrastar-dev"), plots=False, precision=args.precision)
    for n, c in zip(names, rep["checkpoints"].values()):
        m = c["mean"]
        rows[n].update(dev_OAc=m["OAc"], dev_VR=m["VR"], dev_VFA=m["VFA"], dev_RCA=m["RCA"], dev_OA=m["OA"])
    if not args.no_test:
        rep = run_report([str(ckpts[n]) for n in names], "mir1k", MIR1K_ROOT, split="test",
                         out_dir=out / "mir1k-test", cache_dir=_cache("mir1k-test"), plots=False, precision=args.precision)
        for n, c in zip(names, rep["checkpoints"].values()):
            rows[n]["test_OA"] = c["mean"]["OA"]
    for r in rows.values():
        r["selection"] = (r["val"] + r["robust"] + r["dev_OAc"]) / 3
    (out / "scores.json").write_text(json.dumps(rows, indent=1))
    cols = ["theta", "val", "robust", "dev_OAc", "selection", "dev_VR", "dev_VFA", "dev_RCA", "test_OA"]
    print("| model | θ | val OA | robust OA | dev OAc | selection | dev VR | dev VFA | dev RCA | test OA |")
    print("|---|" + "---:|" * len(cols))
    for n in sorted(rows, key=lambda k: -rows[k]["selection"]):
        print(f"| {n} | " + " | ".join(f"{rows[n][c]:.2f}" if c in rows[n] else "–" for c in cols) + " |")


if __name__ == "__main__":
    main()
