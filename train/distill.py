"""HKDSME student training: MSNet distilled from a frozen teacher with CGL + KD, plus HCR pseudo-labels.

One job: the distillation trainer (:class:`DistillTrainer`, :func:`train_student`). The teacher-logit cache
lives in :mod:`hkdsme.train.teacher_cache`, the pseudo-label store and the mixed training set in
:mod:`hkdsme.train.pseudo`.

``hkd-train run --teacher CKPT --labeled DIR... [--unlabeled DIR...] --val DIR --out RUN``

Per epoch ``e`` (docs/method.md §2.6–2.7):

1. HCR (from ``hcr_start_epoch`` = 0, as the official loop): the student in eval mode predicts every unlabeled
   segment in batches of ``hcr_batch``; :func:`~hkdsme.train.hcr.select_segments` keeps a segment when
   enough frames are octave-consistent. Kept segments' soft outputs ``probs`` (float16) go to ``RUN/pseudo.h5``
   (per rank ``pseudo.r<k>.h5`` under DDP), rewritten atomically each epoch; the log says
   ``epoch N: kept K of M unlabeled segments``.
2. The epoch trains on labeled ∪ kept segments (shuffled together, drop_last). Target ``Y``: the one-hot
   4-class map ``harmonic_map(bins)`` for labeled segments, the stored soft probs for pseudo-labeled ones.
   Loss: :func:`~hkdsme.train.losses.hkdsme_loss` (CE + CGL + 0.1·Σ heads + KL).

The teacher never runs per batch: its logits for every labeled and unlabeled segment are computed once
(``RUN/teacher_cache.h5``, :mod:`hkdsme.train.teacher_cache`) and reused on resume as long as the feature
hash, the teacher checkpoint's hash, the data and the teacher mode/precision are the same. Memory is flat
over epochs: pseudo-labels (:mod:`hkdsme.train.pseudo`) and teacher logits live on disk.

Switches: ``--no-harmonic`` (C = 1: melody channel only; HCR needs the harmonic channels, so it is off),
``--no-hcr``, ``--no-kd`` (no teacher terms; no teacher needed), ``--no-cgl``.

``--faithful`` mirrors the official code [HK] where that is cheap:

- the loss's faithful mode (CE over the class axis of frequency-softmaxed outputs, class-axis CGL,
  ``KLDivLoss`` 'mean'), see :mod:`hkdsme.train.losses`;
- HCR's official rule (``m == h − 60 == s + 60`` and strictly more than ``0.75·64`` frames);
- the teacher in TRAIN mode (BatchNorm on batch statistics, §2.9.1). Its logits are still cached, so its
  batches are the cache-filling batches of ``teacher_batch`` segments in data order, not the training
  batches; running statistics are never updated (the teacher is discarded after filling the cache).

Not mirrored: the official run distils from a randomly initialised teacher (pass ``--teacher random`` for
that), picks the best epoch on the test set (we use ``--val``) and keeps the tail < 64 frames out (we keep
it, masked).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hkdsme.model import runtime
from hkdsme.model.checkpoint import build_model, load_checkpoint
from hkdsme.model.ensemble import TeacherEnsemble, ensemble_key, is_ensemble_spec, load_ensemble
from hkdsme.model.teacher import FTANet
from hkdsme.pipeline import labels
from hkdsme.pipeline.errors import InputError
from hkdsme.train import ddp
from hkdsme.train.dataset import SegmentSample, ShardDataset
from hkdsme.train.hcr import PseudoLabelQuality, select_segments
from hkdsme.train.loop import Trainer, predict_segments
from hkdsme.train.losses import hkdsme_loss
from hkdsme.train.pseudo import TrainSet, combine, store_path, write_store
from hkdsme.train.teacher_cache import CACHE_NAME, build_teacher_cache, cache_matches, data_key, file_hash


class DistillTrainer(Trainer):
    command, kind = "distill", "student"

    def __init__(self, cfg: dict, *, resume: bool = False):
        super().__init__(cfg, resume=resume)
        if not cfg["labeled"]:
            raise InputError(None, "no labeled data given (--labeled DIR)")
        if cfg["kd"] and not cfg["teacher"]:
            raise InputError(None, "no teacher given (--teacher CKPT, or --teacher random, or --no-kd)")
        self.lab = ShardDataset(cfg["labeled"], labeled=True)
        self.feature_hash = self.lab.feature_hash
        self.unl = (ShardDataset(cfg["unlabeled"], labeled=False, expected_hash=self.feature_hash)
                    if cfg["unlabeled"] else None)
        n_max = int(cfg["unlabeled_max"])
        if self.unl is not None and 0 < n_max < len(self.unl):
            self.log(f"unlabeled pool: fixed sample of {n_max} of {len(self.unl)} segments (--unlabeled-max)")
            self.unl = SegmentSample.draw(self.unl, n_max, int(cfg["seed"]))
        self.val_ds = (ShardDataset([cfg["val"]], labeled=True, expected_hash=self.feature_hash)
                       if cfg["val"] else None)
        self.val_robust_ds = (ShardDataset([cfg["val_robust"]], labeled=True, expected_hash=self.feature_hash)
                              if cfg.get("val_robust") else None)
        self.use_hcr = bool(cfg["hcr"] and cfg["harmonic"] and self.unl is not None)
        if cfg["hcr"] and self.unl is not None and not cfg["harmonic"]:
            self.log("--no-harmonic: HCR needs the harmonic channels, so no pseudo-labels are selected")
        self.pseudo = None
        self.kept = 0
        self.cache_path = None
        if cfg["kd"]:
            self._check_teacher()            # fail on a bad checkpoint before any training

    # ---- teacher cache
    def _load_teacher(self, spec: str | None = None):
        """``(network, hash for the cache key)`` of ``spec`` (default: ``--teacher``)."""
        spec = self.cfg["teacher"] if spec is None else spec
        if spec == "random":
            torch.manual_seed(int(self.cfg["seed"]))
            return build_model("teacher", n_classes=4), f"random-{self.cfg['seed']}"
        if is_ensemble_spec(spec):
            return load_ensemble(spec, expected_feature_hash=self.feature_hash), ensemble_key(spec)
        model, _ = load_checkpoint(spec, expected_feature_hash=self.feature_hash, map_location="cpu")
        return model, file_hash(spec)

    def _check_teacher(self):
        for spec in (self.cfg["teacher"], self.cfg.get("pool_teacher") or "random"):
            if is_ensemble_spec(spec):
                load_ensemble(spec, expected_feature_hash=self.feature_hash)
            elif spec != "random":
                load_checkpoint(spec, expected_feature_hash=self.feature_hash, map_location="cpu")

    def _cache_key(self, teacher_hash: str) -> dict:
        return {"feature_hash": self.feature_hash, "teacher_hash": teacher_hash,
                "mode": "train" if self.cfg["faithful"] else "eval", "precision": self.precision,
                "labeled": data_key(self.lab), "unlabeled": data_key(self.unl) if self.unl is not None else "",
                "version": 1}

    def prepare_teacher_cache(self) -> Path:
        """Fill the teacher cache once (rank 0); reuse a matching one. ``RUN/teacher_cache.h5``, or the file
        ``--teacher-cache PATH`` names: runs with the same teacher and data (e.g. ablations) then share one."""
        path = Path(self.cfg.get("teacher_cache") or self.run / CACHE_NAME)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.info.main:
            rng = torch.get_rng_state()              # filling the cache must not shift the run's randomness
            teacher, th = self._load_teacher()
            key = self._cache_key(th)
            pool = None
            if self.cfg.get("pool_teacher") and self.unl is not None:
                # another teacher for the unlabeled pool (e.g. fused posteriors that suit real music but not the
                # labeled corpus); its identity joins the cache key
                pool, ph = self._load_teacher(self.cfg["pool_teacher"])
                key["pool_teacher_hash"] = ph
            if cache_matches(path, key):
                self.log(f"reusing teacher logits {path}")
            else:
                self.log(f"computing teacher logits for {len(self.lab)} labeled + "
                         f"{len(self.unl) if self.unl is not None else 0} unlabeled segments → {path}")
                teacher = teacher.to(self.device)
                t_cl = bool(self.cfg["channels_last"]) and runtime.use_channels_last(
                    self.device, "teacher" if isinstance(teacher, (FTANet, TeacherEnsemble)) else "student", self.precision)
                if t_cl:
                    teacher = teacher.to(memory_format=torch.channels_last)
                sets = {"labeled": self.lab, **({"unlabeled": self.unl} if self.unl is not None else {})}
                if pool is not None:
                    pool = pool.to(self.device, memory_format=torch.channels_last if t_cl else torch.contiguous_format)
                    teacher = {"labeled": teacher, "unlabeled": pool}
                with torch.inference_mode():
                    donors = sorted(p for p in path.parent.glob("*.h5") if p != path)   # e.g. other ablations'
                    build_teacher_cache(path, teacher, sets, key, device=self.device, precision=self.precision,
                                        batch=int(self.cfg["teacher_batch"]), train_mode=self.cfg["faithful"],
                                        channels_last=t_cl, donors=donors, log=self.log)
            del teacher, pool
            torch.set_rng_state(rng)
        ddp.barrier(self.info)
        return path

    # ---- Trainer interface
    def build_model(self):
        model = build_model("student", n_classes=4 if self.cfg["harmonic"] else 1, heads=self.cfg["heads"])
        if self.cfg["kd"] and self.cache_path is None:
            self.cache_path = self.prepare_teacher_cache()
        return model

    def before_epoch(self, epoch: int) -> dict:
        self.pseudo = None
        if not self.use_hcr:
            return {}
        if epoch < int(self.cfg["hcr_start_epoch"]):
            return {"hcr_kept": 0}
        kept, total = self.select_pseudo(epoch)
        self.kept = kept
        self.log(f"epoch {epoch}: kept {kept} of {total} unlabeled segments "
                 f"({PseudoLabelQuality.describe(self.hcr_quality)})")
        return {"hcr_kept": kept, "hcr_total": total, **self.hcr_quality}

    def select_pseudo(self, epoch: int) -> tuple[int, int]:
        """HCR over this rank's share of the unlabeled set; returns (kept, total) over all ranks and logs the
        pseudo-labels' quality where the pool carries withheld labels (``self.hcr_quality``)."""
        info = self.info
        model = self._model
        path = store_path(self.run, info.rank, info.world)
        rows = ddp.shard_range(len(self.unl), info)
        quality = PseudoLabelQuality()
        was = model.training
        model.eval()
        try:
            with torch.inference_mode():
                mine = write_store(path, model.n_classes, self._hcr_kept(model, rows, quality), epoch=epoch,
                                   rank=info.rank)
        finally:
            model.train(was)
        parts = ddp.all_gather_objects((str(path), mine, quality.c), info)
        self.pseudo = combine([p[:2] for p in parts])
        self.hcr_quality = PseudoLabelQuality.summary([p[2] for p in parts])
        return len(self.pseudo[3]), len(self.unl)

    def _hcr_kept(self, model, rows, quality: PseudoLabelQuality | None = None):
        """Yield ``(uidx, probs float16)`` of the segments of ``rows`` that HCR keeps, batch by batch."""
        cfg = self.cfg
        for r, b, out in predict_segments(model, self.unl, rows, device=self.device,
                                          precision=self.precision, batch=int(cfg["hcr_batch"]),
                                          channels_last=self.channels_last):
            p = out.probs.float()
            keep = select_segments(p, float(cfg["hcr_threshold"]), b["mask"].to(p.device),
                                   faithful=cfg["faithful"], tolerance=int(cfg["hcr_tolerance"])).cpu().numpy()
            if quality is not None:
                quality.add(p, keep, self.unl.has_labels(r), b["bins"], b["mask"])
            if keep.any():
                yield np.asarray(r)[keep], p[torch.from_numpy(keep).to(p.device)].half().cpu().numpy()

    def epoch_data(self, epoch: int):
        ds = TrainSet(self.lab, self.unl, self.cache_path if self.cfg["kd"] else None, self.pseudo)
        return ds, range(len(ds))

    def loss(self, out, batch):
        target = labels.harmonic_map(batch["bins"])
        if "pseudo" in batch:
            p = batch["is_pseudo"]
            target[p] = batch["pseudo"][p].float()
        teacher = batch["teacher"].float() if "teacher" in batch else None
        return hkdsme_loss(out, teacher, target, batch["mask"], faithful=self.cfg["faithful"],
                           use_cgl=self.cfg["cgl"], use_kd=self.cfg["kd"], harmonic=self.cfg["harmonic"])

    def state(self) -> dict:
        # the selection itself is recomputed from the restored weights at the next epoch's start
        return {"hcr_kept": int(self.kept), "teacher_cache": str(self.cache_path or "")}


def train_student(cfg: dict, *, resume: bool = False) -> dict:
    """Run HKDSME distillation with resolved options ``cfg``; returns the last epoch's metrics."""
    return DistillTrainer(cfg, resume=resume).fit()
