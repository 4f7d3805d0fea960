"""One-file checkpoints: state dict + plain-python metadata, loadable with ``torch.load(weights_only=True)``.

File content (a dict)::

    {"format": "hkdsme-checkpoint", "format_version": 1,
     "kind": "student" | "teacher", "n_classes": int, "heads": bool,   # enough to rebuild the network
     "feature_hash": str,                                            # grid.feature_hash() of the training features
     "config": dict, "metrics": dict | None, "extra": dict | None, "torch_version": str,
     "state_dict": {name: tensor}}

Metadata may only hold tensors, dicts with str keys, lists, str, int, float, bool and None (tuples are
stored as lists, ``Path`` as str, numpy scalars as python numbers), so loading never unpickles code.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hkdsme.model.student import MSNet
from hkdsme.model.teacher import FTANet
from hkdsme.pipeline.atomic import atomic_path
from hkdsme.pipeline.errors import InputError, OutputError, os_reason
from hkdsme.pipeline.grid import N_CLASSES

FORMAT = "hkdsme-checkpoint"
FORMAT_VERSION = 1
KINDS = {"student": MSNet, "teacher": FTANet}
MAX_CLASSES = N_CLASSES   # output channels a network of this package has: 4 (harmonic) or 1 (melody only)


def build_model(kind: str, *, n_classes: int = 4, heads: bool = True) -> nn.Module:
    """A fresh network: ``MSNet(n_classes, heads)`` for "student", ``FTANet(n_classes)`` for "teacher"
    (``heads`` is ignored for the teacher, which has none)."""
    if kind == "student":
        return MSNet(n_classes=n_classes, heads=heads)
    if kind == "teacher":
        return FTANet(n_classes=n_classes)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(KINDS)}")


def _plain(obj, where: str):
    """Copy of ``obj`` made only of types the weights-only unpickler accepts; TypeError otherwise."""
    if obj is None:
        return obj
    for t in (bool, int, float, str):   # exact types: subclasses (TorchVersion, IntEnum) need their globals
        if isinstance(obj, t):
            return t(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: dict keys must be str, got {k!r}")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: cannot store {type(obj).__name__} in a checkpoint (plain python types only)")


def _unwrap(model: nn.Module) -> nn.Module:
    # DataParallel/DDP keep the net in .module, torch.compile in ._orig_mod: store the bare names
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_checkpoint(path, model: nn.Module, *, kind: str, config: dict, feature_hash: str,
                    metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` + metadata to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    net = _unwrap(model)
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(KINDS)}")
    if not isinstance(net, KINDS[kind]):
        raise TypeError(f"kind={kind!r} needs a {KINDS[kind].__name__}, got {type(net).__name__}")
    if not isinstance(feature_hash, str) or not feature_hash:
        raise ValueError("feature_hash must be a non-empty str (grid.feature_hash())")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "n_classes": int(net.n_classes),
        "heads": bool(getattr(net, "heads", False)),
        "feature_hash": feature_hash,
        "config": _plain(dict(config), "config"),
        "metrics": _plain(metrics, "metrics"),
        "extra": _plain(extra, "extra"),
        "torch_version": str(torch.__version__),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
    }
    path = Path(path)
    sink = None
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            sink = _Sink(f)
            torch.save(payload, sink)
            f.flush()
            os.fsync(f.fileno())   # a checkpoint is what a crash must not lose
    except (OSError, RuntimeError) as e:
        # torch reports a failed write (disk full) as RuntimeError("... unexpected pos ..."): name the OS's reason
        cause = sink.error if sink is not None and sink.error is not None else e
        if isinstance(e, RuntimeError) and not isinstance(cause, OSError):
            raise
        kept = "; the previous file is unchanged" if path.is_file() else ""
        raise OutputError(path, f"cannot write checkpoint: {os_reason(cause)}{kept}") from None
    return path


class _Sink:
    """The file object ``torch.save`` writes to, remembering the OSError a write raised (torch replaces it by a
    RuntimeError of its own)."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _read(path: Path, *, mmap: bool, map_location="cpu") -> dict:
    if not path.is_file():
        raise InputError(path, "checkpoint file not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # truncated zip, random bytes, pickled code, ...
        raise InputError(path, f"not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(path, "not an hkdsme checkpoint (no 'format': 'hkdsme-checkpoint' entry)")
    return payload


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_meta(path, payload: dict) -> None:
    """Check type and range of every metadata field of a checkpoint ``payload`` (before a network is built from
    it, so a hostile or damaged file can neither allocate unbounded memory nor fail deep inside a model).
    Raises :class:`InputError` naming ``path`` and the field."""
    def bad(field, want):
        raise InputError(path, f"bad checkpoint metadata: {field!r} must be {want}, got {payload.get(field)!r:.80}")

    if payload.get("format_version") != FORMAT_VERSION:
        raise InputError(path, f"unsupported checkpoint format_version {payload.get('format_version')!r}")
    if payload.get("kind") not in KINDS:
        raise InputError(path, f"unknown model kind {payload.get('kind')!r} in checkpoint")
    n = payload.get("n_classes")
    if not (_is_int(n) and 1 <= n <= MAX_CLASSES):
        bad("n_classes", f"an int in 1..{MAX_CLASSES}")
    if not isinstance(payload.get("heads"), bool):
        bad("heads", "a bool")
    fh = payload.get("feature_hash")
    if not (isinstance(fh, str) and 0 < len(fh) <= 64):
        bad("feature_hash", "a non-empty str")
    if not isinstance(payload.get("config"), dict):
        bad("config", "a dict")
    for field in ("metrics", "extra"):
        if not isinstance(payload.get(field), (dict, type(None))):
            bad(field, "a dict or null")
    if not isinstance(payload.get("torch_version", ""), str):
        bad("torch_version", "a str")
    sd = payload.get("state_dict")
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise InputError(path, "bad checkpoint: 'state_dict' must map parameter names to tensors")


def _check_finite(path, state_dict: dict) -> None:
    for name, t in state_dict.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(path, f"checkpoint weights contain NaN or inf (first in {name!r}): a diverged or "
                                   "damaged run; use another checkpoint")


def read_meta(path, *, expected_kind: str | None = None) -> dict:
    """The checkpoint's metadata (all but the weights), checked, without reading or building the network: the
    file is memory-mapped and only its small pickle is parsed. For checks before any work (the CLI's kinds)."""
    path = Path(path)
    payload = _read(path, mmap=True)
    check_meta(path, payload)
    if expected_kind is not None and payload["kind"] != expected_kind:
        raise InputError(path, f"checkpoint holds a {payload['kind']} network, expected a {expected_kind}")
    return {k: v for k, v in payload.items() if k != "state_dict"}


def load_checkpoint(path, *, expected_feature_hash: str | None = None, expected_kind: str | None = None,
                    map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network of a checkpoint; returns ``(model in eval mode, meta)`` (meta = all but the weights).

    Raises :class:`InputError` naming the file if it is missing, unreadable, not an hkdsme checkpoint, has
    metadata of a wrong type or range, weights with NaN/inf, is of another kind than ``expected_kind``, or was
    trained on features other than ``expected_feature_hash``.
    """
    path = Path(path)
    payload = _read(path, mmap=False, map_location=map_location)
    check_meta(path, payload)
    kind = payload["kind"]
    if expected_kind is not None and kind != expected_kind:
        raise InputError(path, f"checkpoint holds a {kind} network, expected a {expected_kind}")
    have = payload.get("feature_hash")
    if expected_feature_hash is not None and have != expected_feature_hash:
        raise InputError(path, f"checkpoint was trained on features {have}, data has {expected_feature_hash}: "
                               "re-extract or use a matching checkpoint")
    _check_finite(path, payload["state_dict"])
    model = build_model(kind, n_classes=payload["n_classes"], heads=payload["heads"])
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError) as e:
        raise InputError(path, f"weights do not fit a {kind} network: {str(e).splitlines()[0][:200]}") from e
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta


EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_checkpoint(src, dst, *, inference: bool = True, dtype: str = "float32") -> Path:
    """Copy a training checkpoint to a small inference one (e.g. the embedded default model).

    Drops the training state (optimiser, RNG, sampler: ``extra["train_state"]``) and, with ``inference``, the
    student's projector heads, which only serve training (the output never depends on them).

    ``dtype`` stores the floating-point weights as ``float16`` or ``bfloat16`` (half the bytes; integer buffers
    such as BatchNorm's step counter stay as they are). :func:`load_checkpoint` puts them back into the fp32
    network, so the model is the exported weights rounded once: float16 keeps 11 significant bits (relative
    error ≤ 2⁻¹¹ ≈ 4.9e-4 per weight, the better choice for weights, which sit far inside its range), bfloat16 8.
    The chosen dtype is recorded in ``extra["export_dtype"]``.
    """
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"unknown export dtype {dtype!r}; expected one of {sorted(EXPORT_DTYPES)}")
    model, meta = load_checkpoint(src)
    if inference and meta["kind"] == "student" and meta["heads"]:
        trunk = build_model("student", n_classes=meta["n_classes"], heads=False)
        keep = trunk.state_dict().keys()
        trunk.load_state_dict({k: v for k, v in model.state_dict().items() if k in keep}, strict=True)
        model = trunk
    extra = {k: v for k, v in (meta.get("extra") or {}).items() if k != "train_state"}
    extra["exported_from"] = str(src)
    if dtype != "float32":
        extra["export_dtype"] = dtype
        model = model.to(EXPORT_DTYPES[dtype])      # floating parameters and buffers only; ints stay
    return save_checkpoint(dst, model, kind=meta["kind"], config=meta["config"], feature_hash=meta["feature_hash"],
                           metrics=meta.get("metrics"), extra=extra)
