"""What a fresh predict worker spends before and on its first file: imports, model load (and, for int8, weight
packing), the first network call, then a second file of the same length (steady state).

Each precision runs in its own fresh interpreter, ``--repeats`` times; the median of each stage is printed.
One thread per process, as ``hkd-eval predict`` gives each worker on a 2-core machine.

    python benchmarks/bench_startup.py                       # fp32 and int8, 20 s of audio per file
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_startup.py --precisions fp32 int8 bf16
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import torch
t1 = time.perf_counter()
from hkdsme.evaluate.inference import Predictor
from hkdsme.model import runtime
runtime.keep_freed_memory()
t2 = time.perf_counter()
p = Predictor(precision=sys.argv[1])
t3 = time.perf_counter()
sec = float(sys.argv[2])
t = np.arange(int(sec * 8000)) / 8000
x = (0.3 * np.sin(2 * np.pi * 220 * 2 ** (0.5 * np.sin(2 * np.pi * 0.3 * t)) * t)
     + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
p.predict_audio(x)
t4 = time.perf_counter()
p.predict_audio(x)
t5 = time.perf_counter()
print(json.dumps({"precision": p.precision, "import torch": t1 - t0, "import hkdsme": t2 - t1, "load model": t3 - t2,
                  "first file": t4 - t3, "second file": t5 - t4}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from hkdsme.model import runtime

    env = dict(os.environ, OMP_NUM_THREADS="1")
    rows = {}
    for r in range(args.repeats):
        for prec in args.precisions:          # interleaved, so drift hits every precision alike
            out = subprocess.run([sys.executable, "-c", CHILD, prec, str(args.seconds)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            rows.setdefault(prec, []).append(json.loads(out.strip().splitlines()[-1]))
    print(f"# {runtime.describe()}; one thread per process; {args.seconds:g} s files; median of {args.repeats}\n")
    stages = ["import torch", "import hkdsme", "load model", "first file", "second file"]
    print("| precision | " + " | ".join(f"{s} s" for s in stages) + " | first-file extra s |")
    print("|---|" + "---:|" * (len(stages) + 1))
    for prec, rs in rows.items():
        med = {s: statistics.median(x[s] for x in rs) for s in stages}
        print(f"| {prec} ({rs[0]['precision']}) | " + " | ".join(f"{med[s]:.3f}" for s in stages)
              + f" | {med['first file'] - med['second file']:.3f} |")


if __name__ == "__main__":
    main()
