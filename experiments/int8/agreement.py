"""Frame agreement of the int8 path with the fp32 reference on real audio, per set and overall.

For each file, the same predictor settings run twice (``--precision fp32`` and ``--against``, default int8); a frame agrees if both
call it unvoiced, or both call it voiced with pitches within 20 cents. Prints per-set: frames, same voicing %,
pitch within 20 cents % (of the frames both call voiced), all-frames agreement %. The accuracy side (OA against
references) is ``hkd-eval report --precision int8`` vs ``--precision fp32`` (docs/benchmarks.md).

    python experiments/int8/agreement.py [--model hkdsme|CKPT] [--against int8|bf16] [--set mir1k-test|ultrastar-dev]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SHARED = Path("../shared/data")


SETS = {"mir1k-test": "MIR-1K test", "ultrastar-dev": "UltraStar dev"}


def sets() -> dict:
    mir = sorted(p for p in (SHARED / "MIR-1K/Wavfile").iterdir()
                 if p.name.split("_")[0] in json.loads((SHARED / "MIR-1K/splits.json").read_text())["splits"]["test"]["singers"])
    us = SHARED / "ultrastar-cc"
    dev = [us / "songs" / s / "audio.ogg" for s in json.loads((us / "splits.json").read_text())["dev"]]
    return {SETS["mir1k-test"]: mir, SETS["ultrastar-dev"]: dev}


def main():
    from hkdsme.evaluate.inference import Predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hkdsme")
    ap.add_argument("--against", default="int8", choices=["int8", "bf16"])
    ap.add_argument("--set", dest="only", choices=list(SETS), help="one set only (default: both)")
    args = ap.parse_args()
    src = {"checkpoint": args.model} if Path(args.model).suffix == ".pt" else {"model": args.model}
    ref, red = Predictor(**src, precision="fp32"), Predictor(**src, precision=args.against)
    print(f"fp32 against {args.against}, model {args.model}\n")
    print(f"| set | files | frames | same voicing % | pitch ≤ 20 c % (both voiced) | frames agreeing % |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, files in sets().items():
        if args.only and SETS[args.only] != name:
            continue
        n = same = both = close = agree = 0
        for f in files:
            _, a = ref.predict_file(f)
            _, b = red.predict_file(f)
            va, vb = a > 0, b > 0
            bv = va & vb
            ok = np.zeros(a.size, dtype=bool)
            ok[bv] = np.abs(1200 * np.log2(a[bv] / b[bv])) <= 20
            n += a.size
            same += int((va == vb).sum())
            both += int(bv.sum())
            close += int(ok.sum())
            agree += int(((~va & ~vb) | ok).sum())
        print(f"| {name} | {len(files)} | {n} | {100 * same / n:.2f} | {100 * close / max(both, 1):.2f} | "
              f"{100 * agree / n:.2f} |", flush=True)


if __name__ == "__main__":
    main()
