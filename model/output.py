"""The one return type of every network in :mod:`hkdsme.model`."""
from __future__ import annotations

from typing import NamedTuple

import torch


class NetOutput(NamedTuple):
    """Outputs of a forward pass on ``x`` of shape (B, 3, 320, T).

    - ``probs``: (B, C, 321, T) ``softmax(logits, dim=2)``, a distribution over the 321 frequency rows
      (row 0 = unvoiced) separately for every class channel and frame (= official ``output``); ``None`` when the
      network's ``logits_only`` is set (inference that decodes from the logits skips the softmax).
    - ``logits``: (B, C, 321, T) pre-softmax ``cat(bottom_row, decoder_rows)`` (= official ``feat``).
    - ``aux_logits``: tuple of the student's three projector heads, each (B, C, 321, T) pre-softmax
      (official ``out1..out3`` are their frequency softmax); ``()`` for the teacher or a head-less student.
    """

    probs: torch.Tensor | None
    logits: torch.Tensor
    aux_logits: tuple[torch.Tensor, ...] = ()


def freq_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``softmax(logits, dim=2)`` computed in float32, so probabilities stay fp32 under bf16 autocast."""
    return torch.softmax(logits, dim=2, dtype=torch.float32)


def check_input(x: torch.Tensor) -> None:
    """Both networks need (B, 3, 320, T): the bottom row and the student's heads are built for 320 rows."""
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != 320 or x.shape[3] < 1:
        raise ValueError(f"expected input of shape (B, 3, 320, T), got {tuple(x.shape)}")
