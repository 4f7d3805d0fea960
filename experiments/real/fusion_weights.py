"""Fusion weight of the ensemble teacher, chosen on the dev sets (docs/results.md, "Real music").

For W in a grid, the melody posteriors of two models are fused frame by frame, p = W·p_a + (1 − W)·p_b (as
:class:`hkdsme.model.ensemble.TeacherEnsemble` does for the melody channel), decoded with the voicing decoder
at θ = 0.5 and scored on each cache: MIR-1K validation and robustness validation (OA, 50 cents) and the UltraStar
dev songs (OAc, 100 cents, short note gaps excluded: the real-mix dev score). Each model runs once per cache;
fusion is then numpy.

    python experiments/real/fusion_weights.py --a hkdsme/weights/ftanet.pt --b hkdsme/weights/msnet-vocal.pt \
        --cache data_cache/mir1k-validation --cache data_cache/mir1k-robust --cache data_cache/ultrastar-dev
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def melody_probs(checkpoint, cache, device="cpu"):
    """Per track: (reference Hz, melody posterior (321, T) float32) of ``checkpoint`` on ``cache``."""
    from hkdsme.evaluate.calibrate import load_for_caches
    from hkdsme.train.dataset import ShardDataset
    from hkdsme.train.loop import predict_segments

    model, _, precision, cl = load_for_caches(checkpoint, device=device)
    ds = ShardDataset([cache], labeled=True)
    out = []
    with torch.inference_mode():
        for t in range(len(ds.paths)):
            seg = ds.track_segments(t)
            ps, masks = [], []
            for _, b, o in predict_segments(model, ds, seg, device=device, precision=precision, batch=16,
                                            channels_last=cl):
                p = torch.softmax(o.logits[:, 0].float(), dim=1)          # (B, 321, 64)
                ps.append(p.permute(1, 0, 2).reshape(321, -1).cpu().numpy())
                masks.append(b["mask"].reshape(-1).numpy())
            m = np.concatenate(masks)
            n, ref = ds.track_reference(t)
            out.append((ref, np.concatenate(ps, axis=1)[:, m][:, :n]))
    return out


def score(tracks_a, tracks_b, w, tol, chroma):
    from hkdsme.model.decode import f0_from_voicing, voicing_and_pitch
    from hkdsme.pipeline.grid import frame_times
    from hkdsme.pipeline.ultrastar import note_gap_mask

    accs = []
    for (ref, pa), (_, pb) in zip(tracks_a, tracks_b):
        p = w * pa + (1 - w) * pb
        v, hz = voicing_and_pitch(p[None], logits=False)
        est = f0_from_voicing(v, hz, 0.5)
        rv, ev = ref > 0, est > 0
        ok = np.zeros_like(rv)
        both = rv & ev
        d = 1200 * np.log2(est[both] / ref[both])
        if chroma:
            d = d - 1200 * np.round(d / 1200)
        ok[both] = np.abs(d) < tol
        keep = ~note_gap_mask(frame_times(ref.size), ref) if chroma else slice(None)   # the dev score's exclusion
        accs.append(np.mean(np.where(rv, ok, ~ev)[keep]))
    return 100 * float(np.mean(accs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--cache", action="append", required=True)
    ap.add_argument("--weights", default="0,0.25,0.4,0.5,0.6,0.75,1")
    args = ap.parse_args()
    ws = [float(x) for x in args.weights.split(",")]
    rows = {w: [] for w in ws}
    names = []
    for cache in args.cache:
        real = "ultrastar" in cache
        tol, chroma = (100.0, True) if real else (50.0, False)
        names.append(f"{cache.rstrip('/').split('/')[-1]} ({'OAc 100c' if real else 'OA'})")
        ta, tb = melody_probs(args.a, cache), melody_probs(args.b, cache)
        for w in ws:
            rows[w].append(score(ta, tb, w, tol, chroma))
    print(f"W = weight of {args.a}; 1 − W of {args.b}; voicing decoder θ = 0.5")
    print("| W | " + " | ".join(names) + " | mean |")
    print("|---:|" + "---:|" * (len(names) + 1))
    for w in ws:
        print(f"| {w:g} | " + " | ".join(f"{x:.2f}" for x in rows[w]) + f" | {np.mean(rows[w]):.2f} |")


if __name__ == "__main__":
    main()
