"""Supervised pre-training of the 4-class harmonic teacher (FTANet): ``hkd-train teacher``.

The official code never trains its teacher (docs/method.md §2.9.1); DUDA (same group) loads a separately
pre-trained harmonic FTANet. We train it on the labeled caches with :func:`~hkdsme.train.losses.supervised_loss`
against the 4-class map ``harmonic_map(bins)`` built per batch on the training device, and keep the epoch
with the best validation OA (``--val`` cache, whole tracks, mir_eval) as ``RUN/best.pt``.
"""
from __future__ import annotations

from hkdsme.model.checkpoint import build_model
from hkdsme.pipeline import labels
from hkdsme.pipeline.errors import InputError
from hkdsme.train.dataset import ShardDataset
from hkdsme.train.losses import supervised_loss
from hkdsme.train.loop import Trainer


def n_classes(cfg: dict) -> int:
    return 4 if cfg["harmonic"] else 1


class TeacherTrainer(Trainer):
    command, kind = "teacher", "teacher"

    def __init__(self, cfg: dict, *, resume: bool = False):
        super().__init__(cfg, resume=resume)
        if not cfg["data"]:
            raise InputError(None, "no training data given (--data DIR)")
        self.train_ds = ShardDataset(cfg["data"], labeled=True)
        self.feature_hash = self.train_ds.feature_hash
        self.val_ds = (ShardDataset([cfg["val"]], labeled=True, expected_hash=self.feature_hash)
                       if cfg["val"] else None)
        self.val_robust_ds = (ShardDataset([cfg["val_robust"]], labeled=True, expected_hash=self.feature_hash)
                              if cfg.get("val_robust") else None)

    def build_model(self):
        return build_model("teacher", n_classes=n_classes(self.cfg))

    def epoch_data(self, epoch: int):
        return self.train_ds, range(len(self.train_ds))

    def loss(self, out, batch):
        target = labels.harmonic_map(batch["bins"])      # (B, 4, 321, T) float on the training device
        return supervised_loss(out, target, batch["mask"], faithful=self.cfg["faithful"],
                               harmonic=self.cfg["harmonic"])


def train_teacher(cfg: dict, *, resume: bool = False) -> dict:
    """Run teacher pre-training with resolved options ``cfg``; returns the last epoch's metrics."""
    return TeacherTrainer(cfg, resume=resume).fit()
