"""One table of this machine's speed: train steps, inference, predict and CFP, named by CPU capability.

Prints, for the CPU it runs on (its name, torch's vector level, native bf16 or not, threads):

1. training step (forward + loss + backward + Adam) ms/segment of the student and the teacher in
   fp32 / fp32 channels_last / bf16 / bf16 channels_last (``benchmarks/bench_models.py``'s step);
2. inference ms/segment of the student per memory format, precision and batch size (what predict, validation,
   HCR and the teacher cache run);
3. predict end to end (CFP + network, the package's defaults) and CFP alone as × realtime;
4. how compute-bound inference is: FLOPs per segment (``torch.utils.flop_counter``) and the GFLOP/s one thread
   reaches with the package's defaults — compare with the core's peak (AVX2: 2 FMA units × 8 fp32 lanes × 2 =
   32 FLOP per cycle) to see what any kernel-level speed-up could still give.

``auto`` precision and the memory format the package picks here are marked with ``*``.

    python benchmarks/bench_all.py                  # everything (~5 min on 2 AVX2 cores)
    python benchmarks/bench_all.py --quick          # smaller batches, fewer repeats
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_all.py   # an AVX2-only CPU, emulated

The last line shows how to measure an AVX2-only CPU on a newer one: oneDNN and ATen are capped at AVX2, so
bf16 is emulated exactly as on such a CPU (the package's ``auto`` sees the cap and picks fp32).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import step_ms  # noqa: E402
from bench_predict import audio  # noqa: E402

from hkdsme.evaluate.inference import Predictor, streamed_cfp  # noqa: E402
from hkdsme.model import runtime  # noqa: E402
from hkdsme.model.checkpoint import build_model, save_checkpoint  # noqa: E402
from hkdsme.pipeline import grid  # noqa: E402

TRAIN_MODES = ("fp32", "channels_last", "bf16", "bf16+channels_last")


def infer_ms(kind: str, precision: str, channels_last: bool, batch: int, seconds: float) -> float:
    """ms per segment of an eval-mode forward pass (best of repeated passes for ``seconds``)."""
    torch.manual_seed(0)
    model = build_model(kind).eval()
    if getattr(model, "heads", False):
        model.heads = False
    x = torch.rand(batch, 3, 320, 64)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    best = float("inf")
    with torch.inference_mode(), cast:
        model(x)
        t_end = time.perf_counter() + seconds
        while True:
            t0 = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - t0)
            if time.perf_counter() > t_end:
                break
    return best / batch * 1e3


def flops_per_segment(kind: str) -> float:
    """FLOPs of one eval-mode forward of one segment (convolutions and matmuls, as torch's flop counter counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(kind).eval()
    if getattr(model, "heads", False):
        model.heads = False
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.rand(1, 3, 320, 64))
    return float(counter.get_total_flops())


