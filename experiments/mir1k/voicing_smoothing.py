"""Would smoothing the voicing probability over time help the voicing decoder? Median / mean filters, θ re-fit.

    python experiments/mir1k/voicing_smoothing.py [--checkpoint CKPT]      # default: the shipped default model

For the plain and the robustness validation caches, the network's per-frame voicing probability 1 − p(row 0) is
filtered over k frames (median or moving mean; k = 1 is today's decoder) and θ is re-calibrated for the maximum
mean OA of the two sets, exactly as ``hkd-eval calibrate`` does. Prints val / robust / mean OA per filter.
Analysis only (validation singers; the test singers are not read).
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from hkdsme.evaluate.calibrate import load_for_caches
from hkdsme.evaluate.models import resolve_checkpoint
from hkdsme.model import runtime
from hkdsme.model.decode import THRESHOLDS, oa_curve
from hkdsme.train.dataset import ShardDataset
from hkdsme.train.loop import cache_outputs


def filters():
    yield "none (today's decoder)", lambda v: v
    for k in (3, 5, 7, 11, 15, 21):
        yield f"median {k}", (lambda k: lambda v: median_filter(v, size=k, mode="nearest"))(k)
    for k in (3, 5, 9, 15):
        yield f"mean {k}", (lambda k: lambda v: uniform_filter1d(v.astype(np.float64), k, mode="nearest"))(k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--plain", default="data_cache/mir1k-validation")
    ap.add_argument("--robust", default="data_cache/mir1k-robust")
    a = ap.parse_args()
    runtime.configure_threads()
    model, _, prec, cl = load_for_caches(resolve_checkpoint(a.checkpoint))
    outs = [cache_outputs(model, ShardDataset([c], labeled=True), precision=prec, channels_last=cl)
            for c in (a.plain, a.robust)]
    print("| voicing filter | θ | val OA | robust OA | mean |")
    print("|---|---:|---:|---:|---:|")
    for label, fn in filters():
        va, ro = (oa_curve([(r, fn(v), h) for r, v, h, _ in o])[1] for o in outs)
        i = int(np.argmax((va + ro) / 2))
        print(f"| {label} | {THRESHOLDS[i]:.3f} | {100 * va[i]:.2f} | {100 * ro[i]:.2f} | "
              f"{50 * (va[i] + ro[i]):.2f} |")


if __name__ == "__main__":
    main()
