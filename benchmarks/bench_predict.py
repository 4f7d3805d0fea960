"""Speed of ``Predictor.predict_audio`` as × realtime, with the CFP and the network timed separately.

Audio: a gliding harmonic tone plus noise (the content does not change the cost). Networks: random-weight
student / teacher checkpoints written to a temp folder (weights do not change the cost either).
"×RT" = audio seconds / wall seconds (higher is faster); best of ``--repeats`` runs after one warm-up.

    python benchmarks/bench_predict.py                         # 60 s, student, cpu (+ cuda when available)
    python benchmarks/bench_predict.py --kinds student teacher --seconds 30 --batch-size 32
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hkdsme.evaluate.inference import Predictor, streamed_cfp
from hkdsme.model.checkpoint import build_model, save_checkpoint
from hkdsme.pipeline import grid


def audio(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * grid.SR)) / grid.SR
    f = 220 * 2 ** (0.5 * np.sin(2 * np.pi * 0.3 * t))
    ph = 2 * np.pi * np.cumsum(f) / grid.SR
    x = 0.3 * np.sin(ph) + 0.1 * np.sin(2 * ph) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return x.astype(np.float32)


def best_of(fn, repeats: int, sync) -> float:
    fn()                        # warm-up: numba compilation, cuDNN autotune, allocator
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kinds", nargs="+", default=["student"], choices=["student", "teacher"])
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    x = audio(args.seconds)
    n_frames = grid.n_frames(x.size)

    print(f"{args.seconds:g} s of audio = {n_frames} frames = {-(-n_frames // grid.SEG_LEN)} segments; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch_size}")
    cfp_s = best_of(lambda: streamed_cfp(x), args.repeats, lambda: None)
    feats = streamed_cfp(x)
    print(f"CFP (numpy/numba, CPU): {cfp_s:.3f} s = {args.seconds / cfp_s:.0f}× realtime\n")
    print("| model | device | network s | network ×RT | total s (CFP + net) | total ×RT |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            ck = save_checkpoint(Path(tmp) / f"{kind}.pt", build_model(kind), kind=kind, config={},
                                 feature_hash=grid.feature_hash())
            for dev in devices:
                pred = Predictor(ck, device=dev, batch_size=args.batch_size)
                sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
                net_s = best_of(lambda: pred.bins_from_features(feats), args.repeats, sync)
                tot_s = best_of(lambda: pred.predict_audio(x), args.repeats, sync)
                print(f"| {kind} | {dev} | {net_s:.3f} | {args.seconds / net_s:.1f} | {tot_s:.3f} | "
                      f"{args.seconds / tot_s:.1f} |")


if __name__ == "__main__":
    main()
