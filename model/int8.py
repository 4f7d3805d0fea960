"""int8 inference of the MSNet student (``precision="int8"``): for x86 CPUs without native bf16.

What runs in integers: the four large convolutions, ``conv2``, ``conv3``, ``up_conv3`` and ``up_conv2`` (4.1 M
multiply-adds per frame each, 90 % of the network's 18.2 M), and ``up_conv1`` (the layer that writes the logits,
slow in fp32 for its few output channels), as oneDNN int8 convolutions: the input (after its
BatchNorm) uint8 per tensor with a range measured once on real music (:func:`calibrate`, stored in the
checkpoint as ``extra["int8"]``), the weights int8 per output channel (symmetric), the products summed in int32
and written out as fp32 — the output is not requantized, so the only rounding is of the input and the weights:

    y_o = s_x · s_w[o] · Σ (q_x − z_x) · q_w[o] + bias_o,   q_x = clamp(round(BN(u) / s_x) + z_x, 0, 255).

AVX2 has no int8 dot product: ``vpmaddubsw`` adds two uint8 × int8 products in int16, which saturates beyond
32,767. Weights within ±63 keep 2 · 255 · 63 = 32,130 below it with full 8-bit inputs; measured on the real-mix
dev songs, the input's precision is what matters (frames agreeing with fp32: 98.9 % with 8-bit inputs and 7-bit
weights, 98.2–98.5 % with 7-bit inputs and 8-bit weights; full 8 bits on both saturate).
``conv1`` (its input is the CFP itself) and ``bottom`` (0.1 M multiply-adds per frame) stay fp32, each with
its BatchNorm folded in exactly (so does ``up_conv1`` for a checkpoint calibrated without it). BN(u) = a·u + b per
input channel, a = γ / √(σ² + ε), b = β − μ·a; the convolution zero-pads BN's *output*, so

    conv_W(pad₀(a·u + b)) = conv_{W·a}(pad₀ u) + K + D,   K_o = Σ_{c,i,j} W[o,c,i,j]·b_c,

where D (computed once per input shape) corrects the positions within 2 rows or frames of an edge, whose taps
the padding cut. Pooling, unpooling and SELU run in fp32, reordered where that computes the same function on
fewer elements (:class:`FoldedMSNet`).

Agreement with fp32 and speed are measured, not assumed (docs/benchmarks.md): the melody is not bit-identical
(the network is sensitive: noise of σ = 1e-4 on its input already moves 0.7 % of the voiced frames of real
songs by > 20 cents).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from hkdsme.model.output import NetOutput, check_input
from hkdsme.model.student import _unpool

INT8_LAYERS = ("conv2", "conv3", "up_conv3", "up_conv2", "up_conv1")
FP32_LAYERS = ("conv1", "bottom")
ENGINE = "onednn"           # the kernels: oneDNN's int8 convolution with fp32 output
FORMAT = 2                  # version of the stored calibration (extra["int8"]["format"])
QMAX = 255                  # uint8 inputs 0..255
WMAX = 63                   # int8 weights within ±63: no int16 saturation on AVX2 (module docstring)


@functools.lru_cache(maxsize=1)
def engine_available() -> bool:
    """Does this torch build have oneDNN's int8 convolution, with the arithmetic this module relies on? Checked
    once per process on a small convolution against the same rounded numbers in fp32 (the operator is internal
    to PyTorch: a build without it, or with another signature, gives False and fp32 is used)."""
    try:
        if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv2d_pointwise")):
            return False
        g = torch.Generator().manual_seed(0)
        qx = torch.randint(0, QMAX + 1, (1, 8, 6, 6), generator=g, dtype=torch.uint8)
        qw = torch.randint(-WMAX, WMAX + 1, (4, 8, 5, 5), generator=g, dtype=torch.int8)
        ws, xs, xz = torch.full((4,), 0.01), 0.02, 100
        packed = torch.ops.onednn.qconv_prepack(qw, ws, xs, xz, [1, 1], [2, 2], [1, 1], 1, None)
        y = torch.ops.onednn.qconv2d_pointwise(qx, xs, xz, packed, ws, torch.zeros(4, dtype=torch.long), None,
                                               [1, 1], [2, 2], [1, 1], 1, 1.0, 0, torch.float32, "none", [], "")
        ref = F.conv2d((qx.float() - xz) * xs, qw.float() * 0.01, padding=2)
        return bool(y.dtype == torch.float32 and torch.allclose(y, ref, atol=1e-4, rtol=1e-4))
    except Exception:  # noqa: BLE001 — any failure of an internal operator means: not available
        return False


def _fold(block: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
    """``(W·a, bias + K, W·b summed over input channels per tap (for D), padding)`` of a (BN, Conv, SELU) block."""
    bn, conv = block[0], block[1]
    a = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    b = bn.bias.detach() - bn.running_mean.detach() * a
    w = conv.weight.detach()
    wb = (w * b.view(1, -1, 1, 1)).sum(dim=1)                     # (O, kh, kw): what b contributes per tap
    bias = (conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0])) + wb.sum(dim=(1, 2))
    return (w * a.view(1, -1, 1, 1)).contiguous(), bias, wb, tuple(conv.padding)


class _Block(nn.Module):
    """One (BN, Conv, SELU) block. fp32: BN folded, ``selu(conv_{W·a}(u) + bias + K + D)``. int8 (``qparams``
    given): ``selu(qconv(quant(BN(u))))`` with an fp32 output; BN is kept, so that the one input scale fits every
    channel equally (their ranges before BN differ up to 10x), and the convolution's zero padding is the quantized
    zero exactly. ``outputs``: compute only the first that many output channels."""

    def __init__(self, block: nn.Sequential, qparams: dict | None = None, outputs: int | None = None):
        super().__init__()
        self.q = None
        keep = slice(None, outputs)
        if qparams is None:
            w, bias, wb, self.padding = _fold(block)
            w, bias, wb = w[keep], bias[keep].contiguous(), wb[keep].contiguous()
            # channels_last like the input: oneDNN would otherwise reorder the weights on every call
            self.register_buffer("weight", w.contiguous(memory_format=torch.channels_last), persistent=False)
            self.register_buffer("bias", bias, persistent=False)
            self.register_buffer("wb", wb, persistent=False)
            self._border: dict = {}
            return
        self.bn, conv = block[0], block[1]
        w = conv.weight.detach()[keep]
        self.w_scale = (w.abs().amax(dim=(1, 2, 3)) / WMAX).clamp_min(1e-12)
        self.w_zero = torch.zeros(w.shape[0], dtype=torch.long)
        qw = torch.round(w / self.w_scale.view(-1, 1, 1, 1)).clamp(-WMAX, WMAX).to(torch.int8)
        self.in_scale, self.in_zero = float(qparams["scale"]), int(qparams["zero_point"])
        self.padding = list(conv.padding)
        self.conv_bias = conv.bias.detach().float()[keep].contiguous()
        self.q = torch.ops.onednn.qconv_prepack(qw, self.w_scale, self.in_scale, self.in_zero, [1, 1], self.padding,
                                                [1, 1], 1, None)
        self._zero: dict = {}         # the level of BN(0) per channel (pre_unpooled), per dtype and device

    def border(self, h: int, w: int, dtype, device) -> torch.Tensor | None:
        """D for an input of h × w (None where no tap is cut), cached per shape."""
        key = (h, w, dtype, device)
        if key not in self._border:
            if self.padding == (0, 0):
                self._border[key] = None
            else:
                # Σ over the taps that read a real (not padded) input of wb, minus K (the sum over all taps)
                ones = torch.ones(1, 1, h, w, dtype=torch.float64)
                full = F.conv2d(ones, self.wb.double().unsqueeze(1), padding=self.padding)
                d = full - self.wb.double().sum(dim=(1, 2)).view(1, -1, 1, 1)
                self._border[key] = d.to(dtype=dtype, device=device)
        return self._border[key]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return F.selu(self.pre(u), inplace=True)

    def pre(self, u: torch.Tensor) -> torch.Tensor:
        """The block before its SELU: ``conv(BN(u))``."""
        if self.q is not None:
            return self._qconv(_levels(self.bn(u), self.in_scale, self.in_zero))
        y = F.conv2d(u, self.weight, self.bias, padding=self.padding)
        d = self.border(u.shape[2], u.shape[3], y.dtype, y.device)
        if d is not None:
            _add_border(y, d, self.padding)
        return y

    def pre_unpooled(self, v: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """``pre(unpool(v, indices))``. int8: BN and rounding are per element, so they run on the pooled ``v``
        (a quarter of the elements) and unpooling places the levels among the level of BN(0) of each channel,
        the same uint8 input as rounding the unpooled tensor (the levels, integers 0..255, are exact in fp32)."""
        if self.q is None:
            return self.pre(_unpool(v, indices))
        key = (v.dtype, v.device)
        if key not in self._zero:
            zero = torch.zeros(1, v.shape[1], 1, 1, dtype=v.dtype, device=v.device)
            self._zero[key] = _levels(self.bn(zero), self.in_scale, self.in_zero).to(v.dtype)
        z = self._zero[key]
        lv = _levels(self.bn(v), self.in_scale, self.in_zero).to(v.dtype).sub_(z)
        return self._qconv(_unpool(lv, indices).add_(z).to(torch.uint8))

    def _qconv(self, qv: torch.Tensor) -> torch.Tensor:
        # int8 × uint8 products summed in int32, written as fp32: no requantized output
        return torch.ops.onednn.qconv2d_pointwise(qv, self.in_scale, self.in_zero, self.q, self.w_scale, self.w_zero,
                                                  self.conv_bias, [1, 1], self.padding, [1, 1], 1, 1.0, 0,
                                                  torch.float32, "none", [], "")


def _levels(v: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    """uint8 clamp(round(v / scale) + zero, 0, 255), rounded half to even like torch's quantizer, whose tensor
    functions are deprecated."""
    return torch.mul(v, 1.0 / scale).round_().add_(zero).clamp_(0, QMAX).to(torch.uint8)


def _add_border(y: torch.Tensor, d: torch.Tensor, padding) -> None:
    """``y += d`` where ``d`` is non-zero: the first/last ``ph`` rows and, between them, the first/last ``pw``
    frames (all of it when the strips would overlap)."""
    ph, pw = padding
    h, w = y.shape[2], y.shape[3]
    if h < 2 * ph + 1 or w < 2 * pw + 1:
        y += d
        return
    if ph:
        y[:, :, :ph] += d[:, :, :ph]
        y[:, :, h - ph:] += d[:, :, h - ph:]
    if pw:
        y[:, :, ph:h - ph, :pw] += d[:, :, ph:h - ph, :pw]
        y[:, :, ph:h - ph, w - pw:] += d[:, :, ph:h - ph, w - pw:]


class FoldedMSNet(nn.Module):
    """An eval-mode :class:`~hkdsme.model.student.MSNet` with BatchNorms folded; ``qparams`` (the checkpoint's
    ``extra["int8"]["layers"]``) → those of :data:`INT8_LAYERS` run in int8. Logits only (no projector heads, no
    softmax): ``NetOutput(None, logits, ())``; ``melody_only`` → the melody channel alone, (B, 1, 321, T) (the
    only one inference decodes: ``bottom`` and ``up_conv1`` compute one output channel instead of four).

    The trunk is :func:`~hkdsme.model.student.trunk`'s, reordered where the result is the same function: each
    encoder block max-pools before its SELU (SELU is increasing, so max∘SELU = SELU∘max on a quarter of the
    elements; only the index of exactly equal values after SELU can differ), and the int8 decoder blocks round
    before unpooling (:meth:`_Block.pre_unpooled`)."""

    def __init__(self, msnet: nn.Module, qparams: dict | None = None, melody_only: bool = False):
        super().__init__()
        self.n_classes = 1 if melody_only else msnet.n_classes
        for name in FP32_LAYERS + INT8_LAYERS:
            q = qparams.get(name) if qparams is not None and name in INT8_LAYERS else None
            one = melody_only and name in ("bottom", "up_conv1")
            setattr(self, name, _Block(getattr(msnet, name), q, 1 if one else None))
        self.pool = nn.MaxPool2d((4, 1), return_indices=True)

    def _down(self, block: _Block, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, i = self.pool(block.pre(u))
        return F.selu(v, inplace=True), i

    def forward(self, x: torch.Tensor) -> NetOutput:
        check_input(x)
        p1, i1 = self._down(self.conv1, x)
        p2, i2 = self._down(self.conv2, p1)
        p3, i3 = self._down(self.conv3, p2)
        bm = self.bottom(p3)
        u3 = F.selu(self.up_conv3.pre_unpooled(p3, i3), inplace=True)
        u2 = F.selu(self.up_conv2.pre_unpooled(u3, i2), inplace=True)
        u1 = F.selu(self.up_conv1.pre_unpooled(u2, i1), inplace=True)
        return NetOutput(None, torch.cat((bm, u1), dim=2), ())


class _Observed(nn.Module):
    """fp32 (BN, Conv, SELU) block that shows its convolution's input to an observer (calibration)."""

    def __init__(self, block: nn.Sequential, observer):
        super().__init__()
        self.bn, self.conv, self.observer = block[0], block[1], observer

    def pre(self, u):
        v = self.bn(u)
        self.observer(v)
        return self.conv(v)

    def pre_unpooled(self, v, indices):
        return self.pre(_unpool(v, indices))


