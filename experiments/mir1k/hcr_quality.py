"""How good are HCR's pseudo-labels? Score the segments HCR keeps against labels that training never reads.

    python experiments/mir1k/hcr_quality.py --checkpoint runs/aug/s-aug/best.pt --data data_cache/mir1k-validation
    python experiments/mir1k/hcr_quality.py --run runs/mir1k/c-hkdsme-half        # the run's own unlabeled pool

For a model and labeled caches (or a run's --unlabeled caches, which still hold their labels for MIR-1K), this
prints per octave tolerance (bins) and threshold: how many segments HCR keeps and, on those, the pseudo-label's
melody accuracy (within 40 cents on truly voiced frames; hkdsme.train.hcr.PseudoLabelQuality, the numbers the
trainer logs per epoch) and voicing agreement, beside the accuracy over all segments. The tolerance to train with
is picked on validation singers here: the most segments kept at a melody accuracy no worse than the exact rule's
minus 1 point. The last lines are the oracle: the share of segments the true labels themselves would pass.
Analysis only; nothing here feeds back into training.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hkdsme.evaluate.calibrate import load_for_caches
from hkdsme.model import runtime
from hkdsme.train.dataset import SegmentSample, ShardDataset
from hkdsme.train.hcr import PseudoLabelQuality, select_segments
from hkdsme.train.loop import predict_segments


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="run folder: its checkpoint and its --unlabeled pool")
    ap.add_argument("--checkpoint", help="checkpoint (default with --run: RUN/best.pt)")
    ap.add_argument("--data", action="append", default=[], help="cache to score (repeatable; needs labels)")
    ap.add_argument("--tolerances", default="0,1,2,3")
    ap.add_argument("--thresholds", default="0.75,0.5")
    a = ap.parse_args()
    if a.run:
        cfg = json.loads((a.run / "config.json").read_text())
        ds = ShardDataset(cfg["unlabeled"], labeled=False)
        if 0 < int(cfg.get("unlabeled_max", 0)) < len(ds):
            ds = SegmentSample.draw(ds, int(cfg["unlabeled_max"]), int(cfg["seed"]))
        ckpt = Path(a.checkpoint or a.run / "best.pt")
    elif a.data and a.checkpoint:
        ds, ckpt = ShardDataset(a.data, labeled=True), Path(a.checkpoint)
    else:
        ap.error("give --run, or --checkpoint and --data")
    runtime.configure_threads()
    model, meta, precision, cl = load_for_caches(ckpt)
    idx, bins, mask = [], [], []
    for _, b, out in predict_segments(model, ds, np.arange(len(ds)), device=torch.device("cpu"),
                                      precision=precision, batch=64, channels_last=cl):
        idx.append(out.probs.float()[:, :3].argmax(2).to(torch.int16))       # HCR only looks at argmaxes
        bins.append(b["bins"]), mask.append(b["mask"])
    idx, gt, valid = torch.cat(idx).long(), torch.cat(bins), torch.cat(mask)
    onehot = torch.zeros(len(idx), 3, 321, idx.shape[-1])                      # argmaxes as one-hot "probs"
    onehot.scatter_(2, idx.unsqueeze(2), 1.0)
    lab = np.ones(len(idx), bool)
    print(f"{ckpt} (epoch {meta.get('extra', {}).get('epoch')}): {len(ds)} segments, precision {precision}")
    print("| tolerance (bins) | threshold | kept | melody within 40 cents (kept) | voicing agreement (kept) |")
    print("|---:|---:|---:|---:|---:|")
    for tol in map(int, a.tolerances.split(",")):
        for th in map(float, a.thresholds.split(",")):
            keep = select_segments(onehot, th, valid, tolerance=tol)
            q = PseudoLabelQuality()
            q.add(onehot, keep.numpy(), lab, gt, valid)
            s = PseudoLabelQuality.summary([q.c])
            f = lambda v: "n/a" if v is None else f"{v:.1f} %"           # noqa: E731
            print(f"| {tol} | {th} | {int(keep.sum())} ({100 * keep.float().mean():.1f} %) | "
                  f"{f(s['hcr_melody_acc_kept'])} | {f(s['hcr_voicing_agree_kept'])} |")
    print(f"all {len(ds)} segments: melody within 40 cents {f(s['hcr_melody_acc_all'])}")
    voiced = (gt > 0) & valid
    for th in map(float, a.thresholds.split(",")):
        oracle = ((voiced.sum(1) >= th * valid.sum(1)) & (valid.sum(1) > 0)).float().mean().item()
        print(f"oracle at threshold {th}: {100 * oracle:.1f} % of segments pass with the true labels")


if __name__ == "__main__":
    main()
