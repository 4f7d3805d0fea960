"""Training-step cost of the student and teacher on CPU: ms per step and per segment.

One step = forward + simple loss (cross-entropy over frequency of the melody channel, plus the student's
three heads) + backward + Adam step, on a (B, 3, 320, 64) random batch. Compared: fp32 (contiguous),
fp32 channels_last, bf16 autocast (contiguous and channels_last).

    python benchmarks/bench_models.py                 # batch 32, 1 warm-up + 2 timed steps
    python benchmarks/bench_models.py --steps 5 --models student
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from hkdsme.model.checkpoint import build_model

MODES = ("fp32", "channels_last", "bf16", "bf16+channels_last")


def step_ms(kind: str, mode: str, batch: int, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = build_model(kind).train()
    x = torch.rand(batch, 3, 320, 64)
    target = torch.randint(0, 321, (batch, 64))
    if "channels_last" in mode:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if mode.startswith("bf16") else contextlib.nullcontext()

    def one_step():
        opt.zero_grad(set_to_none=True)
        with cast:
            out = model(x)
            maps = (out.logits,) + tuple(out.aux_logits)
            loss = sum(torch.nn.functional.cross_entropy(m[:, 0].float(), target) for m in maps)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--models", nargs="+", default=["student", "teacher"], choices=["student", "teacher"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    print(f"{'model':8} {'mode':20} {'ms/step':>10} {'ms/segment':>11}")
    for kind in args.models:
        for mode in MODES:
            ms = step_ms(kind, mode, args.batch, args.steps, args.warmup)
            print(f"{kind:8} {mode:20} {ms:10.0f} {ms / args.batch:11.1f}", flush=True)


if __name__ == "__main__":
    main()
