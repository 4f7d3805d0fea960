"""Teacher network: FTANet (Yu et al., 2021) with 4 harmonic output channels (docs/method.md §2.4).

    x ─BN─┬─ bm_layer: Conv(4,1)/4 ─SELU─ Conv(4,1)/4 ─SELU─ Conv(4,1)/4 ─SELU─ Conv(5,1)/5 ─SELU → (C,1,T)
          └─ FTA+SF 3→32 ─MaxPool2×2─ FTA+SF 32→64 ─MaxPool2×2─ FTA+SF 64→128 ─ FTA+SF 128→128
             ─Upsample×2─ FTA+SF 128→64 ─Upsample×2─ FTA+SF 64→32 ─ FTA+SF 32→C → (C,320,T)
    logits = cat(bm, main) along frequency (C,321,T);  probs = softmax over frequency.

FTA module on x (after its own BN):
    x_r = ReLU(Conv1×1 x)
    x_t = SELU(Conv5×5 SELU(Conv3×3 x)) · softmax_t( SELU(Conv1d_3 SELU(Conv1d_3 mean_f x)) )   time attention
    x_f = SELU(Conv5×5 SELU(Conv3×3 x)) · softmax_f( SELU(Conv1d_3 SELU(Conv1d_3 mean_t x)) )   freq attention
SF module (selective fusion, SK-net style): z = SELU(W_f BN1d(avgpool(x_r + x_t + x_f))),
    a_i = softmax over CHANNELS of W_i z for each branch i ∈ (r, t, f); out = Σ_i a_i · x_i
    (the original's quirk: SK-nets normalise over the branches instead).

The two 2×2 max-pools need F and T divisible by 4; for other T the decoder output is average-pooled back to
(320, T) (the adaptive pool of the original, which is the identity when T % 4 == 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hkdsme.model.output import NetOutput, check_input, freq_softmax


def _conv1d_selu(c_in, c_out, k=3):
    return nn.Sequential(nn.Conv1d(c_in, c_out, k, padding=(k - 1) // 2), nn.SELU())


def _conv2d_selu(c_in, c_out, k):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=(k - 1) // 2), nn.SELU())


class FTAModule(nn.Module):
    """Frequency-temporal attention: returns the three branches (residual, time-attended, freq-attended)."""

    def __init__(self, c_in: int, c_out: int, kt: int = 3, kf: int = 3):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.r_cn = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.ReLU())
        self.ta_cn1 = _conv1d_selu(c_in, c_out, kt)
        self.ta_cn2 = _conv1d_selu(c_out, c_out, kt)
        self.ta_cn3 = _conv2d_selu(c_in, c_out, 3)
        self.ta_cn4 = _conv2d_selu(c_out, c_out, 5)
        self.fa_cn1 = _conv1d_selu(c_in, c_out, kf)
        self.fa_cn2 = _conv1d_selu(c_out, c_out, kf)
        self.fa_cn3 = _conv2d_selu(c_in, c_out, 3)
        self.fa_cn4 = _conv2d_selu(c_out, c_out, 5)

    def forward(self, x: torch.Tensor):
        x = self.bn(x)
        x_r = self.r_cn(x)
        a_t = torch.softmax(self.ta_cn2(self.ta_cn1(x.mean(dim=2))), dim=-1)   # (B,C,T), over time
        x_t = self.ta_cn4(self.ta_cn3(x)) * a_t.unsqueeze(2)
        a_f = torch.softmax(self.fa_cn2(self.fa_cn1(x.mean(dim=3))), dim=-1)   # (B,C,F), over frequency
        x_f = self.fa_cn4(self.fa_cn3(x)) * a_f.unsqueeze(3)
        return x_r, x_t, x_f


class SFModule(nn.Module):
    """Selective fusion of ``n_inputs`` same-shape branches with per-channel softmax weights."""

    def __init__(self, n_inputs: int, channels: int, reduction: int = 4, limitation: int = 4):
        super().__init__()
        hidden = max(channels // reduction, limitation)
        self.f_bn = nn.BatchNorm1d(channels)
        self.f_linear = nn.Sequential(nn.Linear(channels, hidden), nn.SELU())
        self.s_linear = nn.ModuleList(nn.Linear(hidden, channels) for _ in range(n_inputs))

    def forward(self, xs) -> torch.Tensor:
        fused = sum(xs[1:], xs[0]).mean(dim=(2, 3))                        # (B,C)
        z = self.f_linear(self.f_bn(fused))
        # softmax over the CHANNEL axis of (B,C,n), as in the original FTANet (not over the branches as
        # in SK-nets): each branch's weights sum to 1 across channels.
        w = torch.softmax(torch.stack([s(z) for s in self.s_linear], dim=-1), dim=1)
        return sum(x * w[:, :, i, None, None] for i, x in enumerate(xs))


class FTANet(nn.Module):
    """Harmonic FTANet teacher (3,389,580 parameters with ``n_classes=4``)."""

    def __init__(self, n_classes: int = 4):
        super().__init__()
        self.n_classes = c = int(n_classes)
        self.logits_only = False      # True: probs = None (inference decoding from logits skips the softmax)
        self.bn_layer = nn.BatchNorm2d(3)
        self.bm_layer = nn.Sequential(          # 320 → 80 → 20 → 5 → 1 rows
            nn.Conv2d(3, 16, (4, 1), stride=(4, 1)), nn.SELU(),
            nn.Conv2d(16, 16, (4, 1), stride=(4, 1)), nn.SELU(),
            nn.Conv2d(16, 16, (4, 1), stride=(4, 1)), nn.SELU(),
            nn.Conv2d(16, c, (5, 1), stride=(5, 1)), nn.SELU(),
        )
        chans = [(3, 32), (32, 64), (64, 128), (128, 128), (128, 64), (64, 32), (32, c)]
        for i, (ci, co) in enumerate(chans, 1):
            setattr(self, f"fta_{i}", FTAModule(ci, co))
        for i, (_, co) in enumerate(chans, 1):
            setattr(self, f"sf_{i}", SFModule(3, co))

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"sf_{i}")(getattr(self, f"fta_{i}")(x))

    def forward(self, x: torch.Tensor) -> NetOutput:
        check_input(x)
        x = self.bn_layer(x)
        size = x.shape[-2:]
        bm = self.bm_layer(x)
        h = F.max_pool2d(self._block(1, x), 2)
        h = F.max_pool2d(self._block(2, h), 2)
        h = self._block(4, self._block(3, h))
        h = self._block(5, F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self._block(6, F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self._block(7, h)
        if h.shape[-2:] != size:
            h = F.adaptive_avg_pool2d(h, size)
        logits = torch.cat((bm, h), dim=2)
        return NetOutput(None if self.logits_only else freq_softmax(logits), logits, ())
