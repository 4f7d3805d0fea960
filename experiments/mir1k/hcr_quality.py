"""How good are HCR's pseudo-labels? Score the segments HCR keeps against the labels the run never saw.

    python experiments/mir1k/hcr_quality.py runs/mir1k/c-hkdsme-half [--checkpoint best.pt]

The MIR-1K "unlabeled" caches still hold their labels (the trainer never reads ``bins`` of --unlabeled data),
so for the run's own unlabeled sample (same caches, seed and --unlabeled-max) this prints, per octave tolerance
(bins) and threshold: how many segments HCR keeps, and on those the melody's agreement with the hidden truth
(within 2 bins = 40 cents, on truly voiced frames) and the voicing agreement. The last line is the oracle:
the share of segments that the true labels themselves would pass (≥ threshold of valid frames voiced).
Analysis only; nothing here feeds back into training.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hkdsme.model.checkpoint import load_checkpoint
from hkdsme.train.dataset import SegmentSample, ShardDataset
from hkdsme.train.hcr import select_segments
from hkdsme.train.loop import predict_segments


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--checkpoint", default="best.pt")
    ap.add_argument("--tolerances", default="0,1,2,3")
    ap.add_argument("--thresholds", default="0.75,0.5")
    a = ap.parse_args()
    cfg = json.loads((a.run / "config.json").read_text())
    unl = ShardDataset(cfg["unlabeled"], labeled=False)
    if 0 < int(cfg.get("unlabeled_max", 0)) < len(unl):
        unl = SegmentSample.draw(unl, int(cfg["unlabeled_max"]), int(cfg["seed"]))
    model, meta = load_checkpoint(a.run / a.checkpoint)
    model = model.to(memory_format=torch.channels_last)
    probs, bins, mask = [], [], []
    with torch.no_grad():
        for _, b, out in predict_segments(model, unl, np.arange(len(unl)), device=torch.device("cpu"), precision="bf16",
                                          batch=64, channels_last=True):
            probs.append(out.probs.float()[:, :3].argmax(2).to(torch.int16))   # keep argmaxes only
            bins.append(b["bins"]), mask.append(b["mask"])
    idx, gt, valid = torch.cat(probs).long(), torch.cat(bins), torch.cat(mask)
    # rebuild one-hot "logits" of the argmaxes: select_segments only looks at argmaxes
    onehot = torch.zeros(len(idx), 3, 321, idx.shape[-1])
    onehot.scatter_(2, idx.unsqueeze(2), 1.0)
    m = idx[:, 0]
    voiced = (gt > 0) & valid
    print(f"{a.run / a.checkpoint} (epoch {meta.get('extra', {}).get('epoch')}): {len(unl)} unlabeled segments")
    print("| tolerance (bins) | threshold | kept | melody within 40 cents (kept) | voicing agreement (kept) |")
    print("|---:|---:|---:|---:|---:|")
    for tol in map(int, a.tolerances.split(",")):
        for th in map(float, a.thresholds.split(",")):
            keep = select_segments(onehot, th, valid, tolerance=tol)
            v = voiced[keep]
            rpa = (((m - gt).abs() <= 2) & voiced)[keep].sum().item() / max(v.sum().item(), 1)
            va = (((m > 0) == (gt > 0)) & valid)[keep].sum().item() / max(valid[keep].sum().item(), 1)
            print(f"| {tol} | {th} | {int(keep.sum())} | {100 * rpa:.1f} % | {100 * va:.1f} % |")
    rpa_all = (((m - gt).abs() <= 2) & voiced).sum().item() / voiced.sum().item()
    print(f"all {len(unl)} segments: melody within 40 cents {100 * rpa_all:.1f} %")
    for th in map(float, a.thresholds.split(",")):
        oracle = ((voiced.sum(1) >= th * valid.sum(1)) & (valid.sum(1) > 0)).float().mean().item()
        print(f"oracle at threshold {th}: {100 * oracle:.1f} % of segments pass with the true labels")


if __name__ == "__main__":
    main()
