"""HKDSME student training: MSNet distilled from a frozen teacher with CGL + KD, plus HCR pseudo-labels.

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
(``RUN/teacher_cache.h5``, float16, chunked one segment per chunk so they are memory-mapped like features)
and reused on resume as long as the feature hash, the teacher checkpoint's hash, the data and the teacher
mode/precision are the same. Memory is flat over epochs: pseudo-labels and teacher logits live on disk.

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

import hashlib
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from hkdsme.model import runtime
from hkdsme.model.checkpoint import build_model, load_checkpoint
from hkdsme.model.teacher import FTANet
from hkdsme.pipeline import grid, labels
from hkdsme.pipeline.atomic import atomic_path
from hkdsme.pipeline.errors import InputError
from hkdsme.train import ddp
from hkdsme.train.dataset import ChunkedArray, SegmentSample, ShardDataset
from hkdsme.train.hcr import select_segments
from hkdsme.train.loop import Trainer, predict_segments
from hkdsme.train.losses import hkdsme_loss

CACHE_NAME = "teacher_cache.h5"
LOGIT_MAX = 6.0e4          # float16 max is 65504: clamp before storing


def file_hash(path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def data_key(ds: ShardDataset) -> str:
    """Identity of a dataset's segment order: hash of its shard paths and segment counts."""
    blob = "\n".join(f"{p}:{n}" for p, n in zip(ds.paths, np.diff(ds.first))).encode()
    index = getattr(ds, "index", None)            # a SegmentSample: its segments are part of the identity
    if index is not None:
        blob += b"\nsample:" + np.asarray(index, np.int64).tobytes()
    return hashlib.sha256(blob).hexdigest()[:16]


def _chunked(h: h5py.File, name: str, n: int, c: int):
    return h.create_dataset(name, shape=(n, c, grid.N_BINS, grid.SEG_LEN), dtype=np.float16,
                            chunks=(1, c, grid.N_BINS, grid.SEG_LEN),
                            maxshape=(None, c, grid.N_BINS, grid.SEG_LEN))


CHECKSUM_ALGO = "sha256"


def _segment_source(ds, i: int) -> tuple[Path, int]:
    """``(shard path, segment)`` of item ``i`` of a ShardDataset or SegmentSample."""
    base = getattr(ds, "base", ds)
    g = int(ds.index[i]) if hasattr(ds, "index") else int(i)
    return base.paths[int(base.track_of[g])], int(base.seg_of[g])


