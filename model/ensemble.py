"""Ensemble teacher: frame-wise fusion of several networks' posteriors (e.g. ``ftanet`` and MSNet vocal).

One job: one teacher made of members with weights. For every class channel c, frame t and row r::

    p(c, r, t) = Σ_i w_i · p_i(c, r, t) / Σ_i w_i        over the members i that have channel c

so the melody channel (c = 0) mixes every member, and the harmonic channels (1–3) come from the members that
predict them (a one-channel melody network such as MSNet vocal has only c = 0). Each p_i is the member's softmax
over the 321 rows, so the fused p is again a distribution per channel and frame. The output's ``logits`` are
``log p`` (softmax(log p) = p), so everything that reads a teacher's logits — the teacher cache, KL, CGL, HCR —
takes an ensemble unchanged.

A spec names the members and their weights: ``"hkdsme/weights/ftanet.pt*0.5+runs/msnet-vocal.pt*0.5"``
(``*w`` optional, default 1; weights are normalised). :func:`ensemble_key` is the identity of a spec for the
teacher cache: every member's file hash and weight, so changing either rebuilds the cache.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hkdsme.model.output import NetOutput, check_input

SEP, WEIGHT = "+", "*"
LOG_FLOOR = 1e-30          # log of a zero probability stays finite (float16-safe after the cache's clamp)


def is_ensemble_spec(spec) -> bool:
    return isinstance(spec, str) and SEP in spec


def parse_spec(spec: str) -> list[tuple[str, float]]:
    """``"a.pt*0.7+b.pt*0.3"`` → ``[("a.pt", 0.7), ("b.pt", 0.3)]``; ValueError on an empty member or a weight
    that is not a positive number."""
    members = []
    for part in spec.split(SEP):
        path, _, w = part.strip().partition(WEIGHT)
        path = path.strip()
        if not path:
            raise ValueError(f"ensemble teacher {spec!r}: empty member")
        try:
            weight = float(w) if w.strip() else 1.0
        except ValueError:
            raise ValueError(f"ensemble teacher {spec!r}: weight {w!r} of {path} is not a number") from None
        if not weight > 0 or weight != weight or weight == float("inf"):
            raise ValueError(f"ensemble teacher {spec!r}: weight of {path} must be a positive number")
        members.append((path, weight))
    if len(members) < 2:
        raise ValueError(f"ensemble teacher {spec!r}: needs at least two members")
    return members


class TeacherEnsemble(nn.Module):
    """Members (networks returning :class:`NetOutput`) fused with ``weights`` (normalised per channel)."""

    def __init__(self, members: list[nn.Module], weights: list[float]):
        super().__init__()
        if len(members) != len(weights) or not members:
            raise ValueError("one weight per member")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]), persistent=False)
        self.n_classes = max(int(m.n_classes) for m in members)

    def forward(self, x: torch.Tensor) -> NetOutput:
        check_input(x)
        fused = None
        norm = torch.zeros(self.n_classes, device=x.device)
        for m, w in zip(self.members, self.weights):
            p = torch.softmax(m(x).logits.float(), dim=2)            # (B, C_i, 321, T)
            c = p.shape[1]
            if fused is None:
                fused = x.new_zeros((x.shape[0], self.n_classes) + p.shape[2:], dtype=torch.float32)
            fused[:, :c] += w * p
            norm[:c] += w
        fused = fused / norm.view(1, -1, 1, 1)
        return NetOutput(fused, torch.log(fused.clamp_min(LOG_FLOOR)), ())


def load_ensemble(spec: str, *, expected_feature_hash: str | None = None, map_location="cpu") -> TeacherEnsemble:
    """Build the ensemble a spec names (each member read with :func:`~hkdsme.model.checkpoint.load_checkpoint`,
    which names a bad file)."""
    from hkdsme.model.checkpoint import load_checkpoint

    members, weights = [], []
    for path, w in parse_spec(spec):
        net, _ = load_checkpoint(path, expected_feature_hash=expected_feature_hash, map_location=map_location)
        members.append(net)
        weights.append(w)
    return TeacherEnsemble(members, weights).eval()


def ensemble_key(spec: str) -> str:
    """Identity of an ensemble for the teacher cache: ``hash*weight`` of every member, in order."""
    from hkdsme.train.teacher_cache import file_hash

    return SEP.join(f"{file_hash(Path(p))}{WEIGHT}{w:g}" for p, w in parse_spec(spec))
