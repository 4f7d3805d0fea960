"""The student network alone in fp32 and int8, ms per 64-frame segment, at several batch sizes.

Input: the normalised CFP of a real song (``--audio``) or of a synthetic one; the embedded default model (or
``--model``). One thread (as each ``hkd-eval predict`` worker on a 2-core CPU), rounds interleaved so that drift
of the machine's speed hits every configuration alike; the best and worst round are printed. Where the int8
engine is missing, only fp32 runs.

    python benchmarks/bench_int8.py --audio ../shared/data/unlabeled-songs/audio/Brad-Sucks--Total-Breakdown.flac
    python benchmarks/bench_int8.py --batches 1 4 16 --rounds 5
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def segments(feats: np.ndarray, n: int) -> torch.Tensor:
    """(n, 3, 320, 64) channels_last: ``n`` consecutive segments from the middle of (3, 320, T) features."""
    from hkdsme.pipeline import grid

    t = feats.shape[-1]
    if t < n * grid.SEG_LEN:
        raise SystemExit(f"the audio gives {t} frames, fewer than {n} segments of {grid.SEG_LEN}")
    a = (t - n * grid.SEG_LEN) // 2
    x = feats[:, :, a:a + n * grid.SEG_LEN].reshape(3, grid.N_FREQ, n, grid.SEG_LEN).transpose(2, 0, 1, 3)
    return torch.from_numpy(np.ascontiguousarray(x)).contiguous(memory_format=torch.channels_last)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", help="an audio file (default: a 60 s synthetic song)")
    ap.add_argument("--model", default="hkdsme")
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--segments", type=int, default=32, help="segments timed per configuration and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from hkdsme.evaluate.inference import Predictor
    from hkdsme.model import int8, runtime
    from hkdsme.pipeline.audio import load_audio
    from hkdsme.pipeline.synthetic import make_song

    runtime.keep_freed_memory()
    nets = {"fp32": Predictor(model=args.model, precision="fp32")}
    if int8.engine_available():
        nets["int8"] = Predictor(model=args.model, precision="int8")
    torch.set_num_threads(1)          # Predictor configures this process's threads; the benchmark wants one
    x = load_audio(args.audio, sr=8000) if args.audio else make_song(0, duration=60.0)[0]
    batch = segments(nets["fp32"]._front(x)[2], args.segments)

    configs = [(p, b) for p in nets for b in args.batches]
    times: dict = {c: [] for c in configs}
    with torch.inference_mode():
        for p, b in configs:                                   # warm-up: oneDNN's first-call kernels
            nets[p].model(batch[:b])
        for _ in range(args.rounds):
            for p, b in configs:
                t0 = time.perf_counter()
                for s in range(0, args.segments, b):
                    nets[p].model(batch[s:s + b])
                times[(p, b)].append((time.perf_counter() - t0) / args.segments * 1000)
    print(f"# {runtime.cpu_name()}; torch {torch.__version__} CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; one thread; {args.model}; "
          f"{args.audio or 'a 60 s synthetic song'}; {args.rounds} interleaved rounds of {args.segments} segments\n")
    print("| precision | batch | ms / segment (best) | worst round |")
    print("|---|---:|---:|---:|")
    for p, b in configs:
        print(f"| {p} | {b} | {min(times[(p, b)]):.2f} | {max(times[(p, b)]):.2f} |")


if __name__ == "__main__":
    main()
