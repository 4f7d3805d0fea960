"""The published MSNet vocal melody checkpoint (Hsieh, Su and Yang, ICASSP 2019) as an hkdsme model.

One job: turn the authors' state dict (``MSnet_vocal.pth``: 49 tensors, 519,624 parameters, MIT licence, trained
on 35 MedleyDB vocal tracks) into an hkdsme checkpoint.

Their ``MSnet_vocal`` is our student's trunk with one output channel: the same three BN→Conv5×5→SELU stages with
(4, 1) max-pools, the same bottom conv to one row and the same three unpool stages, softmax over 321 rows (row 0
= non-melody, row k = 31 Hz · 2^((k−1)/60)), and the same parameter names. It therefore loads as
``MSNet(n_classes=1, heads=False)`` with every tensor copied as it is (:func:`import_msnet`), and its output is
the reference network's to float rounding (tests/test_msnet_vocal.py).

Its native input is CFP at 44.1 kHz with a 256-sample hop (5.8 ms); here it reads the project's 8 kHz / 10 ms CFP
(same three channels in the same order, same 31–1250 Hz axis at 60 bins per octave, same per-track
log(1 + x) then min–max normalisation), which is what lets it run on the project's caches and act as a teacher.
The native front end is :mod:`hkdsme.pipeline.cfp_native` (``front_end="native"`` in predict: the posteriors are
interpolated onto the 10 ms grid); docs/msnet_front_end.md compares the two (native: better on real band mixes,
worse on MIR-1K, 2.4× slower), and the 8 kHz CFP stays the default.

Warm-starting a 4-class student from it (:func:`melody_to_harmonic`): every trunk tensor is copied; the two
output convolutions (``bottom``, ``up_conv1``), which have one output channel here and four in the harmonic
student, get the published weights in channel 0 (melody) and keep their fresh initialisation in the harmonic
channels 1–3.
"""
from __future__ import annotations

from pathlib import Path

import torch

from hkdsme.model.student import MSNet
from hkdsme.pipeline.errors import InputError

N_TENSORS = 49
N_PARAMS = 519_624
LICENSE_FILE = "LICENSE-msnet-vocal.txt"         # beside the shipped weights (hkdsme/weights/)
SOURCE = ("Hsieh, Su, Yang: A Streamlined Encoder/Decoder Architecture for Melody Extraction, ICASSP 2019; "
          "github.com/bill317996/Melody-extraction-with-melodic-segnet (MSnet_vocal.pth), MIT licence, "
          "Copyright (c) 2019 Bill Hsieh; trained on 35 MedleyDB vocal tracks")
# the output convolutions: one channel in MSnet_vocal, n_classes in the student
OUTPUT_CONVS = ("bottom.1", "up_conv1.1")


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The published state dict, read without unpickling code; :class:`InputError` naming ``path`` if it is
    not the MSnet_vocal tensors (names and shapes are checked by :func:`import_msnet`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "MSNet checkpoint file not found")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # not a torch file, truncated, pickled code
        raise InputError(path, f"not a readable PyTorch state dict ({type(e).__name__})") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(path, "not a state dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def import_msnet(path) -> MSNet:
    """``MSNet(n_classes=1, heads=False)`` holding the published MSnet_vocal weights, in eval mode."""
    sd = read_state_dict(path)
    net = MSNet(n_classes=1, heads=False)
    mine = net.state_dict()
    if set(sd) != set(mine) or any(sd[k].shape != mine[k].shape for k in mine):
        diff = sorted(set(sd) ^ set(mine)) or [k for k in mine if sd[k].shape != mine[k].shape]
        raise InputError(path, f"not the MSnet_vocal network (mismatched tensors: {', '.join(diff[:4])})")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    return net.eval()


def melody_to_harmonic(melody: dict[str, torch.Tensor], student: MSNet) -> dict[str, torch.Tensor]:
    """State dict for ``student`` (any ``n_classes``, heads or not) from a one-channel MSNet's ``melody`` state
    dict: shared tensors copied, the output convolutions' channel 0 copied, the rest of ``student`` kept."""
    out = {k: v.clone() for k, v in student.state_dict().items()}
    for k, v in melody.items():
        if k not in out:
            raise KeyError(f"{k} is not a tensor of the student")
        layer = k.rsplit(".", 1)[0]
        if layer in OUTPUT_CONVS:          # (1, ...) → row 0 of (C, ...)
            out[k][:1] = v
        elif layer.startswith("bottom.0") or layer.startswith("up_conv1.0") or out[k].shape == v.shape:
            out[k] = v.clone()
        else:
            raise KeyError(f"{k}: shape {tuple(v.shape)} does not fit {tuple(out[k].shape)}")
    return out


def write_checkpoint(src, dst, *, license_text: str | None = None) -> Path:
    """Import ``src`` (the published state dict) and save it as an hkdsme student checkpoint ``dst``
    (``n_classes=1``, no heads, the project's 8 kHz CFP feature hash). ``extra`` records the source and the MIT
    licence text (``license_text``, default: the ``LICENSE`` file beside ``src`` if there is one), which must stay
    with anything derived from these weights."""
    from hkdsme.model.checkpoint import save_checkpoint
    from hkdsme.pipeline import grid

    src = Path(src)
    net = import_msnet(src)
    if license_text is None:
        lic = src.parent / "LICENSE"
        license_text = lic.read_text(encoding="utf-8") if lic.is_file() else None
    if not license_text or "MIT License" not in license_text:
        raise InputError(src, "the MIT licence text of the weights is needed (a LICENSE file beside them, or "
                              "--license FILE): it must stay with anything derived from them")
    return save_checkpoint(dst, net, kind="student", config={"source": "msnet-vocal", "harmonic": False},
                           feature_hash=grid.feature_hash(),
                           extra={"source": SOURCE, "license": license_text, "imported_from": src.name})
