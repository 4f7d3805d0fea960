"""Shared training machinery: seeding, precision, epochs, validation, checkpoints, logs, exact resume.

A run folder ``RUN`` holds::

    config.toml / config.json   resolved options (hkdsme.train.config)
    last.pt                     after every epoch: weights + optimiser + RNG states (every rank) + sampler +
                                subclass state (e.g. pseudo-label bookkeeping) + best metric; atomic
    best.pt                     weights of the epoch with the highest validation OA (never test data)
    metrics.jsonl               one JSON line per epoch (mean losses, validation scores, s/step, ...)
    tb/                         TensorBoard scalars

Both ``.pt`` files are :mod:`hkdsme.model.checkpoint` files (``load_checkpoint`` works on either); the
training state of ``last.pt`` sits in ``extra["train_state"]`` in plain types, so it loads with
``weights_only=True``. Resuming restores every random state, so a killed run continues bit-exactly on CPU.

Subclasses (:class:`~hkdsme.train.teacher.TeacherTrainer`, :class:`~hkdsme.train.distill.DistillTrainer`)
provide the model, the epoch's training data and the loss.

Early stopping (``patience`` N > 0): after a validated epoch ``e``, training ends when the best ``val_select``
is from epoch ``b`` with ``e - b >= N``, i.e. N epochs brought no strictly better score; that epoch's metrics
line carries ``"early_stop": true``. A resumed run re-applies the rule to its last epoch first (a run that
stopped stays stopped; a larger ``--patience`` or 0 lets it go on to ``epochs``).
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hkdsme.model import checkpoint as ckpt
from hkdsme.model import runtime
from hkdsme.model.decode import bins_from_output, bins_to_hz
from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError
from hkdsme.train import config as config_mod
from hkdsme.train import ddp
from hkdsme.train.curves import best_epoch as best_row, read_metrics
from hkdsme.train.dataset import SegmentBatchSampler, ShardDataset, make_loader


# --------------------------------------------------------------------------------------------- randomness
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global random state in checkpoint-safe plain types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, pystate, pygauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                       has_gauss, gauss],
             "python": [version, list(pystate), pygauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, pystate, pygauss = state["python"]
    random.setstate((version, tuple(pystate), pygauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def epoch_lr(cfg: dict, epoch: int) -> float:
    """Learning rate of ``epoch``: ``lr`` (``lr_schedule = "constant"``, the official behaviour) or the cosine
    decay ``lr · (1 + cos(π · epoch / epochs)) / 2`` (``"cosine"``). A function of the epoch alone, so a resumed
    run follows the same schedule without any saved scheduler state."""
    lr = float(cfg["lr"])
    schedule = cfg.get("lr_schedule", "constant")
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(int(cfg["epochs"]), 1)))
    raise InputError(None, f"unknown lr_schedule {schedule!r} (constant or cosine)")


def _pack_optimizer(sd: dict) -> dict:
    # checkpoint metadata needs str keys; param ids become "0", "1", ...
    return {"state": {str(k): v for k, v in sd["state"].items()}, "param_groups": sd["param_groups"]}


def _unpack_optimizer(sd: dict) -> dict:
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in sd["param_groups"]]
    return {"state": {int(k): v for k, v in sd["state"].items()}, "param_groups": groups}


# --------------------------------------------------------------------------------------------- validation
@torch.inference_mode()
def predict_segments(model, ds: ShardDataset, indices, *, device, precision="fp32", batch: int = 64,
                     channels_last: bool = False):
    """Yield ``(indices, batch dict, NetOutput)`` for ``indices`` in batches of ``batch`` (model in eval mode)."""
    for i in range(0, len(indices), batch):
        rows = indices[i:i + batch]
        b = ds.__getitems__(rows)
        x = b["x"].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with runtime.autocast(precision, device):
            out = model(x)
        yield rows, b, out


def track_outputs(model, ds: ShardDataset, t: int, *, device, precision="fp32", batch: int = 64,
                  channels_last: bool = False):
    """Network output of track ``t`` of a labeled cache, decoded both ways, padding dropped.

    Returns ``(ref_f0, voicing, hz, argmax_bins)``: the shard's reference f0 and, per frame, the voicing
    probability ``1 − p[row 0]``, the sub-bin refined pitch (Hz) and the paper's argmax bin
    (:mod:`hkdsme.model.decode`).
    """
    from hkdsme.model.decode import voicing_and_pitch

    seg = ds.track_segments(t)
    vs, hs, bs = [], [], []
    for _, _, out in predict_segments(model, ds, seg, device=device, precision=precision, batch=batch,
                                      channels_last=channels_last):
        v, h = voicing_and_pitch(out.logits)
        vs.append(v.reshape(-1).cpu())
        hs.append(h.reshape(-1).cpu())
        bs.append(bins_from_output(out.logits).reshape(-1).cpu())
    n_frames, ref_f0 = ds.track_reference(t)
    return (np.asarray(ref_f0, dtype=np.float64), torch.cat(vs)[:n_frames].numpy(),
            torch.cat(hs)[:n_frames].numpy(), torch.cat(bs)[:n_frames].numpy())


def cache_outputs(model, ds: ShardDataset, *, device="cpu", precision="fp32", batch: int = 64,
                  channels_last: bool = False, progress: bool = False) -> list[tuple]:
    """:func:`track_outputs` of every track of ``ds`` (model in eval mode, restored afterwards)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        return [track_outputs(model, ds, t, device=device, precision=precision, batch=batch,
                              channels_last=channels_last)
                for t in tqdm(range(len(ds.paths)), desc="validate", disable=not progress, leave=False)]
    finally:
        model.train(was_training)


