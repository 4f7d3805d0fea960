"""The HKDSME training loss (docs/method.md §2.7), faithful to the official code or done right (default).

    L = CE(student, Y) + CGL(student, teacher, Y) + 0.1 · Σ_heads CGL(head, teacher, Y) + KL(teacher ‖ student)

``faithful=True`` reproduces the official terms exactly (reference ``losses.json``):

- CE  = ``nn.CrossEntropyLoss`` over the CLASS dim of the freq-softmaxed probs vs ``argmax_c Y`` (first max),
  mean over (b, f, t);
- CGL = :func:`~hkdsme.train.cgl.cgl_class_axis` on probs (heads: their freq-softmax) vs the teacher's probs;
- KL  = ``nn.KLDivLoss()`` ('mean', divided by every element) of ``log(p_s + 1e−8)`` vs ``p_t``.

Default (``faithful=False``) works on logits, with distributions over the 321 FREQUENCY rows per channel
(docs/method_differences.md says why):

- Y is turned into a per-channel row distribution by :func:`target_distribution`;
- CE  = mean_{b,c,t valid} −Σ_f Y·log_softmax_f(logits);
- CGL = :func:`~hkdsme.train.cgl.cgl_freq_axis`;
- KL  = mean_{b,c,t valid} Σ_f t̃·(log t̃ − log_softmax_f(s/τ))·τ², t̃ = softmax_f(t/τ).

Switches: ``use_kd=False`` (or no teacher) drops every teacher term; ``use_cgl=False`` drops the CGL terms.
Whenever the heads get no CGL they are trained by CE, still weighted 0.1. ``harmonic=False`` uses channel 0
(melody) only. Padded frames (``mask`` False) never count. Losses are float32 even under bf16 autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hkdsme.train.cgl import EPS, LOG_FLOOR, TAU, cgl_class_axis, cgl_freq_axis, frame_mean

AUX_WEIGHT = 0.1
TERMS = ("ce", "cgl", "aux1", "aux2", "aux3", "aux", "kl", "total")


def target_distribution(y: torch.Tensor) -> torch.Tensor:
    """Per-channel distribution over rows: ``Y[:, c, :, t] / Σ_f Y[:, c, f, t]`` (float32).

    A column with no target row (harmonic / sub-harmonic absent: unvoiced, k+60 > 320, k−60 < 1) targets
    row 0 ("none"), as the melody channel does for unvoiced frames. A one-hot channel stays one-hot, the
    non-melody channel becomes uniform over its rows, a soft pseudo-label (already a distribution) is kept.
    """
    y = y.detach().float()
    total = y.sum(dim=2, keepdim=True)
    none = torch.zeros_like(y)
    none[:, :, 0] = 1.0
    return torch.where(total > 0, y / total.clamp_min(torch.finfo(y.dtype).tiny), none)


# ---------------------------------------------------------------------------------------------- faithful terms
def ce_class_axis(probs: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Official CE: ``CrossEntropyLoss`` over dim 1 of ``probs`` vs ``argmax_c Y``, mean over (b, f, t)."""
    with torch.autocast(probs.device.type, enabled=False):
        target = y.detach().float().argmax(dim=1)          # first maximum on ties
        if mask is None:
            return F.cross_entropy(probs.float(), target)
        return frame_mean(F.cross_entropy(probs.float(), target, reduction="none"), mask)


