"""Student network: MSNet (Hsieh et al., ISMIR 2019) with 4 harmonic classes and 3 projector heads (docs/method.md §2.3).

Trunk (frequency × time, T frames):

    x (3,320,T) ─BN─Conv5x5─SELU─> c1 (32,320) ─pool(4,1)─> (32,80)
                ─BN─Conv5x5─SELU─> c2 (64,80)  ─pool(4,1)─> (64,20)
                ─BN─Conv5x5─SELU─> c3 (128,20) ─pool(4,1)─> p3 (128,5)
    bottom: BN─Conv5x5 pad (0,2)─SELU on p3 → bm (C,1,T): row 0, the "unvoiced" row
    decoder: unpool→BN─Conv─SELU (128→64 = u3, 20 rows) → unpool→… (64→32, 80) → unpool→… (32→C, 320) = u1
    logits = cat(bm, u1) along frequency → (C,321,T);  probs = softmax over frequency.

Projector heads (training-only deep supervision; each is concatenated with the same ``bm``):

    aux1 = fc1( SELU(cc1(c1)) )              Linear 320→320 along frequency
    aux2 = fc2( SELU(cc2(c2)) )              Linear 80→320
    aux3 = fc3_2( ReLU(Dropout0.2(fc3( SELU(cc3(u3)) ))) )   Linear 20→128→320

All convolutions are 5×5 with 'same' padding except ``bottom``. Nothing runs along time except the 5-frame
convolutions, so any T works (no divisibility constraint).
"""
from __future__ import annotations

import torch
from torch import nn

from hkdsme.model.output import NetOutput, check_input, freq_softmax


def _bn_conv_selu(c_in: int, c_out: int, padding=2) -> nn.Sequential:
    # names must be .0 (BN) / .1 (Conv) to match the official state dict
    return nn.Sequential(nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 5, padding=padding), nn.SELU())


def _along_freq(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a module over the frequency axis of (B, C, F, T): (B,C,T,F) → linear → back to (B,C,F',T)."""
    return linear(x.transpose(2, 3)).transpose(2, 3)


def _unpool(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``nn.MaxUnpool2d((4, 1))(x, indices)``: the same kernel, called without the Python-side size check, whose
    ``torch._check`` imports sympy on first use (≈ 0.7–0.9 s of every fresh inference process; rows are exact
    multiples, 320 = 4·80 = 16·20 = 64·5, so there is nothing to check)."""
    return torch._C._nn.max_unpool2d(x, indices, (4 * x.shape[2], x.shape[3]))


def trunk(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The encoder–decoder of the module docstring on ``net``'s blocks (``conv1`` … ``up_conv1``, ``pool``):
    ``(logits (B, C, 321, T), c1, c2, u3)``, the last three for the projector heads. The int8 version
    (:class:`hkdsme.model.int8.FoldedMSNet`) computes the same function in a cheaper order."""
    c1 = net.conv1(x)
    p1, i1 = net.pool(c1)
    c2 = net.conv2(p1)
    p2, i2 = net.pool(c2)
    c3 = net.conv3(p2)
    p3, i3 = net.pool(c3)
    bm = net.bottom(p3)
    u3 = net.up_conv3(_unpool(p3, i3))
    u2 = net.up_conv2(_unpool(u3, i2))
    u1 = net.up_conv1(_unpool(u2, i1))
    return torch.cat((bm, u1), dim=2), c1, c2, u3


class MSNet(nn.Module):
    """Modified MSNet student (720,250 parameters with ``n_classes=4, heads=True``).

    ``heads=False`` drops the projector heads (531,630 parameters); their weights are then absent from
    the state dict, so load such checkpoints with the same flag.
    """

    def __init__(self, n_classes: int = 4, heads: bool = True):
        super().__init__()
        self.n_classes = int(n_classes)
        self.logits_only = False      # True: probs = None (inference decoding from logits skips the softmax)
        self.heads = bool(heads)
        c = self.n_classes
        self.conv1 = _bn_conv_selu(3, 32)
        self.conv2 = _bn_conv_selu(32, 64)
        self.conv3 = _bn_conv_selu(64, 128)
        self.pool = nn.MaxPool2d((4, 1), return_indices=True)
        self.bottom = _bn_conv_selu(128, c, padding=(0, 2))   # 5 rows → 1 row
        self.up_conv3 = _bn_conv_selu(128, 64)
        self.up_conv2 = _bn_conv_selu(64, 32)
        self.up_conv1 = _bn_conv_selu(32, c)
        if self.heads:
            # registration order fixes the state-dict order of the official model
            self.fc1 = nn.Linear(320, 320)
            self.cc1 = nn.Conv2d(32, c, 5, padding=2)
            self.fc2 = nn.Linear(80, 320)
            self.cc2 = nn.Conv2d(64, c, 5, padding=2)
            self.fc3 = nn.Linear(20, 128)
            self.fc3_2 = nn.Linear(128, 320)
            self.cc3 = nn.Conv2d(64, c, 5, padding=2)
            self.drop3 = nn.Dropout(0.2)
        self.selu = nn.SELU()

    def forward(self, x: torch.Tensor) -> NetOutput:
        check_input(x)
        logits, c1, c2, u3 = trunk(self, x)
        bm = logits[:, :, :1]         # the bottom row, which every projector head is concatenated with
        aux: tuple[torch.Tensor, ...] = ()
        if self.heads:
            h1 = _along_freq(self.fc1, self.selu(self.cc1(c1)))
            h2 = _along_freq(self.fc2, self.selu(self.cc2(c2)))
            h3 = _along_freq(
                lambda z: self.fc3_2(torch.relu(self.drop3(self.fc3(z)))), self.selu(self.cc3(u3))
            )
            aux = tuple(torch.cat((bm, h), dim=2) for h in (h1, h2, h3))
        return NetOutput(None if self.logits_only else freq_softmax(logits), logits, aux)
