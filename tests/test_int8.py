"""The int8 inference path (model/int8.py): exact BatchNorm folding, the int8 convolution's arithmetic, the
agreement of the melody with fp32, when ``auto`` chooses it, and its calibration."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hkdsme.model import int8, runtime
from hkdsme.model.student import MSNet

needs_engine = pytest.mark.skipif(not int8.engine_available(), reason="torch without oneDNN int8 convolution")


def _random_msnet(seed=0) -> MSNet:
    """An MSNet in eval mode with non-trivial BatchNorm statistics (γ of both signs, μ ≠ 0, σ² ≠ 1)."""
    g = torch.Generator().manual_seed(seed)
    net = MSNet(heads=False)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.randn(c, generator=g)
            m.bias.data = torch.randn(c, generator=g)
            m.running_mean = torch.randn(c, generator=g)
            m.running_var = torch.rand(c, generator=g) * 3 + 0.1
    return net.eval()


@pytest.mark.parametrize("name,shape", [("conv1", (2, 3, 320, 64)), ("conv2", (2, 32, 80, 64)),
                                        ("up_conv1", (1, 32, 320, 7)), ("bottom", (2, 128, 5, 64)),
                                        ("conv3", (1, 64, 3, 3))])
def test_folded_block_equals_bn_conv_selu_including_the_borders(name, shape):
    net = _random_msnet()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    folded = int8._Block(getattr(net, name))
    with torch.inference_mode():
        ref = getattr(net, name)(x)
        got = folded(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    edge = (ref - got)[..., :2, :].abs().max()          # the rows whose taps the padding cut
    assert edge <= 1e-4 * float(ref.abs().max())


def test_folded_network_without_int8_layers_gives_the_same_logits():
    # in float64: fp32 rounding alone can flip a max-pooling between near-equal rows
    net = _random_msnet(3).double()
    x = torch.rand(2, 3, 320, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.inference_mode():
        ref = net(x).logits
        got = int8.FoldedMSNet(net)(x).logits
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-9 * float(ref.abs().max()))


@needs_engine
def test_int8_block_is_the_convolution_of_the_rounded_input_and_weights():
    """y = s_x·s_w[o]·Σ (q_x − z_x)·q_w + bias, q_x = clamp(round(BN(u)/s_x) + z_x, 0, 255): exact up to fp32
    (no saturation of AVX2's 16-bit pair sums)."""
    net = _random_msnet(4)
    u = torch.randn(2, 32, 80, 64, generator=torch.Generator().manual_seed(5))
    scale, zp = 0.05, 60
    blk = int8._Block(net.conv2, {"scale": scale, "zero_point": zp})
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error")                    # no deprecated quantized-tensor calls reach users
        got = blk(u.contiguous(memory_format=torch.channels_last))
        v = net.conv2[0](u)
        qx = torch.clamp(torch.round(v * (1 / scale)) + zp, 0, int8.QMAX)
        w = net.conv2[1].weight
        ws = w.abs().amax(dim=(1, 2, 3), keepdim=True) / int8.WMAX
        ref = F.selu(F.conv2d((qx - zp) * scale, torch.round(w / ws) * ws, net.conv2[1].bias, padding=2))
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert (qx == 255).any() and (qx == 0).any()          # both clips were exercised


@needs_engine
def test_int8_rounding_before_unpooling_gives_the_same_uint8_input():
    """pre_unpooled rounds the pooled values and places them among the level of BN(0): the convolution sees the
    same uint8 tensor as rounding the unpooled one, so the outputs are identical."""
    net = _random_msnet(6)
    blk = int8._Block(net.up_conv2, {"scale": 0.04, "zero_point": 90})
    u = torch.randn(2, 64, 80, 16, generator=torch.Generator().manual_seed(7))
    v, idx = F.max_pool2d(u, (4, 1), return_indices=True)
    with torch.inference_mode():
        ref = blk.pre(F.max_unpool2d(v, idx, (4, 1)).contiguous(memory_format=torch.channels_last))
        got = blk.pre_unpooled(v.contiguous(memory_format=torch.channels_last), idx)
    assert torch.equal(got, ref)


def test_melody_only_network_is_channel_0_of_the_full_one():
    net = _random_msnet(8).double()
    x = torch.rand(2, 3, 320, 16, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    with torch.inference_mode():
        full = int8.FoldedMSNet(net)(x).logits
        one = int8.FoldedMSNet(net, melody_only=True)(x).logits
    assert one.shape == (2, 1, 321, 16)
    assert torch.allclose(one, full[:, :1], rtol=1e-12, atol=1e-12 * float(full.abs().max()))


@needs_engine
def test_a_calibration_without_a_layer_keeps_that_layer_in_fp32():
    layers = {n: {"scale": 0.1, "zero_point": 10} for n in int8.INT8_LAYERS if n != "up_conv1"}
    net = int8.int8_model(_random_msnet(), {"format": int8.FORMAT, "layers": layers}, melody_only=True)
    assert net.up_conv1.q is None and net.up_conv2.q is not None
    with torch.inference_mode():
        out = net(torch.rand(1, 3, 320, 8).contiguous(memory_format=torch.channels_last)).logits
    assert out.shape == (1, 1, 321, 8) and torch.isfinite(out).all()


def test_calibration_is_checked():
    good = {"format": int8.FORMAT, "layers": {n: {"scale": 0.1, "zero_point": 10} for n in int8.INT8_LAYERS}}
    assert int8.check_calibration(good) is good["layers"]
    for bad in (None, {"format": 99, "layers": {}}, {"format": int8.FORMAT, "layers": {}},
                {"format": int8.FORMAT, "layers": {**good["layers"], "conv3": {"scale": -1, "zero_point": 0}}},
                {"format": int8.FORMAT, "layers": {**good["layers"], "conv3": {"scale": 0.1, "zero_point": 300}}}):
        with pytest.raises(ValueError):
            int8.check_calibration(bad)


def test_auto_chooses_int8_only_without_bf16_on_avx2_for_an_int8_student():
    def auto(**kw):
        return runtime.resolve_precision("auto", "cpu", **kw).name

    assert auto(cpu_bf16=False, int8_model=True, cpu_int8=True) == "int8"
    assert auto(cpu_bf16=True, int8_model=True, cpu_int8=True) == "bf16"     # native bf16 keeps bf16
    assert auto(cpu_bf16=False, int8_model=False, cpu_int8=True) == "fp32"   # teacher, MSNet vocal, training
    assert auto(cpu_bf16=False, int8_model=True, cpu_int8=False) == "fp32"
    assert runtime.resolve_precision("auto", "cuda", cuda_bf16=True, int8_model=True).name == "bf16"
    flags = {"sse2", "avx", "avx2", "fma"}
    assert runtime.int8_fast(flags, "x86_64", engine=True)[0]
    assert not runtime.int8_fast(flags - {"avx2"}, "x86_64", engine=True)[0]
    assert not runtime.int8_fast(flags, "aarch64", engine=True)[0]
    assert not runtime.int8_fast(flags, "x86_64", engine=False)[0]


def test_explicit_int8_errors():
    with pytest.raises(ValueError, match="CPU only"):
        runtime.resolve_precision("int8", "cuda", int8_model=True)
    with pytest.raises(ValueError, match="calibration"):
        runtime.resolve_precision("int8", "cpu", int8_model=False)
    if int8.engine_available():
        assert runtime.resolve_precision("int8", "cpu", int8_model=True).name == "int8"


@needs_engine
def test_teacher_and_uncalibrated_checkpoints_refuse_int8_and_auto_gives_them_fp32(tmp_path):
    from hkdsme.evaluate.inference import Predictor
    from hkdsme.evaluate.models import model_checkpoint
    from hkdsme.model.checkpoint import load_checkpoint, save_checkpoint

    with pytest.raises(ValueError, match="ftanet.pt: int8 is for"):
        Predictor(model="ftanet", precision="int8")
    net, meta = load_checkpoint(model_checkpoint("hkdsme"))
    extra = {k: v for k, v in meta["extra"].items() if k != "int8"}
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, net, kind="student", config=meta["config"], feature_hash=meta["feature_hash"], extra=extra)
    with pytest.raises(ValueError, match="plain.pt: int8 is for"):
        Predictor(plain, precision="int8")
    assert Predictor(plain, precision="auto").precision in ("fp32", "bf16")


def test_fp32_ignores_the_int8_calibration_bit_for_bit(tmp_path):
    """--precision fp32 runs the plain network: the same bits with or without a stored calibration."""
    from hkdsme.evaluate.inference import Predictor
    from hkdsme.evaluate.models import model_checkpoint
    from hkdsme.model.checkpoint import load_checkpoint, save_checkpoint
    from hkdsme.pipeline.synthetic import make_song

    net, meta = load_checkpoint(model_checkpoint("hkdsme"))
    assert "int8" in meta["extra"]
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, net, kind="student", config=meta["config"], feature_hash=meta["feature_hash"],
                    extra={k: v for k, v in meta["extra"].items() if k != "int8"})
    a, b = Predictor(model="hkdsme", precision="fp32"), Predictor(plain, precision="fp32")
    assert type(a.model) is MSNet
    x, _, _ = make_song(5, duration=6.0)
    ta, fa, ca = a.predict_audio(x, return_confidence=True)
    tb, fb, cb = b.predict_audio(x, return_confidence=True)
    assert np.array_equal(fa, fb) and np.array_equal(ca, cb)


