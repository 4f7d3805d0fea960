"""Calibrate the voicing threshold θ of a checkpoint on labeled caches (``hkd-eval calibrate``).

For each cache (a validation set: never the test singers), the network's per-frame voicing probability and
refined pitch are computed once; θ is chosen on a grid 0.05…0.95 (step 0.025) for the maximum of the mean over
caches of each cache's mean OA (:func:`hkdsme.train.loop.calibrate_on_sets`). ``write=True`` stores θ in the
checkpoint (``extra["voicing_threshold"]``, atomic rewrite), where predict and report pick it up.
"""
from __future__ import annotations

from pathlib import Path


def load_for_caches(checkpoint, device="cpu", precision="auto"):
    """A checkpoint ready to score labeled caches (:func:`hkdsme.train.loop.cache_outputs`) on this machine:
    ``(model, meta, precision name, channels_last)``, the precision and memory format chosen as everywhere
    (:mod:`hkdsme.model.runtime`); features must match this version's (``InputError`` naming the file if not)."""
    import torch

    from hkdsme.model import runtime
    from hkdsme.model.checkpoint import load_checkpoint
    from hkdsme.pipeline import grid

    device = torch.device(device)
    prec = runtime.resolve_precision(precision, device).name
    model, meta = load_checkpoint(checkpoint, expected_feature_hash=grid.feature_hash(), map_location=device)
    cl = runtime.use_channels_last(device, meta["kind"], prec)
    model = model.to(device, memory_format=torch.channels_last if cl else torch.contiguous_format)
    return model, meta, prec, cl


def calibrate_checkpoint(checkpoint, caches, *, write: bool = False, device="cpu", precision="auto",
                         batch: int = 64, progress: bool | None = None) -> dict:
    """Returns ``{"theta", "caches": {name: {"argmax": scores, "voicing@0.5": scores, "voicing@θ": scores}}}``."""
    import sys

    import torch

    from hkdsme.model.checkpoint import save_checkpoint
    from hkdsme.pipeline import grid
    from hkdsme.train.dataset import ShardDataset
    from hkdsme.train.loop import cache_outputs, calibrate_on_sets, score_outputs

    if progress is None:
        progress = sys.stderr.isatty()
    if not caches:
        raise ValueError("give at least one labeled cache (--cache)")
    device = torch.device(device)
    model, meta, prec, cl = load_for_caches(checkpoint, device, precision)
    sets = {str(c): ShardDataset([c], labeled=True, expected_hash=grid.feature_hash()) for c in caches}
    outs = {n: cache_outputs(model, ds, device=device, precision=prec, batch=batch, channels_last=cl,
                             progress=progress)
            for n, ds in sets.items()}
    theta, _ = calibrate_on_sets(outs)
    res = {"theta": theta, "precision": prec, "caches": {}}
    for n, ds in sets.items():
        res["caches"][n] = {
            "argmax": score_outputs(ds, outs[n], decode="argmax")[0],
            "voicing@0.5": score_outputs(ds, outs[n], decode="voicing", threshold=0.5)[0],
            f"voicing@{theta:g}": score_outputs(ds, outs[n], decode="voicing", threshold=theta)[0]}
    if write:
        extra = dict(meta.get("extra") or {})
        extra["voicing_threshold"] = theta
        extra["voicing_calibrated_on"] = [Path(c).name for c in caches]
        net = model.to("cpu", memory_format=torch.contiguous_format)    # same weights, the file's layout
        save_checkpoint(checkpoint, net, kind=meta["kind"], config=meta.get("config") or {},
                        feature_hash=meta["feature_hash"], metrics=meta.get("metrics"), extra=extra)
    return res


def calibrate_int8(checkpoint, audio, *, write: bool = False, segments_per_file: int = 64,
                   progress: bool | None = None) -> dict:
    """Measure the activation ranges of ``checkpoint``'s int8 network (:func:`hkdsme.model.int8.calibrate`) on
    the normalised CFP of the audio files ``audio`` (real music: the ranges should cover what users will feed);
    up to ``segments_per_file`` 64-frame segments per file, evenly spread. ``write=True`` stores the result in
    the checkpoint (``extra["int8"]``, atomic rewrite; the fp32 weights are unchanged, so fp32 output is too).
    Returns the calibration dict. A file that cannot be read is an :class:`InputError` naming it."""
    import sys

    import numpy as np
    import torch
    from tqdm import tqdm

    from hkdsme.evaluate.inference import Predictor
    from hkdsme.model import int8
    from hkdsme.model.checkpoint import load_checkpoint, save_checkpoint
    from hkdsme.pipeline import grid

    if progress is None:
        progress = sys.stderr.isatty()
    audio = list(audio)
    if not audio:
        raise ValueError("give at least one audio file to calibrate on")
    model, meta = load_checkpoint(checkpoint, expected_feature_hash=grid.feature_hash())
    if meta.get("kind") != "student":
        raise ValueError(f"{Path(checkpoint).name}: int8 is for the student network, this is a {meta.get('kind')}")
    pred = Predictor(checkpoint, precision="fp32", front_end="cfp-8k")

    def batches():
        for path in tqdm(audio, desc="int8 calibration", unit="file", disable=not progress):
            _, n, feats, _ = pred._front_file(path)
            if feats is None:
                raise ValueError(f"{path}: longer than {pred.max_held_frames} frames; calibrate on shorter files")
            n_seg = n // grid.SEG_LEN
            if n_seg == 0:
                continue
            picks = np.unique(np.linspace(0, n_seg - 1, min(segments_per_file, n_seg)).round().astype(int))
            seg = feats[:, :, :n_seg * grid.SEG_LEN].reshape(3, grid.N_FREQ, n_seg, grid.SEG_LEN)
            x = torch.from_numpy(np.ascontiguousarray(seg[:, :, picks].transpose(2, 0, 1, 3)))
            for a in range(0, len(picks), 16):
                yield x[a:a + 16]

    cal = int8.calibrate(model, batches())
    cal["calibrated_on"] = [Path(str(p)).name for p in audio]
    if write:
        extra = dict(meta.get("extra") or {})
        extra["int8"] = cal
        save_checkpoint(checkpoint, model, kind=meta["kind"], config=meta.get("config") or {},
                        feature_hash=meta["feature_hash"], metrics=meta.get("metrics"), extra=extra)
    return cal
