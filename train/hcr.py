"""Harmonic-consistency regularisation (HCR): which pseudo-labelled segments to keep (docs/method.md §2.6).

The student labels every unlabeled 64-frame segment; per frame take the argmax over the 321 rows of each
channel: melody ``m``, harmonic ``h``, sub-harmonic ``s``. A frame is *consistent* when the three agree
on one f0 an octave apart:

- faithful (official): ``m == h − 60 == s + 60``; keep a segment iff ``#consistent > threshold · T``
  (strict: 48/64 is rejected at 0.75);
- default: ``m ≥ 1`` (unvoiced is never consistent), ``h == m + 60`` if ``m + 60 ≤ 320`` else ``h == 0``,
  ``s == m − 60`` if ``m − 60 ≥ 1`` else ``s == 0`` (row 0 = "no harmonic", as in the default loss target);
  keep iff ``#consistent ≥ threshold · #valid frames`` with padded frames (``mask`` False) excluded.

``tolerance`` (bins, default 0 = the paper's exact rule) relaxes the octave equalities to
``|h − (m + 60)| ≤ tolerance`` and ``|s − (m − 60)| ≤ tolerance`` (one bin = 20 cents): a short-budget student
is rarely exact to the bin in all three channels, so the exact rule keeps nothing (docs/results.md).

The two agree except at the octave limits: the official rule can never accept ``m > 260`` (it would need
``h = m + 60 > 320``), and it accepts ``m = 60`` with ``s = 0`` exactly as the default does.
The kept segment's pseudo-label is the student's full soft output (``probs``) for it.
"""
from __future__ import annotations

import numpy as np
import torch

from hkdsme.pipeline.grid import BINS_PER_OCTAVE, N_CLASSES, N_FREQ

OCTAVE = BINS_PER_OCTAVE  # 60 rows


def _as_tensor(x) -> tuple[torch.Tensor, bool]:
    is_np = isinstance(x, np.ndarray)
    t = torch.from_numpy(x) if is_np else x
    if t.dim() != 4 or t.shape[1] < 3 or t.shape[2] != N_FREQ + 1:
        raise ValueError(f"HCR needs (N, {N_CLASSES}, {N_FREQ + 1}, T) outputs, got {tuple(t.shape)}")
    return t, is_np


def consistent_frames(probs_or_logits, faithful: bool = False, tolerance: int = 0):
    """Bool (N, T): frames whose melody / harmonic / sub-harmonic argmaxes are an octave (± ``tolerance`` bins) apart.

    Accepts probs or logits (argmax is the same), torch or numpy (the result has the same type).
    """
    x, is_np = _as_tensor(probs_or_logits)
    idx = x[:, :3].argmax(dim=2)                          # (N, 3, T) rows of melody, harmonic, sub-harmonic
    m, h, s = idx[:, 0], idx[:, 1], idx[:, 2]
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 bins, got {tolerance}")
    if faithful:
        ok = ((h - OCTAVE - m).abs() <= tolerance) & ((s + OCTAVE - m).abs() <= tolerance)
    else:
        up, down = m + OCTAVE, m - OCTAVE
        h_ok = torch.where(up <= N_FREQ, (h - up).abs() <= tolerance, h == 0)
        s_ok = torch.where(down >= 1, (s - down).abs() <= tolerance, s == 0)
        ok = (m >= 1) & h_ok & s_ok
    return ok.numpy() if is_np else ok


