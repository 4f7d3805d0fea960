"""Does an accompaniment candidate carry singing? Voicing of the project's default model on it, beside controls.

For each file: ``hkdsme.extract_melody`` (the shipped model) on its first ``--seconds`` seconds; prints the
fraction of 10 ms frames the model calls voiced (a lead voice present) and their median f0. Compare candidates
with known instrumentals and known songs given as controls (``--instrumental`` / ``--vocal``): a file whose
voiced fraction is near the songs' rather than the instrumentals' is taken to carry vocals.

Usage: ``python experiments/real/accomp_vocal_check.py FILE... --instrumental F... --vocal F...``
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--instrumental", nargs="*", default=[])
    ap.add_argument("--vocal", nargs="*", default=[])
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()

    import torch

    import hkdsme
    from hkdsme.pipeline import audio as audio_io

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for kind, files in (("control: vocal", args.vocal), ("control: instrumental", args.instrumental),
                        ("candidate", args.files)):
        for f in files:
            x = audio_io.load_audio(f, sr=8000)[: int(args.seconds * 8000)]
            _, f0 = hkdsme.extract_melody(x, sr=8000)
            v = f0 > 0
            med = float(np.median(f0[v])) if v.any() else 0.0
            print(f"{kind:<22} voiced {100 * v.mean():5.1f} %  median f0 {med:6.1f} Hz  {f}", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