def score_outputs(ds: ShardDataset, outputs, *, decode: str = "voicing", threshold: float | None = None):
    """mir_eval scores (percent) of :func:`cache_outputs` decoded with ``decode`` (θ for ``voicing``).

    Returns ``(mean over tracks, per-track list)``; each per-track dict also has ``track`` (the shard path).
    """
    from hkdsme.evaluate.metrics import mean_scores, melody_scores
    from hkdsme.model.decode import DECODERS, VOICING_THRESHOLD, f0_from_voicing

    if decode not in DECODERS:
        raise InputError(None, f"decode must be one of {', '.join(DECODERS)}, got {decode!r}")
    theta = VOICING_THRESHOLD if threshold is None else threshold
    per = []
    for t, (ref, v, h, k) in enumerate(outputs):
        est = f0_from_voicing(v, h, theta) if decode == "voicing" else bins_to_hz(k).astype(np.float64)
        times = grid.frame_times(ref.size)
        s = melody_scores(times, ref, times, est, path=ds.paths[t])
        per.append({**s, "track": str(ds.paths[t])})
    return mean_scores(per), per


def score_cache(model, ds: ShardDataset, *, device="cpu", precision="fp32", batch: int = 64,
                channels_last: bool = False, progress: bool = False, decode: str = "voicing",
                threshold: float | None = None) -> tuple[dict, list[dict]]:
    """Melody scores of ``model`` on every track of a labeled cache.

    Each track's segments are predicted, decoded (``decode``: the voicing decoder at ``threshold``, default
    0.5, or the paper's argmax; padding dropped) and scored with mir_eval (OA/RPA/RCA/VR/VFA in percent)
    against the shard's ``f0`` on the same 10 ms grid. Returns ``(mean over tracks, per-track list)``.
    """
    outs = cache_outputs(model, ds, device=device, precision=precision, batch=batch, channels_last=channels_last,
                         progress=progress)
    return score_outputs(ds, outs, decode=decode, threshold=threshold)