def best_of(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 4 train steps, shorter timings")
    ap.add_argument("--train-batch", type=int, default=None, help="default 8 (4 with --quick)")
    ap.add_argument("--models", nargs="+", default=["student", "teacher"], choices=["student", "teacher"])
    ap.add_argument("--seconds", type=float, default=60.0, help="audio length for predict / CFP")
    ap.add_argument("--skip-train", action="store_true", help="only inference, predict and CFP")
    ap.add_argument("--all", action="store_true",
                    help="also time bf16 inference where bf16 is emulated (minutes per row)")
    args = ap.parse_args()
    runtime.keep_freed_memory()      # as the hkd-* commands do (HKDSME_MALLOC=system: glibc's default)
    threads = runtime.configure_threads()
    tb = args.train_batch or (4 if args.quick else 8)
    auto = runtime.resolve_precision("auto", "cpu")
    caps = {k: v for k, v in os.environ.items() if k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    print(f"# {runtime.describe()}")
    print(f"# flags: {' '.join(sorted(f for f in runtime.cpu_flags() if f.startswith(('avx', 'amx'))))}"
          + (f"; capped by {caps}" if caps else ""))
    print(f"# auto precision here: {auto.name} ({auto.reason}); {threads} threads; freed memory "
          f"{'kept for reuse' if runtime.keep_freed_memory() else 'returned (glibc default)'}\n")

    if not args.skip_train:
        print(f"## training step, batch {tb} (1 warm-up + 1 timed step)\n")
        print("| model | mode | ms/step | ms/segment |")
        print("|---|---|---:|---:|")
    for kind in args.models if not args.skip_train else ():
        for mode in TRAIN_MODES:
            ms = step_ms(kind, mode, tb, 1, 1)
            cl = runtime.use_channels_last("cpu", kind, "bf16" if mode.startswith("bf16") else "fp32")
            mark = "*" if (mode.startswith("bf16") == (auto.name == "bf16") and ("channels_last" in mode) == cl) else ""
            print(f"| {kind} | {mode}{mark} | {ms:.0f} | {ms / tb:.1f} |", flush=True)

    print("\n## inference (eval forward), ms/segment\n")
    batches = (4, 8, 16) if args.quick else (4, 8, 16, 32)
    print("| model | precision | layout | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|---|---|" + "---:|" * len(batches))
    secs = 1.0 if args.quick else 2.0
    for kind in args.models:
        for prec in ("fp32", "bf16"):
            if prec == "bf16" and auto.name != "bf16" and not args.all:
                print(f"| {kind} | bf16 | (emulated: see the training rows; --all times it) | "
                      + " | ".join("–" for _ in batches) + " |")
                continue
            for cl in (False, True):
                row = [infer_ms(kind, prec, cl, b, secs) for b in batches]
                mark = "*" if (prec == auto.name and cl == runtime.use_channels_last("cpu", kind, prec)) else ""
                print(f"| {kind} | {prec}{mark} | {'channels_last' if cl else 'contiguous'} | "
                      + " | ".join(f"{v:.1f}" for v in row) + " |", flush=True)

    x = audio(args.seconds)
    cfp_s = best_of(lambda: streamed_cfp(x), 1 if args.quick else 3)
    print(f"\n## predict, {args.seconds:g} s of audio (package defaults: {auto.name}, channels_last, batch "
          f"{runtime.inference_batch('cpu', auto.name)})\n")
    print("| stage | s | × realtime |")
    print("|---|---:|---:|")
    print(f"| CFP | {cfp_s:.3f} | {args.seconds / cfp_s:.0f} |")
    with tempfile.TemporaryDirectory() as tmp:
        preds = {kind: Predictor(save_checkpoint(Path(tmp) / f"{kind}.pt", build_model(kind), kind=kind, config={},
                                                 feature_hash=grid.feature_hash()))
                 for kind in args.models}          # random weights: speed does not depend on them
        for kind, pred in preds.items():
            tot = best_of(lambda: pred.predict_audio(x), 1 if args.quick else 3)
            print(f"| CFP + {kind} | {tot:.3f} | {args.seconds / tot:.1f} |", flush=True)

        print("\n## compute-bound check: the predictor's network on one thread (its precision, layout, batch)\n")
        print("| model | GFLOP/segment | ms/segment | GFLOP/s per thread |")
        print("|---|---:|---:|---:|")
        torch.set_num_threads(1)
        for kind, pred in preds.items():       # logits only, in-place SELU: exactly what predict runs
            xs = torch.rand(pred.batch_size, 3, 320, 64).contiguous(
                memory_format=torch.channels_last if pred.channels_last else torch.contiguous_format)
            with torch.inference_mode(), runtime.autocast(pred.precision, pred.device):
                s = best_of(lambda: pred.model(xs), 2 if args.quick else 5)
            ms = s / pred.batch_size * 1e3
            gf = flops_per_segment(kind) / 1e9
            print(f"| {kind} | {gf:.3f} | {ms:.1f} | {gf / ms * 1e3:.0f} |", flush=True)
        torch.set_num_threads(threads)
    _ = np  # numpy is imported for bench_predict's audio()


if __name__ == "__main__":
    main()