def calibrate(msnet: nn.Module, batches) -> dict:
    """Input ranges of the :data:`INT8_LAYERS` over ``batches`` (iterable of (B, 3, 320, T) normalised CFP):
    ``{"format", "engine", "segments", "layers": {name: {"scale", "zero_point"}}}``, the value to store in
    ``extra["int8"]``. Histogram observers choose each clipping range by least squares, on uint8."""
    from torch.ao.quantization.observer import HistogramObserver

    msnet = msnet.eval()
    net = FoldedMSNet(msnet).eval()
    obs = {}
    for name in INT8_LAYERS:
        obs[name] = HistogramObserver(dtype=torch.quint8, quant_min=0, quant_max=QMAX)
        setattr(net, name, _Observed(getattr(msnet, name), obs[name]))
    n = 0
    with torch.inference_mode():
        for x in batches:
            net(x.float())
            n += x.shape[0]
    if n == 0:
        raise ValueError("int8 calibration needs at least one segment of features")
    layers = {}
    for name, ob in obs.items():
        s, z = ob.calculate_qparams()
        layers[name] = {"scale": float(s.item()), "zero_point": int(z.item())}
    return {"format": FORMAT, "engine": ENGINE, "segments": n, "layers": layers}


def check_calibration(cal) -> dict:
    """The ``layers`` of a stored calibration; ValueError naming what is wrong."""
    if not isinstance(cal, dict) or cal.get("format") != FORMAT or not isinstance(cal.get("layers"), dict):
        raise ValueError(f"int8 calibration must be a dict with format {FORMAT} and layers")
    if not cal["layers"] or set(cal["layers"]) - set(INT8_LAYERS):
        raise ValueError(f"int8 calibration layers must be some of {', '.join(INT8_LAYERS)}, "
                         f"got {', '.join(map(str, cal['layers'])) or 'none'}")
    for name, lay in cal["layers"].items():
        if not isinstance(lay, dict):
            raise ValueError(f"int8 calibration of {name} must be a dict")
        s, z = lay.get("scale"), lay.get("zero_point")
        if not (isinstance(s, (int, float)) and s > 0 and isinstance(z, int) and 0 <= z <= QMAX):
            raise ValueError(f"int8 calibration of {name} needs scale > 0 and zero_point 0..{QMAX}, got {lay!r}")
    return cal["layers"]


def int8_model(msnet: nn.Module, calibration: dict, melody_only: bool = False) -> FoldedMSNet:
    """The int8 network of ``msnet`` (eval mode) with a stored ``calibration`` (``melody_only``: FoldedMSNet)."""
    if not engine_available():
        raise RuntimeError("this torch build has no oneDNN int8 convolution: use precision fp32")
    return FoldedMSNet(msnet.eval(), check_calibration(calibration), melody_only).eval()