def kl_faithful(s_probs: torch.Tensor, t_probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Official ``KLDivLoss()(log(p_s + 1e−8), p_t)``: mean over EVERY element of p_t·(log p_t − log(p_s+1e−8))."""
    with torch.autocast(s_probs.device.type, enabled=False):
        log_s = torch.log(s_probs.float() + LOG_FLOOR)
        t = t_probs.detach().float()
        # reduction="none" + mean == the official 'mean' bit for bit, without its deprecation warning
        return frame_mean(F.kl_div(log_s, t, reduction="none"), mask)


# ----------------------------------------------------------------------------------------------- default terms
def ce_freq_axis(logits: torch.Tensor, y_dist: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_{b,c,t valid} −Σ_f Y·log_softmax_f(logits)`` for a target distribution ``y_dist`` over rows."""
    with torch.autocast(logits.device.type, enabled=False):
        per = -(y_dist.detach().float() * torch.log_softmax(logits.float(), dim=2)).sum(dim=2)
        return frame_mean(per, mask)


def kl_freq_axis(s_logits: torch.Tensor, t_logits: torch.Tensor, *, tau: float = TAU,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_{b,c,t valid} Σ_f t̃·(log t̃ − log_softmax_f(s/τ))·τ²`` with t̃ = softmax_f(t/τ)."""
    with torch.autocast(s_logits.device.type, enabled=False):
        log_t = torch.log_softmax(t_logits.detach().float() / tau, dim=2)
        log_s = torch.log_softmax(s_logits.float() / tau, dim=2)
        per = (log_t.exp() * (log_t - log_s)).sum(dim=2) * tau ** 2
        return frame_mean(per, mask)


# ------------------------------------------------------------------------------------------------- composition
def compose(main, heads, teacher, y, mask=None, *, faithful=False, eps=EPS, tau=TAU, use_cgl=True,
            use_kd=True, cgl_clamp=None) -> dict[str, torch.Tensor]:
    """Total loss from the maps each mode works on.

    Faithful: ``main``/``heads``/``teacher`` are freq-softmaxed outputs (official ``output``, ``out1..3``,
    teacher ``output``) and ``y`` the raw 4-class map or soft pseudo-label. Default: they are logits and ``y``
    is turned into row distributions here. ``teacher=None`` or ``use_kd=False``: no teacher terms.
    ``cgl_clamp`` (default mode only): clamp the CGL weights at 0 (see :func:`~hkdsme.train.cgl.cgl_freq_axis`);
    ``None`` = on in default mode. Unclamped, spread targets (non-melody channel, soft pseudo-labels) get negative
    weights and CGL rewards peaky students (docs/method_differences.md).
    Returns scalar float32 tensors ``ce, cgl, aux1.., aux (= 0.1·Σ heads), kl, total``.
    """
    if main.dim() != 4 or main.shape != y.shape:
        raise ValueError(f"student {tuple(main.shape)} and target {tuple(y.shape)} must both be (B, C, 321, T)")
    for h in heads:
        if h.shape != main.shape:
            raise ValueError(f"head shape {tuple(h.shape)} != student shape {tuple(main.shape)}")
    if teacher is not None and teacher.shape != main.shape:
        raise ValueError(f"teacher shape {tuple(teacher.shape)} != student shape {tuple(main.shape)}")

    if cgl_clamp is None:
        cgl_clamp = not faithful
    if faithful:
        if cgl_clamp:
            raise ValueError("cgl_clamp is a default-mode option; the official CGL has no clamp")
        target = y
        ce = lambda s: ce_class_axis(s, target, mask)                                         # noqa: E731
        cgl = lambda s: cgl_class_axis(s, teacher, target, eps=eps, tau=tau, mask=mask)       # noqa: E731
        kl = lambda s: kl_faithful(s, teacher, mask)                                          # noqa: E731
    else:
        target = target_distribution(y)
        ce = lambda s: ce_freq_axis(s, target, mask)                                          # noqa: E731
        cgl = lambda s: cgl_freq_axis(s, teacher, target, eps=eps, tau=tau, mask=mask,     # noqa: E731
                                      clamp=cgl_clamp)
        kl = lambda s: kl_freq_axis(s, teacher, tau=tau, mask=mask)                           # noqa: E731

    kd = use_kd and teacher is not None
    with_cgl = kd and use_cgl
    zero = main.new_zeros((), dtype=torch.float32)
    out = {"ce": ce(main), "cgl": cgl(main) if with_cgl else zero, "kl": kl(main) if kd else zero}
    head_terms = [cgl(h) if with_cgl else ce(h) for h in heads]       # heads learn by CE when no CGL
    for i, term in enumerate(head_terms, start=1):
        out[f"aux{i}"] = term
    out["aux"] = AUX_WEIGHT * torch.stack(head_terms).sum() if head_terms else zero
    out["total"] = out["ce"] + out["cgl"] + out["aux"] + out["kl"]
    return out


def _logits(x):
    return x.logits if hasattr(x, "logits") else x


def _channels(x: torch.Tensor, harmonic: bool) -> torch.Tensor:
    return x if harmonic else x[:, :1]


def hkdsme_loss(student, teacher, target: torch.Tensor, mask: torch.Tensor | None = None, *,
                faithful: bool = False, eps: float = EPS, tau: float = TAU, use_cgl: bool = True,
                use_kd: bool = True, harmonic: bool = True, cgl_clamp: bool | None = None) -> dict[str, torch.Tensor]:
    """HKDSME loss of one batch.

    ``student``: a ``NetOutput`` (``probs``, ``logits`` (B, C, 321, T), ``aux_logits``); ``teacher``: its
    logits (B, C, 321, T), a ``NetOutput`` (its ``logits`` are used) or None; ``target``: 4-class harmonic map
    (one-hot per (row, frame) over classes) or the soft probs of a pseudo-labelled segment; ``mask`` (B, T)
    bool, False = padded frame. ``cgl_clamp``: see :func:`compose`. Returns the dict of :func:`compose`;
    ``total`` is what to backpropagate.
    """
    t_logits = None if teacher is None else _logits(teacher)
    if faithful:
        if not harmonic:
            raise ValueError("faithful=True needs the 4-class harmonic output (CE over classes)")
        main = student.probs if student.probs is not None else torch.softmax(student.logits.float(), dim=2)
        heads = [torch.softmax(h.float(), dim=2) for h in student.aux_logits]
        t = None if t_logits is None else torch.softmax(t_logits.detach().float(), dim=2)
    else:
        main = _channels(student.logits, harmonic)
        heads = [_channels(h, harmonic) for h in student.aux_logits]
        t = None if t_logits is None else _channels(t_logits, harmonic)
        target = _channels(target, harmonic)
    return compose(main, heads, t, target, mask, faithful=faithful, eps=eps, tau=tau, use_cgl=use_cgl,
                   use_kd=use_kd, cgl_clamp=cgl_clamp)


def supervised_loss(out, target: torch.Tensor, mask: torch.Tensor | None = None, *, faithful: bool = False,
                    harmonic: bool = True) -> dict[str, torch.Tensor]:
    """Loss without a teacher (teacher pre-training, ``use_kd=False``): CE + 0.1·Σ heads' CE, other terms 0."""
    return hkdsme_loss(out, None, target, mask, faithful=faithful, use_kd=False, harmonic=harmonic)
