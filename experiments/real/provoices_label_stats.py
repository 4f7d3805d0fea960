"""Voiced fraction and f0 range of the pro-voices labels, per voice type named in the file names.

Voice type: the first of Soprano / Alto / Tenor / Bass in the file name (GTSinger ``EN-Alto-2-…``, M4Singer
``samples_Tenor-2_1``), M4Singer ``ref_f*`` / ``ref_m*`` → female / male; otherwise "unnamed (<corpus>)" (most
GTSinger language demos and M4Singer SVS clips do not say). f0 percentiles over voiced frames.
Usage: ``python experiments/real/provoices_label_stats.py data_cache/pro-voices-f0``
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np


def voice_type(track_id: str) -> str:
    m = re.search(r"(Soprano|Alto|Tenor|Bass)", track_id)
    if m:
        return m.group(1).lower()
    m = re.search(r"ref_(f|m)\d", track_id)
    if m:
        return {"f": "female", "m": "male"}[m.group(1)]
    corpus = track_id.split("__")[1] if track_id.startswith("audio__") else track_id.split("__")[0]
    return f"unnamed ({corpus})"


def main():
    from hkdsme.pipeline.f0_tracker import SUFFIX, read_f0_csv

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "data_cache/pro-voices-f0")
    groups: dict[str, list] = {}
    for p in sorted(folder.glob(f"*{SUFFIX}")):
        _, f, _ = read_f0_csv(p)
        groups.setdefault(voice_type(p.name[: -len(SUFFIX)]), []).append(f)
    print(f"{'voice type':<22} {'clips':>5} {'minutes':>7} {'voiced':>7} {'f0 p5':>6} {'p50':>5} {'p95':>5} "
          f"{'min':>5} {'max':>5}  (Hz)")
    total = np.concatenate([f for fs in groups.values() for f in fs])
    for name, fs in sorted(groups.items()) + [("all", [total])]:
        f = np.concatenate(fs)
        v = f[f > 0]
        n = len(fs) if name != "all" else sum(len(x) for x in groups.values())
        print(f"{name:<22} {n:>5} {f.size / 6000:7.1f} {100 * v.size / f.size:6.1f}% "
              f"{np.percentile(v, 5):6.0f} {np.median(v):5.0f} {np.percentile(v, 95):5.0f} {v.min():5.0f} "
              f"{v.max():5.0f}")


if __name__ == "__main__":
    main()
