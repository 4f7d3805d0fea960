"""HCR through the trainer at the default threshold (0.75): the logged ``hcr_kept`` is an independent count.

The other integration tests force ``hcr_threshold = 0`` (everything is kept), so a wrong count could not fail
them. Here the student is rigged so that its outputs are octave-consistent exactly on the unlabeled frames
that carry a feature bump, and each unlabeled segment gets a chosen number of such frames: which segments
HCR keeps is known by construction (some, not all; across two HCR batches; one depends on the mask), and is
checked against :func:`hkdsme.train.hcr.select_segments` applied by the test to the same model's outputs.
"""
import json

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hkdsme.model.output import NetOutput, freq_softmax
from hkdsme.model.student import MSNet
from hkdsme.pipeline import grid
from hkdsme.train import config, loop
from hkdsme.train.dataset import ShardDataset
from hkdsme.train.distill import DistillTrainer
from hkdsme.train.hcr import select_segments

from train_helpers import write_cache

OCT = grid.BINS_PER_OCTAVE
# voiced (consistent) frames per unlabeled segment; the last segment has 40 valid frames, 24 padded
VOICED = [64, 48, 47, 0, 56, 30]
VALID = [64, 64, 64, 64, 64, 40]
EXPECTED = {  # by construction
    False: [0, 1, 4, 5],   # default rule: count >= 0.75 · valid frames (48/64 kept, 47/64 not, 30/40 kept)
    True: [0, 4],          # official rule: count > 0.75 · 64 (48 is not enough, the mask does not lower the bar)
}


class _Rigged(MSNet):
    """MSNet whose logits get +100 at octave-consistent rows on frames with a GC bump (channel 2 > 0.5):
    melody row m = bump row + 1, harmonic m + 60, sub-harmonic m − 60; row 0 everywhere on other frames."""

    def forward(self, x):
        out = super().forward(x)
        gc = x[:, 2].float()                                       # (B, 320, T)
        voiced = gc.amax(dim=1) > 0.5                              # (B, T)
        m = torch.where(voiced, gc.argmax(dim=1) + 1, 0)
        zero = torch.zeros_like(m)
        rows = torch.stack([m, torch.where(voiced, m + OCT, zero), torch.where(voiced, m - OCT, zero), zero], 1)
        pattern = F.one_hot(rows[:, :out.logits.shape[1]], grid.N_BINS).permute(0, 1, 3, 2)
        logits = out.logits + 100.0 * pattern.to(out.logits.dtype)
        return NetOutput(freq_softmax(logits), logits, out.aux_logits)


class _RiggedTrainer(DistillTrainer):
    def build_model(self):
        net = super().build_model()
        rigged = _Rigged(n_classes=net.n_classes, heads=net.heads)
        rigged.load_state_dict(net.state_dict())
        return rigged


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("hcr")
    lab = write_cache(root / "lab", n_tracks=1, frames=(128,), seed=1)
    unl = write_cache(root / "unl", n_tracks=1, frames=(5 * grid.SEG_LEN + 40,), seed=3, labeled=False)
    with h5py.File(unl / "shards" / "trk00.h5", "r+") as h:
        f = h["features"][()]                                      # (6, 3, 320, 64) float16
        assert f.shape[0] == len(VOICED) and list(h["mask"][()].sum(axis=1)) == VALID
        gc = f[:, 2]
        gc[gc > 0.5] = 0.1                                         # no bump anywhere ...
        for s, v in enumerate(VOICED):                             # ... but on the first v frames of segment s
            t = np.arange(v)
            gc[s, 100 + t % 50, t] = 1.0                           # melody rows 101..150: both octaves exist
        f[:, 2] = gc
        h["features"][...] = f
    return {"lab": lab, "unl": unl}


@pytest.mark.parametrize("faithful", [False, True])
def test_logged_hcr_count_matches_an_independent_count(data, tmp_path, faithful):
    run = tmp_path / "run"
    cfg = config.resolve("distill", overrides=dict(
        labeled=[data["lab"]], unlabeled=[data["unl"]], out=run, epochs=1, batch=2, precision="fp32",
        kd=False, hcr_batch=4, max_steps_per_epoch=1, faithful=faithful))
    assert cfg["hcr_threshold"] == 0.75 and cfg["hcr_tolerance"] == 0      # the defaults, not forced
    t = _RiggedTrainer(cfg)
    t.fit()

    # the test's own count: select_segments on the same (rigged, same-seed) model's outputs
    unl = ShardDataset([data["unl"]], labeled=False)
    loop.seed_everything(int(cfg["seed"]))
    model = _Rigged(n_classes=4, heads=cfg["heads"]).eval()
    b = unl.__getitems__(np.arange(len(unl)))
    with torch.inference_mode():
        out = model(b["x"])
    mine = select_segments(out.probs, 0.75, b["mask"], faithful=faithful).numpy()
    expected = EXPECTED[faithful]
    assert list(np.nonzero(mine)[0]) == expected
    assert 0 < len(expected) < len(unl)

    m = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert m["epoch"] == 0 and m["hcr_kept"] == len(expected) and m["hcr_total"] == len(unl)
    assert any(line.startswith(f"epoch 0: kept {len(expected)} of {len(unl)} unlabeled segments (pool without "
                               f"labels: kept {len(expected)} of {len(unl)})") for line in t.log_lines)
    assert m["hcr_total_withheld_part"] == 0 and m["hcr_melody_acc_kept"] is None
    with h5py.File(run / "pseudo.h5") as h:
        assert list(h["uidx"][()]) == expected
        np.testing.assert_allclose(h["probs"][()].astype(np.float32), out.probs[expected].numpy(), atol=1e-3)


def test_pool_with_withheld_labels_is_scored(data, tmp_path):
    """A labeled cache given as --unlabeled: its labels never reach the loss, but the kept pseudo-labels are scored
    against them, per epoch, beside the count of the part without labels."""
    run = tmp_path / "run"
    cfg = config.resolve("distill", overrides=dict(
        labeled=[data["lab"]], unlabeled=[data["unl"], data["lab"]], out=run, epochs=1, batch=2,
        precision="fp32", kd=False, hcr_batch=4, max_steps_per_epoch=1))
    t = _RiggedTrainer(cfg)
    t.fit()
    unl = ShardDataset([data["unl"], data["lab"]], labeled=False)
    lab = unl.has_labels(np.arange(len(unl)))
    n_lab = len(ShardDataset([data["lab"]]))
    assert list(lab) == [False] * len(VOICED) + [True] * n_lab
    loop.seed_everything(int(cfg["seed"]))
    model = _Rigged(n_classes=4, heads=cfg["heads"]).eval()
    b = unl.__getitems__(np.arange(len(unl)))
    with torch.inference_mode():
        out = model(b["x"])
    keep = select_segments(out.probs, 0.75, b["mask"]).numpy()
    # the independent score: melody row of each kept labeled segment vs its true rows, within 2 bins
    m_rows, g = out.probs[:, 0].argmax(dim=1), b["bins"]
    voiced = (g >= 1) & b["mask"]
    sel = torch.from_numpy(keep & lab)
    right = (voiced & (m_rows >= 1) & ((m_rows - g).abs() <= 2))[sel].sum().item()
    m = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert m["hcr_kept_unlabeled_part"] == len(EXPECTED[False]) and m["hcr_total_withheld_part"] == n_lab
    assert m["hcr_kept_withheld_part"] == int((keep & lab).sum())
    if voiced[sel].sum() > 0:
        assert m["hcr_melody_acc_kept"] == pytest.approx(100 * right / voiced[sel].sum().item(), abs=1e-3)