def calibrate_on_sets(outputs_per_set: dict) -> tuple[float, dict]:
    """θ of maximum *mean over sets* of each set's mean OA (so a small robustness set weighs as much as the plain
    one). ``outputs_per_set``: name → :func:`cache_outputs` list. Returns ``(θ*, {name: OA % at θ*})``."""
    from hkdsme.model.decode import THRESHOLDS, best_threshold, oa_curve

    curves = {name: oa_curve([(r, v, h) for r, v, h, _ in outs])[1] for name, outs in outputs_per_set.items()}
    i = best_threshold(THRESHOLDS, np.mean(list(curves.values()), axis=0))
    return float(THRESHOLDS[i]), {n: float(100 * c[i]) for n, c in curves.items()}


# --------------------------------------------------------------------------------------------- the loop
class Trainer:
    """Epoch loop shared by teacher pre-training and student distillation.

    Subclasses set ``command`` and ``kind`` and implement :meth:`build_model`, :meth:`epoch_data` and
    :meth:`loss`; optional hooks :meth:`before_epoch`, :meth:`state` / :meth:`load_state`.
    """

    command = ""
    kind = ""

    def __init__(self, cfg: dict, *, resume: bool = False):
        self.cfg = cfg
        self.resume = resume
        if not cfg.get("out"):
            raise InputError(None, "no run folder given (--out)")
        if cfg["faithful"] and not cfg["harmonic"]:
            raise InputError(None, "--faithful needs the harmonic (4-class) output; drop --no-harmonic")
        self.run = Path(cfg["out"])
        self.info = ddp.init(cfg["device"])
        self.device = self.info.device
        self.threads = runtime.configure_threads() if self.device.type == "cpu" else torch.get_num_threads()
        self.precision_info = runtime.resolve_precision(cfg["precision"], self.device)
        self.precision = self.precision_info.name
        # channels_last = true means "where it is faster" (runtime.use_channels_last: by network and precision)
        self.channels_last = bool(cfg["channels_last"]) and runtime.use_channels_last(
            self.device, self.kind, self.precision)
        self.feature_hash = ""
        self.decode = "argmax" if cfg["faithful"] else "voicing"
        self.log_lines: list[str] = []         # last few log messages (tests, CLI echo)
        self._tb = None

    # ---- subclass interface
    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def epoch_data(self, epoch: int):
        """``(dataset with __getitems__, indices of the epoch's training items)``."""
        raise NotImplementedError

    def loss(self, out, batch: dict) -> dict:
        raise NotImplementedError

    def before_epoch(self, epoch: int) -> dict:
        """Work before training epoch ``epoch``; returns metrics to log."""
        return {}

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    # ---- helpers
    def log(self, msg: str) -> None:
        if self.info.main:
            tqdm.write(msg)
            self.log_lines.append(msg)
            self.run.mkdir(parents=True, exist_ok=True)
            with open(self.run / "train.log", "a") as f:
                f.write(msg + "\n")

    def to_device(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if k == "x" and self.channels_last:
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out

    def _write_metrics(self, epoch: int, metrics: dict) -> None:
        with open(self.run / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"epoch": epoch, **metrics}, sort_keys=True) + "\n")
        try:
            if self._tb is None:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run / "tb"))
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, epoch)
            self._tb.flush()
        except ImportError:                      # tensorboard missing: the jsonl has everything
            pass

    def _save(self, name: str, model, optimizer, scaler, epoch: int, metrics: dict, best: float, sampler_state,
              rng_all) -> None:
        extra = {"epoch": epoch, "precision": self.precision, "precision_reason": self.precision_info.reason,
                 "decode": self.decode}
        if "val_theta" in metrics:
            extra["voicing_threshold"] = float(metrics["val_theta"])     # calibrated on validation, used by predict
        if name == "last.pt":
            extra["train_state"] = {
                "epoch": epoch, "best_oa": best, "best_epoch": self._best_epoch, "validated": "val_select" in metrics,
                "optimizer": _pack_optimizer(optimizer.state_dict()),
                "scaler": scaler.state_dict() if scaler is not None else {}, "rng": rng_all,
                "sampler": sampler_state, "world": self.info.world, "state": self.state()}
        ckpt.save_checkpoint(self.run / name, ddp.unwrap(model), kind=self.kind, config=self.cfg,
                             feature_hash=self.feature_hash, metrics=metrics, extra=extra)

    def _warm_start(self, model, path) -> None:
        """Copy the weights of checkpoint ``path`` (same kind, features and shape) into ``model``.

        Student projector heads may differ: a checkpoint without them (e.g. an exported model) starts a run
        with heads from its trunk, the heads keeping their fresh (seeded) initialisation; a checkpoint's heads
        are left out of a ``--no-heads`` run. Either way the log says so."""
        net, _ = ckpt.load_checkpoint(path, expected_feature_hash=self.feature_hash, expected_kind=self.kind)
        if net.n_classes == 1 and getattr(model, "n_classes", 1) > 1:
            # a melody-only network (e.g. MSNet vocal) into a harmonic student: its output convolutions fill
            # channel 0 (melody); the harmonic channels and the projector heads keep their fresh initialisation
            from hkdsme.model.msnet_vocal import melody_to_harmonic

            model.load_state_dict(melody_to_harmonic(net.state_dict(), model), strict=True)
            self.log(f"initialised from {path}: melody network into channel 0; harmonic channels"
                     f"{' and projector heads' if getattr(model, 'heads', False) else ''} initialised fresh")
            return
        state, note, fresh = net.state_dict(), "", set()
        mine, theirs = bool(getattr(model, "heads", False)), bool(getattr(net, "heads", False))
        if mine != theirs:
            trunk = ckpt.build_model("student", n_classes=net.n_classes, heads=False).state_dict().keys()
            state = {k: v for k, v in state.items() if k in trunk}
            fresh = set(model.state_dict()) - set(trunk)          # the heads, when this run has them
            note = ("; projector heads not in it: initialised fresh" if mine
                    else "; its projector heads left out (--no-heads)")
        try:
            missing, unexpected = model.load_state_dict(state, strict=not note)
        except RuntimeError as e:
            raise InputError(path, f"--init weights do not fit this network: {str(e).splitlines()[0]}") from None
        if unexpected or set(missing) - fresh:
            raise InputError(path, f"--init weights do not fit this network: {unexpected or missing}")
        self.log(f"initialised from {path}{note}")

    def _load_last(self, model, optimizer, scaler):
        path = self.run / "last.pt"
        net, meta = ckpt.load_checkpoint(path, expected_feature_hash=self.feature_hash, expected_kind=self.kind)
        st = (meta.get("extra") or {}).get("train_state")
        if st is None:
            raise InputError(path, "checkpoint has no training state (not a last.pt of hkd-train)")
        if st["world"] != self.info.world:
            raise InputError(path, f"run was trained with {st['world']} processes, now {self.info.world}: "
                                   "resume with the same number")
        try:
            model.load_state_dict(net.state_dict())
        except RuntimeError as e:
            raise InputError(path, f"weights do not fit this run's model: {str(e).splitlines()[0]}") from None
        optimizer.load_state_dict(_unpack_optimizer(st["optimizer"]))
        if scaler is not None and st["scaler"]:
            scaler.load_state_dict(st["scaler"])
        self.load_state(st["state"])
        return st

    # ---- main
    def fit(self) -> dict:
        """Train ``cfg["epochs"]`` epochs (continuing ``RUN/last.pt`` with ``resume``); returns the last metrics."""
        cfg, info = self.cfg, self.info
        if info.main:
            self.run.mkdir(parents=True, exist_ok=True)
        ddp.barrier(info)
        self._t0 = (time.perf_counter(), time.process_time())
        seed = int(cfg["seed"])
        seed_everything(seed)                       # same initial weights on every rank
        model = self.build_model().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = model
        optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
        scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        start, best, self._best_epoch, stopped = 0, -1.0, -1, False
        if self.resume and (self.run / "last.pt").is_file():
            st = self._load_last(model, optimizer, scaler)
            start, best = int(st["epoch"]) + 1, float(st["best_oa"])
            self._best_epoch = int(st["best_epoch"]) if "best_epoch" in st else self._saved_best_epoch(st["epoch"])
            set_rng_state(st["rng"][info.rank])
            self.log(f"resumed {self.run / 'last.pt'} after epoch {st['epoch']}")
            stopped = bool(st.get("validated")) and self._out_of_patience(start - 1)
        else:
            if self.resume:
                self.log(f"--resume: no {self.run / 'last.pt'} yet, starting fresh")
            if cfg.get("init"):
                self._warm_start(model, cfg["init"])
            seed_everything(seed + info.rank)      # per-rank dropout / worker seeds
        if info.main:
            config_mod.save(cfg, self.run, self.command)
            self.log(f"precision {self.precision} ({self.precision_info.reason}); "
                     f"{'channels_last' if self.channels_last else 'contiguous'}; {self.threads} threads; "
                     f"{runtime.describe() if self.device.type == 'cpu' else self.device}")
        net = ddp.wrap(model, info)
        metrics = {}
        for epoch in range(start, int(cfg["epochs"]) if not stopped else start):
            # wall and CPU seconds of the whole epoch (HCR, training, validation; the teacher cache in epoch 0)
            wall0, cpu0 = (self._t0 if epoch == start else (time.perf_counter(), time.process_time()))
            metrics = dict(self.before_epoch(epoch))
            ds, indices = self.epoch_data(epoch)
            cap = int(cfg["max_steps_per_epoch"]) or None
            sampler = SegmentBatchSampler(indices, int(cfg["batch"]), seed=seed, rank=info.rank,
                                          world=info.world, max_batches=cap)
            sampler.set_epoch(epoch)
            if len(sampler) == 0:
                raise InputError(None, f"{len(indices)} training segments cannot fill one batch of "
                                       f"{cfg['batch']} per process: lower --batch")
            loader = make_loader(ds, sampler, workers=int(cfg["workers"]),
                                 pin_memory=self.device.type == "cuda")
            lr = epoch_lr(cfg, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            metrics.update(self._train_epoch(net, loader, optimizer, scaler, epoch))
            metrics = ddp.mean_over_ranks(metrics, info)
            validated = self.val_ds is not None and self.validates(epoch)
            if info.main and validated:
                metrics.update(self.validate(model))
            metrics["lr"] = lr
            metrics["precision"] = self.precision
            metrics["epoch_wall_s"] = time.perf_counter() - wall0
            metrics["epoch_cpu_s"] = time.process_time() - cpu0      # all threads of this process
            rng_all = ddp.all_gather_objects(rng_state(), info)
            if info.main:
                oa = metrics.get("val_select", -1.0)
                if validated and oa > best or self.val_ds is None:   # no validation: best.pt = the latest epoch
                    best, self._best_epoch = max(oa, best), epoch
                    self._save("best.pt", model, optimizer, scaler, epoch, metrics, best, None, None)
                metrics["best_val_select"] = best
                stopped = validated and self._out_of_patience(epoch)
                if stopped:
                    metrics["early_stop"] = True
                self._save("last.pt", model, optimizer, scaler, epoch, metrics, best, sampler.state_dict(),
                           rng_all)
                self._write_metrics(epoch, metrics)
                self.log(f"epoch {epoch}: loss {metrics['loss_total']:.4f}"
                         + (f", val OA {metrics['val_OA']:.2f}" if "val_OA" in metrics else "")
                         + (f", robust OA {metrics['val_robust_OA']:.2f}" if "val_robust_OA" in metrics else "")
                         + (f", θ {metrics['val_theta']:.3f}" if "val_theta" in metrics else "")
                         + f", {metrics['s_per_step']:.3f} s/step")
            if ddp.all_gather_objects(stopped, info)[0]:          # rank 0 decides for all
                break
            ddp.barrier(info)
        if self._tb is not None:
            self._tb.close()
        ddp.cleanup(info)
        return metrics

    def _out_of_patience(self, epoch: int) -> bool:
        """Early stopping after validated ``epoch`` (module docstring); logs the decision once."""
        patience = int(self.cfg.get("patience", 0))         # runs saved before the option existed: off
        if patience <= 0 or self._best_epoch < 0 or epoch - self._best_epoch < patience:
            return False
        if self.info.main:
            self.log(f"early stop after epoch {epoch}: val_select has not improved on epoch {self._best_epoch}'s "
                     f"in {epoch - self._best_epoch} epochs (patience {patience}); best.pt is epoch {self._best_epoch}")
        return True

    def _saved_best_epoch(self, last_epoch: int) -> int:
        """The epoch best.pt holds, from ``metrics.jsonl`` (last.pt files written before it was stored)."""
        try:
            row = best_row([r for r in read_metrics(self.run) if int(r["epoch"]) <= last_epoch])
        except InputError:
            return -1
        return int(row["epoch"]) if row is not None else -1

    def validates(self, epoch: int) -> bool:
        """Whether validation runs after ``epoch``: every ``val_every``-th epoch and always the last one."""
        every = int(self.cfg.get("val_every", 1))          # runs saved before the option existed: 1
        return (epoch + 1) % every == 0 or epoch + 1 == int(self.cfg["epochs"])

    def validate(self, model) -> dict:
        """Scores on the validation cache (``val_*``) and the robustness cache (``val_robust_*``, if given).

        Voicing decoder: θ is calibrated each epoch for maximum mean OA over the sets (``val_theta``); the
        model-selection score ``val_select`` is the mean OA over the sets (best.pt keeps its maximum).
        """
        cfg = self.cfg
        kw = dict(device=self.device, precision=self.precision, batch=int(cfg["val_batch"]),
                  channels_last=self.channels_last)
        sets = {"val": self.val_ds, **({"val_robust": self.val_robust_ds} if self.val_robust_ds is not None else {})}
        outs = {name: cache_outputs(model, ds, **kw) for name, ds in sets.items()}
        m, theta = {}, None
        if self.decode == "voicing":
            theta, _ = calibrate_on_sets(outs)
            m["val_theta"] = theta
        for name, ds in sets.items():
            mean, _ = score_outputs(ds, outs[name], decode=self.decode, threshold=theta)
            m.update({f"{name}_{k}": v for k, v in mean.items()})
        m["val_select"] = float(np.mean([m[f"{name}_OA"] for name in sets]))
        return m

    def _train_epoch(self, net, loader, optimizer, scaler, epoch: int) -> dict:
        net.train()
        sums: dict[str, torch.Tensor] = {}
        n, t0 = 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch}", disable=not self.info.main, leave=False, dynamic_ncols=True)
        for batch in bar:
            batch = self.to_device(batch)
            with runtime.autocast(self.precision, self.device):
                out = net(batch["x"])
            terms = self.loss(out, batch)             # losses compute in float32 themselves
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(terms["total"]).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                terms["total"].backward()
                optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float()
            n += 1
            if n % 10 == 1:
                bar.set_postfix(loss=f"{float(terms['total'].detach()):.4f}")
        dt = time.perf_counter() - t0
        out = {f"loss_{k}": float(v) / max(n, 1) for k, v in sums.items()}
        out.update(steps=n, s_per_step=dt / max(n, 1))
        if not all(np.isfinite(v) for v in out.values()):
            raise FloatingPointError(f"epoch {epoch}: non-finite loss {out} (lower --lr or use fp32)")
        return out

    val_ds: ShardDataset | None = None
    val_robust_ds: ShardDataset | None = None
