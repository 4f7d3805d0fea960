"""Confidence-guided loss (CGL) of HKDSME (docs/method.md §2.7).

For a student map ``s``, a teacher map ``t`` and a target ``Y`` (all (B, C, F, T), F = 321 rows)::

    CGL(s, t, Y) = mean  Σ_axis  −[(t̃ + Y)^ε − Y] · log(s̃ + 1e−8)        ε = 1.5, τ = 1

The weight ``(t̃ + Y)^ε − Y`` is the teacher's confidence ``t̃^ε`` on rows the target leaves empty and
``(t̃ + 1)^ε − 1 ≥ ε·t̃`` on a one-hot target row: the student is pulled towards the target row in
proportion to how sure the teacher is of it, and towards the teacher's other mass as in plain distillation
(ε = 1 reduces it to the distillation cross-entropy −Σ t̃·log s̃).

Two forms, chosen by which axis the distributions live on:

- :func:`cgl_class_axis` — the official code (faithful): ``s`` and ``t`` are the networks' *outputs*,
  already softmaxed over frequency; s̃ = softmax_c(s/τ), t̃ = softmax_c(t/τ) over the CLASS dim (dim 1),
  the sum runs over the C classes and the mean over every (b, f, t).
- :func:`cgl_freq_axis` — the method done right (default): ``s`` and ``t`` are *logits*;
  s̃ = softmax_f(s/τ), t̃ = softmax_f(t/τ) over the 321 FREQUENCY rows, ``Y`` is the per-channel target
  distribution over rows; the sum runs over f and the mean over every (b, c, t) of a valid frame.

Both are computed in float32 with autocast off, whatever the input dtype.
"""
from __future__ import annotations

import torch

EPS = 1.5
TAU = 1.0
LOG_FLOOR = 1e-8  # the official log(s + 1e-8): caps the loss of a row the student gives ~0 at −log(1e-8)


def frame_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` (B, ..., T) over every element whose frame ``mask[b, t]`` is True.

    ``mask=None`` is a plain ``x.mean()``. Masked frames are selected out (not multiplied by 0), so
    garbage or inf in padded frames never reaches the result; an all-False mask gives 0.
    """
    if mask is None:
        return x.mean()
    if mask.shape != (x.shape[0], x.shape[-1]):
        raise ValueError(f"mask shape {tuple(mask.shape)} != (B, T) = {(x.shape[0], x.shape[-1])}")
    m = mask.to(device=x.device, dtype=torch.bool).reshape(x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1])
    m = m.expand_as(x)
    return torch.where(m, x, x.new_zeros(())).sum() / m.sum().clamp_min(1)


def _check(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
    if s.dim() != 4 or s.shape != t.shape or s.shape != y.shape:
        raise ValueError(f"CGL needs equal (B, C, F, T) shapes, got s {tuple(s.shape)}, t {tuple(t.shape)}, "
                         f"Y {tuple(y.shape)}")


def _weighted_nll(s_dist: torch.Tensor, t_dist: torch.Tensor, y: torch.Tensor, eps: float, dim: int,
                  clamp: bool = False):
    """Σ_dim −[(t̃ + Y)^ε − Y] · log(s̃ + 1e−8), the weight clamped at 0 if ``clamp``."""
    w = (t_dist + y).pow(eps) - y
    if clamp:
        w = w.clamp_min(0.0)
    return -(w * torch.log(s_dist + LOG_FLOOR)).sum(dim=dim)


def cgl_class_axis(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, *, eps: float = EPS, tau: float = TAU,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Official CGL: softmax over the class dim of the (already freq-softmaxed) outputs.

    ``CGL = mean_{b,f,t} Σ_c −[(t̃_c + Y_c)^ε − Y_c] · log(s̃_c + 1e−8)``, s̃ = softmax_c(s/τ),
    t̃ = softmax_c(t/τ). ``s``: student output (B, C, F, T); ``t``: teacher output; ``y``: one-hot 4-class map
    or soft pseudo-label. ``mask`` (B, T) restricts the mean to valid frames. The teacher and target are
    constants (no gradient).
    """
    _check(s, t, y)
    with torch.autocast(s.device.type, enabled=False):
        s, t, y = s.float(), t.detach().float(), y.detach().float()
        per = _weighted_nll(torch.softmax(s / tau, dim=1), torch.softmax(t / tau, dim=1), y, eps, dim=1)
        return frame_mean(per, mask)                       # per: (B, F, T)


def cgl_freq_axis(s_logits: torch.Tensor, t_logits: torch.Tensor, y: torch.Tensor, *, eps: float = EPS,
                  tau: float = TAU, mask: torch.Tensor | None = None, clamp: bool = False) -> torch.Tensor:
    """CGL over frequency: ``mean_{b,c,t valid} Σ_f −[(t̃ + Y)^ε − Y] · log(s̃ + 1e−8)``.

    s̃ = softmax_f(s_logits/τ), t̃ = softmax_f(t_logits/τ) over the row dim (2); ``y`` is the target
    distribution over rows for every (b, c, t) (see :func:`hkdsme.train.losses.target_distribution`).
    The teacher and target are constants (no gradient).

    Caution: for a target row with 0 < Y < 1 (the uniform non-melody channel, soft pseudo-labels) the weight
    ``(t̃ + Y)^ε − Y`` is NEGATIVE wherever the teacher is unsure (t̃ ≲ Y^(1/ε) − Y), so minimising pushes
    s̃ there down to the 1e−8 floor and the loss can go below 0 (to about −16 per frame on a uniform
    320-row target). ``clamp=True`` uses ``max(weight, 0)`` instead; one-hot targets are unaffected.
    """
    _check(s_logits, t_logits, y)
    with torch.autocast(s_logits.device.type, enabled=False):
        s, t, y = s_logits.float(), t_logits.detach().float(), y.detach().float()
        per = _weighted_nll(torch.softmax(s / tau, dim=2), torch.softmax(t / tau, dim=2), y, eps, dim=2,
                            clamp=clamp)
        return frame_mean(per, mask)                       # per: (B, C, T)