def select_segments(probs_or_logits, threshold: float = 0.75, mask=None, faithful: bool = False,
                    tolerance: int = 0):
    """Bool (N,): segments kept as pseudo-labels.

    Faithful: ``count > threshold · T`` (official, strict). Default: ``count ≥ threshold · n_valid``.
    ``count`` and ``n_valid`` only see frames with ``mask`` True (``mask`` (N, T) bool, None = all valid);
    the faithful bar stays ``threshold · T``; a segment with no valid frame is never kept. Same array type
    as the input.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    ok = consistent_frames(probs_or_logits, faithful=faithful, tolerance=tolerance)
    is_np = isinstance(ok, np.ndarray)
    ok_t = torch.from_numpy(ok) if is_np else ok
    n, n_t = ok_t.shape
    if mask is None:
        valid = torch.ones_like(ok_t)
    else:
        valid = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask,
                                dtype=torch.bool, device=ok_t.device)
        if valid.shape != ok_t.shape:
            raise ValueError(f"mask shape {tuple(valid.shape)} != (N, T) = {(n, n_t)}")
    count = (ok_t & valid).sum(dim=1).double()
    if faithful:
        keep = count > threshold * n_t
    else:
        n_valid = valid.sum(dim=1).double()
        keep = (count >= threshold * n_valid - 1e-9) & (n_valid > 0)   # 1e-9: 0.7·10 must not need 8 frames
    return keep.numpy() if is_np else keep


MELODY_TOLERANCE = 2      # bins (40 cents): a pseudo-label's melody row counts as right within this distance


class PseudoLabelQuality:
    """Scores HCR's pseudo-labels against labels the trainer never reads (a pool's labeled part).

    Per segment the pseudo-label's melody is ``m = argmax`` of channel 0 over the 321 rows (row 0 = unvoiced).
    On valid frames (``mask``) of segments whose shards carry labels (``has_labels``), against the withheld
    true rows ``g``:

    - melody accuracy = #(g ≥ 1 and |m − g| ≤ 2) / #(g ≥ 1): voiced frames labeled with the right pitch
      (40 cents; an unvoiced ``m`` counts as wrong);
    - voicing agreement = #((m ≥ 1) == (g ≥ 1)) / #valid frames.

    Both are accumulated over the kept segments and, as the baseline HCR should beat, over all segments of the
    labeled part; ``add`` takes one batch, :meth:`summary` the totals (summable across DDP ranks).
    """

    KEYS = ("n_unlab", "kept_unlab", "n_lab", "kept_lab", "voiced_k", "right_k", "valid_k", "agree_k",
            "voiced_a", "right_a")

    def __init__(self):
        self.c = dict.fromkeys(self.KEYS, 0)

    def add(self, probs: torch.Tensor, keep, has_labels, bins, mask) -> None:
        keep, lab = torch.as_tensor(np.asarray(keep), dtype=torch.bool), torch.as_tensor(np.asarray(has_labels))
        self.c["n_unlab"] += int((~lab).sum())
        self.c["kept_unlab"] += int((keep & ~lab).sum())
        self.c["n_lab"] += int(lab.sum())
        self.c["kept_lab"] += int((keep & lab).sum())
        if not lab.any():
            return
        m = probs[lab, 0].argmax(dim=1).cpu()                       # (n, T)
        g, valid = torch.as_tensor(bins)[lab].long(), torch.as_tensor(mask)[lab].bool()
        voiced = (g >= 1) & valid
        right = voiced & (m >= 1) & ((m - g).abs() <= MELODY_TOLERANCE)
        agree = ((m >= 1) == (g >= 1)) & valid
        k = keep[lab]
        self.c["voiced_a"] += int(voiced.sum())
        self.c["right_a"] += int(right.sum())
        self.c["voiced_k"] += int(voiced[k].sum())
        self.c["right_k"] += int(right[k].sum())
        self.c["valid_k"] += int(valid[k].sum())
        self.c["agree_k"] += int(agree[k].sum())

    @classmethod
    def summary(cls, counts: list[dict]) -> dict:
        """Metrics from one or more ranks' counts: kept per part, and accuracies in % (None where undefined)."""
        t = {k: sum(c[k] for c in counts) for k in cls.KEYS}

        def pct(a, b):
            return round(100.0 * t[a] / t[b], 3) if t[b] else None        # None: JSON null, not NaN

        return {"hcr_kept_unlabeled_part": t["kept_unlab"], "hcr_total_unlabeled_part": t["n_unlab"],
                "hcr_kept_withheld_part": t["kept_lab"], "hcr_total_withheld_part": t["n_lab"],
                "hcr_melody_acc_kept": pct("right_k", "voiced_k"), "hcr_voicing_agree_kept": pct("agree_k", "valid_k"),
                "hcr_melody_acc_all": pct("right_a", "voiced_a")}

    @staticmethod
    def describe(s: dict) -> str:
        """One log line of :meth:`summary`'s metrics."""
        def pct(v):
            return "n/a" if v is None else f"{v:.1f} %"

        out = f"pool without labels: kept {s['hcr_kept_unlabeled_part']} of {s['hcr_total_unlabeled_part']}"
        if s["hcr_total_withheld_part"]:
            out += (f"; with withheld labels: kept {s['hcr_kept_withheld_part']} of {s['hcr_total_withheld_part']}, "
                    f"melody within 40 cents {pct(s['hcr_melody_acc_kept'])} on kept "
                    f"(all: {pct(s['hcr_melody_acc_all'])}), voicing agreement {pct(s['hcr_voicing_agree_kept'])}")
        return out
