"""Which monophonic f0 tracker labels isolated singing best? Measured on MIR-1K's voice channel.

Audio: channel 1 (voice) of MIR-1K validation clips (the files are 8 kHz), resampled 8 → 16 kHz with soxr HQ
(``hkdsme.pipeline.audio.resample``) inside ``f0_tracker.track``; above 4 kHz the input is therefore empty.
Reference: the manual ``.pv`` labels (``Track.load_f0``, 20 ms). Estimates: ``f0_tracker.track`` (10 ms), unvoiced
frames passed to mir_eval as NEGATIVE f0 so that RPA judges the pitch in every reference-voiced frame whatever
the voicing decision (MIREX convention). Metrics: ``mir_eval.melody.evaluate`` per clip (VR, VFA, RPA at 50
cents, OA), averaged over clips.

Voicing threshold of each tracker: chosen on the clips of singer ``--calib`` (grid 0.05 … 0.95, highest mean
OA) and reported on the OTHER singer's clips (the check half). Speed: seconds of audio per second of wall time,
one thread (``torch.set_num_threads(1)``, SwiftF0 one ONNX thread), on whatever else the machine runs.
Threshold grid: 0.01, 0.02, 0.05, 0.10, … 0.95.

Second check, free of any training overlap (CREPE was trained on MIR-1K labels, PESTO's shipped checkpoint
self-supervised on MIR-1K audio): a synthetic voice (8 harmonics, 1/k amplitudes, ±50 c vibrato at 5.5 Hz on
notes at 220, 523 and 110 Hz separated by digital silence; the generator of ``tests/test_f0_tracker.py``):
median and max |cents| error on frames ≥ 60 ms inside the notes, at the tracker's chosen threshold.

Subset: ``--per-singer N`` evenly spaced clips of each validation singer (sorted ids), ``0`` = all 92.
Usage: ``python experiments/real/tracker_choice.py --root ../shared/data/MIR-1K [--trackers swift,pyin]``
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def subset(tracks, per_singer: int):
    by = {}
    for t in sorted(tracks, key=lambda t: t.track_id):
        by.setdefault(t.track_id.split("_", 1)[0], []).append(t)
    if per_singer <= 0:
        return by
    return {s: [ts[int(i)] for i in np.linspace(0, len(ts) - 1, min(per_singer, len(ts))).round()]
            for s, ts in by.items()}


def synthetic(sr=16000):
    """(audio, f0 function, interior-voiced mask function) of the synthetic voice (see the module doc)."""
    from hkdsme.pipeline.synthetic import VIBRATO_NOTES, vibrato_f0, vibrato_voice

    inside = lambda tt: np.any([(tt >= a + 0.06) & (tt <= b - 0.06) for a, b, _ in VIBRATO_NOTES], axis=0)  # noqa: E731
    return vibrato_voice(sr), vibrato_f0, inside


def metrics(ref_t, ref_f, t, f0, conf, th):
    import mir_eval

    est = np.where(conf >= th, f0, -f0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = mir_eval.melody.evaluate(ref_t, ref_f, t, est)
    return np.array([m["Voicing Recall"], m["Voicing False Alarm"], m["Raw Pitch Accuracy"],
                     m["Overall Accuracy"]])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="../shared/data/MIR-1K")
    ap.add_argument("--trackers", default="swift,pyin,pyin31,crepe-tiny,pesto")
    ap.add_argument("--per-singer", type=int, default=12)
    ap.add_argument("--calib", default="Kenshin", help="singer whose clips choose the threshold")
    args = ap.parse_args()

    import torch

    from hkdsme.pipeline import audio as audio_io
    from hkdsme.pipeline import f0_tracker as ft
    from hkdsme.pipeline.datasets import list_tracks

    torch.set_num_threads(1)
    groups = subset(list_tracks("mir1k", args.root, split="validation"), args.per_singer)
    clips = []
    for singer, ts in groups.items():
        for tr in ts:
            x, sr = audio_io.load_multichannel(tr.audio_path)
            clips.append((singer, tr.track_id, x[:, 1].copy(), sr, *tr.load_f0()))
    dur = sum(c[2].size / c[3] for c in clips)
    print(f"{len(clips)} clips ({', '.join(f'{s}: {len(v)}' for s, v in groups.items())}), {dur:.1f} s of voice "
          f"at {clips[0][3]} Hz; threshold chosen on {args.calib}, reported on the others")
    ths = np.round(np.r_[0.01, 0.02, np.arange(0.05, 0.951, 0.05)], 2)
    sx, sf0, sin = synthetic()
    rows = []
    for name in args.trackers.split(","):
        ft.track(0.1 * np.sin(np.arange(16000, dtype=np.float32) * 0.1), 16000, name)  # load / JIT
        outs, wall = [], 0.0
        for singer, tid, v, sr, rt, rf in clips:
            t0 = time.perf_counter()
            t, f0, conf = ft.track(v, sr, name)
            wall += time.perf_counter() - t0
            outs.append((singer, rt, rf, t, f0, conf))
        cal = [o for o in outs if o[0] == args.calib]
        chk = [o for o in outs if o[0] != args.calib]
        oa = [np.mean([metrics(*o[1:], th)[3] for o in cal]) for th in ths]
        th = float(ths[int(np.argmax(oa))])
        m_chk = np.mean([metrics(*o[1:], th) for o in chk], axis=0)
        m_cal = np.mean([metrics(*o[1:], th) for o in cal], axis=0)
        m_doc = np.mean([metrics(*o[1:], ft.THRESHOLDS[name]) for o in chk], axis=0)
        t, f0, conf = ft.track(sx, 16000, name)
        v = sin(t)
        f = ft.voiced_f0(f0, conf, th)[v]
        cents = np.abs(1200 * np.log2(np.where(f > 0, f, 1.0) / sf0(t)[v]))[f > 0]
        syn = (np.median(cents), cents.max(), 100 * (f == 0).mean())
        rows.append((name, th, m_chk, m_cal, m_doc, dur / wall, syn))
        print(f"  {name}: threshold {th:.2f}, check OA {100 * m_chk[3]:.1f}, {dur / wall:.1f}x realtime", flush=True)
    print()
    print(f"{'tracker':<11} {'θ':>5} | {'VR':>5} {'VFA':>5} {'RPA':>5} {'OA':>5} (check half) | "
          f"{'OA calib':>8} | {'OA θ lib':>8} | synthetic: {'med c':>5} {'max c':>5} {'miss %':>6} | {'x realtime':>10}")
    for name, th, m, mc, md, speed, syn in rows:
        print(f"{name:<11} {th:>5.2f} | {100 * m[0]:5.1f} {100 * m[1]:5.1f} {100 * m[2]:5.1f} {100 * m[3]:5.1f}"
              f"              | {100 * mc[3]:8.1f} | {100 * md[3]:8.1f} |            {syn[0]:5.1f} {syn[1]:5.1f} "
              f"{syn[2]:6.1f} | {speed:10.1f}")
    print("OA θ lib: check half at the threshold f0_tracker.THRESHOLDS ships")


if __name__ == "__main__":
    main()