def _remove_dead_temps(path: Path) -> None:
    """Delete ``.<name>.tmp-<pid>-*`` leftovers (pipeline.atomic names) of ``path`` whose writer is dead."""
    for f in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(f.name[len(path.name) + 6:].split("-")[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except PermissionError:
            pass


def build_teacher_cache(path, teacher, sets: dict, key: dict, *, device, precision="fp32", batch=32,
                        train_mode=False, channels_last=False, progress=True) -> Path:
    """Write ``teacher``'s logits (float16) for every segment of each dataset in ``sets`` to ``path``.

    ``sets``: ``{name: ShardDataset}`` → dataset ``name`` of shape (N, C, 321, 64). ``key`` is stored as
    attributes; :func:`cache_matches` compares it on reuse. Each dataset's stored bytes get a checksum
    (attribute ``checksum_<name>``, see :func:`cache_checksums`). Written to a temp file, then renamed.
    Non-finite logits are refused (``InputError`` naming the segment's shard) instead of being stored.
    """
    path = Path(path)
    _remove_dead_temps(path)
    teacher.train(train_mode)
    try:
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as h:
            h.attrs.update(key)
            for name, ds in sets.items():
                idx = np.arange(len(ds))
                out = None
                digest = hashlib.new(CHECKSUM_ALGO)
                gen = predict_segments(teacher, ds, idx, device=device, precision=precision, batch=batch,
                                       channels_last=channels_last)
                for rows, _, o in tqdm(gen, total=-(-len(ds) // batch), desc=f"teacher logits ({name})",
                                       disable=not progress, leave=False):
                    lg = o.logits.float()
                    finite = torch.isfinite(lg).flatten(1).all(dim=1)
                    if not bool(finite.all()):
                        shard, seg = _segment_source(ds, int(rows[int(torch.nonzero(~finite)[0, 0])]))
                        raise InputError(shard, f"segment {seg}: the teacher gives non-finite logits (NaN/inf); "
                                                f"not stored in {path}")
                    lg = np.ascontiguousarray(lg.clamp(-LOGIT_MAX, LOGIT_MAX).half().cpu().numpy())
                    if out is None:
                        out = _chunked(h, name, len(ds), lg.shape[1])
                    out[rows[0]:rows[-1] + 1] = lg
                    digest.update(lg)              # rows arrive in order 0..N-1
                if out is not None:
                    h.attrs[f"checksum_{name}"] = f"{CHECKSUM_ALGO}:{digest.hexdigest()}"
            h.attrs["complete"] = True
    finally:
        teacher.eval()
    return path


def cache_checksums(h: h5py.File) -> dict:
    """``{dataset: "sha256:<hex>"}`` of the stored float16 bytes of every dataset, row order (reads them all:
    measured 1.0 s per GiB on the 2-core VM, file in the page cache)."""
    sums = {}
    for name, d in h.items():
        if not isinstance(d, h5py.Dataset):
            continue
        digest = hashlib.new(CHECKSUM_ALGO)
        for i in range(0, d.shape[0], 256):
            digest.update(np.ascontiguousarray(d[i:i + 256]))
        sums[name] = f"{CHECKSUM_ALGO}:{digest.hexdigest()}"
    return sums


def cache_matches(path, key: dict) -> bool:
    """True when ``path`` is a complete, intact teacher cache written with exactly ``key``.

    Intact: every dataset's bytes match the checksum recorded at write time. A mismatch (or an unreadable
    file) is reported with a warning naming the file and answers False, so the caller rebuilds the cache.
    A cache written before checksums is accepted if all its logits are finite.
    """
    try:
        with h5py.File(path, "r") as h:
            attrs = dict(h.attrs)
            if not (bool(attrs.get("complete")) and all(str(attrs.get(k)) == str(v) for k, v in key.items())):
                return False
            recorded = {k[len("checksum_"):]: str(v) for k, v in attrs.items() if k.startswith("checksum_")}
            if recorded:
                got = cache_checksums(h)
                bad = sorted(n for n in set(got) | set(recorded) if got.get(n) != recorded.get(n))
                if bad:
                    warnings.warn(f"{path}: checksum mismatch in {', '.join(bad)} (corrupt teacher cache): "
                                  "rebuilding it", stacklevel=2)
                    return False
            else:
                for name, d in h.items():
                    for i in range(0, d.shape[0], 256):
                        if not np.isfinite(d[i:i + 256]).all():
                            warnings.warn(f"{path}: non-finite logits in {name} (corrupt teacher cache): "
                                          "rebuilding it", stacklevel=2)
                            return False
    except (OSError, KeyError, ValueError) as e:
        if Path(path).exists():
            warnings.warn(f"{path}: unreadable teacher cache ({e}): rebuilding it", stacklevel=2)
        return False
    return True


class _Lazy:
    """Per-process memory maps of (file, dataset) pairs (never inherited by forked workers)."""

    def __init__(self):
        self._pid, self._maps = None, {}

    def __getstate__(self):
        return {"_pid": None, "_maps": {}}

    def get(self, path, name) -> ChunkedArray:
        if self._pid != os.getpid():
            self._pid, self._maps = os.getpid(), {}
        a = self._maps.get((str(path), name))
        if a is None:
            a = self._maps[(str(path), name)] = ChunkedArray(path, name)
        return a


class TrainSet(torch.utils.data.Dataset):
    """The epoch's training items: labeled segments ``0..NL-1`` then kept pseudo-labeled segments.

    ``pseudo``: ``(files, file_of, row_of, uidx_of)``: pseudo item ``j`` is row ``row_of[j]`` of
    ``files[file_of[j]]`` and unlabeled segment ``uidx_of[j]``. ``__getitems__`` returns the batch dict of
    :class:`ShardDataset` plus ``is_pseudo`` (B,), ``teacher`` (B, C_t, 321, 64) float16 logits (when a
    teacher cache is given) and ``pseudo`` (B, C, 321, 64) float16 soft targets (only if the batch has any).
    """

    def __init__(self, labeled: ShardDataset, unlabeled: ShardDataset | None = None, teacher_cache=None,
                 pseudo=None):
        self.lab, self.unl, self.cache = labeled, unlabeled, teacher_cache
        self.nl = len(labeled)
        empty = np.zeros(0, np.int64)
        self.files, self.file_of, self.row_of, self.uidx_of = pseudo or ([], empty, empty, empty)
        self._maps = _Lazy()

    def __len__(self):
        return self.nl + len(self.uidx_of)

    def __getitems__(self, indices) -> dict:
        idx = np.asarray(indices, np.int64)
        is_p = idx >= self.nl
        j = idx[is_p] - self.nl
        uidx = self.uidx_of[j]
        b = self.lab.__getitems__(idx[~is_p])
        if is_p.any():
            u = self.unl.__getitems__(uidx)
            mix = {}
            for k in ("x", "bins", "mask"):
                t = torch.empty((len(idx), *b[k].shape[1:]), dtype=b[k].dtype)
                t[torch.from_numpy(~is_p)], t[torch.from_numpy(is_p)] = b[k], u[k]
                mix[k] = t
            mix["bins"][torch.from_numpy(is_p)] = 0          # unlabeled: targets come from "pseudo"
            b = mix
        b["idx"] = torch.from_numpy(idx)
        b["is_pseudo"] = torch.from_numpy(is_p)
        if self.cache is not None:
            lab_t = self._maps.get(self.cache, "labeled")
            t = np.empty((len(idx), *lab_t.shape[1:]), np.float16)
            for k, i in enumerate(idx):
                t[k] = lab_t.row(i) if i < self.nl else self._maps.get(self.cache, "unlabeled").row(
                    self.uidx_of[i - self.nl])
            b["teacher"] = torch.from_numpy(t)
        if is_p.any():
            first = self._maps.get(self.files[0], "probs")
            p = np.zeros((len(idx), *first.shape[1:]), np.float16)
            for k in np.nonzero(is_p)[0]:
                q = idx[k] - self.nl
                p[k] = self._maps.get(self.files[self.file_of[q]], "probs").row(self.row_of[q])
            b["pseudo"] = torch.from_numpy(p)
        return b


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
    def _load_teacher(self):
        spec = self.cfg["teacher"]
        if spec == "random":
            torch.manual_seed(int(self.cfg["seed"]))
            return build_model("teacher", n_classes=4), f"random-{self.cfg['seed']}"
        model, _ = load_checkpoint(spec, expected_feature_hash=self.feature_hash, map_location="cpu")
        return model, file_hash(spec)

    def _check_teacher(self):
        spec = self.cfg["teacher"]
        if spec != "random":
            load_checkpoint(spec, expected_feature_hash=self.feature_hash, map_location="cpu")

    def _cache_key(self, teacher_hash: str) -> dict:
        return {"feature_hash": self.feature_hash, "teacher_hash": teacher_hash,
                "mode": "train" if self.cfg["faithful"] else "eval", "precision": self.precision,
                "labeled": data_key(self.lab), "unlabeled": data_key(self.unl) if self.unl is not None else "",
                "version": 1}

    def prepare_teacher_cache(self) -> Path:
        """Fill ``RUN/teacher_cache.h5`` once (rank 0); reuse a matching one."""
        path = self.run / CACHE_NAME
        if self.info.main:
            rng = torch.get_rng_state()              # filling the cache must not shift the run's randomness
            teacher, th = self._load_teacher()
            key = self._cache_key(th)
            if cache_matches(path, key):
                self.log(f"reusing teacher logits {path}")
            else:
                self.log(f"computing teacher logits for {len(self.lab)} labeled + "
                         f"{len(self.unl) if self.unl is not None else 0} unlabeled segments → {path}")
                teacher = teacher.to(self.device)
                t_cl = bool(self.cfg["channels_last"]) and runtime.use_channels_last(
                    self.device, "teacher" if isinstance(teacher, FTANet) else "student", self.precision)
                if t_cl:
                    teacher = teacher.to(memory_format=torch.channels_last)
                sets = {"labeled": self.lab, **({"unlabeled": self.unl} if self.unl is not None else {})}
                with torch.inference_mode():
                    build_teacher_cache(path, teacher, sets, key, device=self.device, precision=self.precision,
                                        batch=int(self.cfg["teacher_batch"]), train_mode=self.cfg["faithful"],
                                        channels_last=t_cl)
            del teacher
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
        self.log(f"epoch {epoch}: kept {kept} of {total} unlabeled segments")
        return {"hcr_kept": kept, "hcr_total": total}

    def select_pseudo(self, epoch: int) -> tuple[int, int]:
        """HCR over this rank's share of the unlabeled set; returns (kept, total) over all ranks."""
        info, cfg = self.info, self.cfg
        model = self._model
        path = self.run / ("pseudo.h5" if info.world == 1 else f"pseudo.r{info.rank}.h5")
        rows = ddp.shard_range(len(self.unl), info)
        was = model.training
        model.eval()
        uidx = []
        try:
            with atomic_path(path) as tmp, h5py.File(tmp, "w") as h, torch.inference_mode():
                probs = _chunked(h, "probs", 0, model.n_classes)
                for r, b, out in predict_segments(model, self.unl, rows, device=self.device,
                                                  precision=self.precision, batch=int(cfg["hcr_batch"]),
                                                  channels_last=self.channels_last):
                    p = out.probs.float()
                    keep = select_segments(p, float(cfg["hcr_threshold"]), b["mask"].to(p.device),
                                           faithful=cfg["faithful"], tolerance=int(cfg["hcr_tolerance"])).cpu().numpy()
                    if keep.any():
                        n0 = probs.shape[0]
                        probs.resize(n0 + int(keep.sum()), axis=0)
                        probs[n0:] = p[torch.from_numpy(keep).to(p.device)].half().cpu().numpy()
                        uidx.append(np.asarray(r)[keep])
                h.create_dataset("uidx", data=np.concatenate(uidx) if uidx else np.zeros(0, np.int64))
                h.attrs.update(epoch=epoch, rank=info.rank)
        finally:
            model.train(was)
        mine = np.concatenate(uidx) if uidx else np.zeros(0, np.int64)
        parts = ddp.all_gather_objects((str(path), mine), info)
        files = [p for p, _ in parts]
        file_of = np.concatenate([np.full(len(u), k, np.int64) for k, (_, u) in enumerate(parts)])
        row_of = np.concatenate([np.arange(len(u), dtype=np.int64) for _, u in parts])
        uidx_of = np.concatenate([u for _, u in parts]).astype(np.int64)
        self.pseudo = (files, file_of, row_of, uidx_of)
        return len(uidx_of), len(self.unl)

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