@needs_engine
def test_int8_melody_agrees_with_fp32_on_a_synthetic_song():
    """The bounds the int8 path is held to: ≥ 99 % of frames with the same voicing decision, and of the frames
    both call voiced ≥ 99 % within 20 cents."""
    from hkdsme.evaluate.inference import Predictor
    from hkdsme.pipeline.synthetic import make_song

    ref, red = Predictor(model="hkdsme", precision="fp32"), Predictor(model="hkdsme", precision="int8")
    assert isinstance(red.model, int8.FoldedMSNet) and not isinstance(ref.model, int8.FoldedMSNet)
    assert red.model.up_conv1.q is not None              # the shipped calibration covers every int8 layer
    big = Predictor(model="hkdsme", precision="int8", batch_size=16)
    same = both = close = 0
    n = 0
    for seed in (0, 1, 2):
        x, _, _ = make_song(seed, duration=12.0)
        _, a = ref.predict_audio(x)
        _, b = red.predict_audio(x)
        assert np.array_equal(big.predict_audio(x)[1], b)   # int8's small default batch: same frames
        va, vb = a > 0, b > 0
        bv = va & vb
        n += a.size
        same += int((va == vb).sum())
        both += int(bv.sum())
        close += int((np.abs(1200 * np.log2(a[bv] / b[bv])) <= 20).sum())
    assert both > 0.2 * n                     # a song with singing, not silence
    assert same / n >= 0.99
    assert close / both >= 0.99


@needs_engine
def test_calibrate_int8_writes_the_ranges_and_keeps_the_fp32_weights(tmp_path):
    from hkdsme.evaluate.calibrate import calibrate_int8
    from hkdsme.evaluate.inference import Predictor
    from hkdsme.evaluate.models import model_checkpoint
    from hkdsme.model.checkpoint import load_checkpoint
    from hkdsme.pipeline.synthetic import write_dataset

    ck = tmp_path / "s.pt"
    shutil.copy(model_checkpoint("supervised"), ck)
    before, meta0 = load_checkpoint(ck)
    wavs = write_dataset(tmp_path / "audio", n=2, duration=4.0)
    cal = calibrate_int8(ck, wavs, write=True, segments_per_file=4, progress=False)
    after, meta = load_checkpoint(ck)
    assert meta["extra"]["int8"]["layers"] == cal["layers"] and cal["segments"] == 2 * 4
    assert meta["extra"]["voicing_threshold"] == meta0["extra"]["voicing_threshold"]
    sa, sb = before.state_dict(), after.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert Predictor(ck, precision="int8").precision == "int8"
