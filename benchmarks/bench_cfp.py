"""CFP speed on one thread: fast ``hkdsme.pipeline.cfp`` vs the plain per-frame implementation.

    python benchmarks/bench_cfp.py [--seconds 30] [--repeats 5] [--cpu 0]

Input: the synthetic signal of shared/reference/cfp/README.md (220 Hz vibrato tone, 5 harmonics, noise), 30 s.
Both implementations run once as warm-up (numba compile / cache load), then ``--repeats`` times; the table shows
the median wall time, the median CPU time of this process, and × real time (audio seconds / wall seconds).
BLAS/OpenMP pools are pinned to 1 thread before numpy is imported; ``--cpu`` pins the process to one core.
On a shared machine wall time includes waiting for the core; the CPU column and the load average say how much.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from hkdsme.pipeline import cfp as fast  # noqa: E402
from hkdsme.pipeline import _cfp_reference as plain  # noqa: E402


def synth(n: int) -> np.ndarray:
    t = np.arange(n) / 8000.0
    phi = 2 * np.pi * 220 * t + 0.88 * (1 - np.cos(2 * np.pi * 5 * t))
    x = 0.1 * sum(np.sin(h * phi) / h for h in range(1, 6))
    return (x + 0.01 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)


def measure(fn, x, repeats: int) -> tuple[float, float]:
    fn(x)                                   # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(x)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=None, help="pin to this core (os.sched_setaffinity)")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    x = synth(int(args.seconds * 8000))

    rows = []
    with threadpool_limits(1):
        for name, fn in [("fast  cfp.cfp", fast.cfp), ("plain _cfp_reference.cfp_reference", plain.cfp_reference)]:
            wall, cpu = measure(fn, x, args.repeats)
            rows.append((name, wall, cpu))
    err = np.abs(fast.cfp(x) - plain.cfp_reference(x)).max()

    print(f"CFP of {args.seconds:g} s synthetic audio (T = {fast.cfp(x).shape[2]} frames), 1 thread, "
          f"median of {args.repeats}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"| implementation | wall s | cpu s | × realtime (wall) | × realtime (cpu) |")
    print(f"|---|---|---|---|---|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.4f} | {cpu:.4f} | {args.seconds / wall:.0f}× | {args.seconds / cpu:.0f}× |")
    print(f"speed-up fast vs plain: {rows[1][1] / rows[0][1]:.1f}× (wall), {rows[1][2] / rows[0][2]:.1f}× (cpu); "
          f"max |W_fast - W_plain| = {err:.2e}")


if __name__ == "__main__":
    main()
