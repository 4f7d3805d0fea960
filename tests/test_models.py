"""Student/teacher networks: sizes, shapes, and bit-level agreement with the official HKDSME forward."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hkdsme.model.output import NetOutput
from hkdsme.model.student import MSNet
from hkdsme.model.teacher import FTANet

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "hkdsme"


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def official(kind):
    """(model in eval mode with the official weights, x) or skip."""
    if not (REF / f"{kind}_state_dict.npz").is_file():
        pytest.skip("reference vectors not available")
    model = MSNet() if kind == "student" else FTANet()
    names = [n for n, _, _ in json.loads((REF / f"{kind}_state_dict_names.json").read_text())]
    assert list(model.state_dict()) == names            # same keys in the same order
    sd = np.load(REF / f"{kind}_state_dict.npz")
    for n, shape, _ in json.loads((REF / f"{kind}_state_dict_names.json").read_text()):
        assert tuple(model.state_dict()[n].shape) == tuple(shape), n
    model.load_state_dict({k: torch.from_numpy(sd[k]) for k in sd.files}, strict=True)
    return model.eval(), torch.from_numpy(np.load(REF / "x.npy"))


@pytest.fixture(scope="module")
def student_ref():
    return official("student")


@pytest.fixture(scope="module")
def teacher_ref():
    return official("teacher")


def test_parameter_counts():
    assert n_params(MSNet()) == 720_250
    assert n_params(MSNet(heads=False)) == 531_630                 # docs/method.md §2.5: trunk only
    assert n_params(FTANet()) == 3_389_580
    assert n_params(FTANet(n_classes=1)) == 3_386_007              # = the original 1-channel FTANet
    # n_classes=1 shrinks bottom, up_conv1 and the three cc heads: 3·(128+32+32+64+64)·25 + 3·5 = 24_015
    assert n_params(MSNet(n_classes=1)) == 720_250 - 24_015


@pytest.mark.parametrize("n_classes", [4, 1])
@pytest.mark.parametrize("T", [64, 128, 37])
def test_student_shapes_any_T(n_classes, T):
    torch.manual_seed(0)
    m = MSNet(n_classes=n_classes).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 3, 320, T))
    assert isinstance(out, NetOutput)
    assert out.probs.shape == out.logits.shape == (2, n_classes, 321, T)
    assert len(out.aux_logits) == 3 and all(a.shape == (2, n_classes, 321, T) for a in out.aux_logits)
    torch.testing.assert_close(out.probs.sum(dim=2), torch.ones(2, n_classes, T))
    torch.testing.assert_close(out.probs, torch.softmax(out.logits, dim=2))
    # every head shares row 0 (the bottom branch) with the main output
    for a in out.aux_logits:
        assert torch.equal(a[:, :, 0], out.logits[:, :, 0])


def test_student_without_heads_matches_trunk():
    torch.manual_seed(0)
    full = MSNet().eval()
    trunk = MSNet(heads=False).eval()
    trunk.load_state_dict({k: v for k, v in full.state_dict().items() if k in trunk.state_dict()})
    x = torch.rand(1, 3, 320, 64)
    with torch.no_grad():
        a, b = full(x), trunk(x)
    assert b.aux_logits == ()
    assert torch.equal(a.logits, b.logits)


@pytest.mark.parametrize("T", [64, 128, 66])
def test_teacher_shapes(T):
    torch.manual_seed(0)
    m = FTANet(n_classes=1 if T == 66 else 4).eval()
    with torch.no_grad():
        out = m(torch.rand(1, 3, 320, T))
    assert out.logits.shape == (1, m.n_classes, 321, T) and out.aux_logits == ()
    torch.testing.assert_close(out.probs.sum(dim=2), torch.ones(1, m.n_classes, T))


@pytest.mark.parametrize("shape", [(2, 3, 321, 64), (2, 1, 320, 64), (3, 320, 64)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="320"):
        MSNet()(torch.rand(*shape))
    with pytest.raises(ValueError, match="320"):
        FTANet()(torch.rand(*shape))


@pytest.mark.parametrize("channels_last", [False, True])
def test_unpool_equals_max_unpool2d(channels_last):
    """The student's unpooling (the kernel without the Python size check) is nn.MaxUnpool2d((4, 1)) exactly,
    forward and backward, for both memory layouts."""
    from hkdsme.model.student import _unpool

    torch.manual_seed(0)
    c = torch.randn(2, 8, 80, 13)
    if channels_last:
        c = c.contiguous(memory_format=torch.channels_last)
    p, idx = torch.nn.functional.max_pool2d(c, (4, 1), return_indices=True)
    a, b = p.clone().requires_grad_(), p.clone().requires_grad_()
    ours, ref = _unpool(a, idx), torch.nn.MaxUnpool2d((4, 1))(b, idx, output_size=c.shape[-2:])
    assert ours.shape == ref.shape == c.shape and torch.equal(ours, ref)
    assert (ours != 0).sum() == p.numel()               # one value per pooling window, zeros elsewhere
    g = torch.randn_like(ref)
    ours.backward(g)
    ref.backward(g)
    assert torch.equal(a.grad, b.grad)


def test_student_matches_official(student_ref):
    model, x = student_ref
    with torch.no_grad():
        out = model(x)
    np.testing.assert_allclose(out.probs.numpy(), np.load(REF / "student_output.npy"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.logits.numpy(), np.load(REF / "student_feat.npy"), rtol=0, atol=1e-5)
    for i, aux in enumerate(out.aux_logits, 1):
        np.testing.assert_allclose(torch.softmax(aux, dim=2).numpy(), np.load(REF / f"student_out{i}.npy"),
                                   rtol=0, atol=1e-6)


def test_teacher_matches_official(teacher_ref):
    model, x = teacher_ref
    with torch.no_grad():
        out = model(x)
        train_out = copy.deepcopy(model).train()(x)   # BN on batch statistics, as the official train.py runs it
    np.testing.assert_allclose(out.probs.numpy(), np.load(REF / "teacher_output.npy"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.logits.numpy(), np.load(REF / "teacher_feat.npy"), rtol=0, atol=1e-5)
    # Batch statistics are float32 sums whose order follows the thread count: 1 thread differs by up to
    # 1.7e-6 on 0.1 % of the probabilities (measured), so this one comparison gets 1e-5.
    np.testing.assert_allclose(train_out.probs.numpy(), np.load(REF / "teacher_output_trainmode.npy"),
                               rtol=0, atol=1e-5)


def test_student_train_step_reaches_every_parameter():
    torch.manual_seed(0)
    m = MSNet().train()
    out = m(torch.rand(2, 3, 320, 64))
    loss = -torch.log_softmax(out.logits, dim=2)[:, 0, 100].mean()
    loss = loss + sum(-torch.log_softmax(a, dim=2)[:, 0, 100].mean() for a in out.aux_logits)
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_channels_last_bf16_autocast_close(kind):
    torch.manual_seed(0)
    m = (MSNet() if kind == "student" else FTANet()).eval()
    x = torch.rand(2, 3, 320, 64)
    with torch.no_grad():
        ref = m(x)
        m = m.to(memory_format=torch.channels_last)
        xc = x.to(memory_format=torch.channels_last)
        cl = m(xc)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf = m(xc)
    # not bit-equal: SELU saturates at -1.7581, so (4,1) max-pool windows hold near-ties that a
    # different conv summation order can flip, moving the student's unpool positions by one row
    assert (cl.logits - ref.logits).abs().max() < 0.01
    assert (cl.probs - ref.probs).abs().max() < 1e-4
    assert bf.probs.dtype == torch.float32                       # softmax is always taken in fp32
    assert (bf.logits.float() - ref.logits).abs().max() < 0.05    # bf16 has ~3 significant digits
    assert (bf.probs - ref.probs).abs().max() < 1e-3
    for a, b in zip(bf.aux_logits, ref.aux_logits):
        assert (a.float() - b).abs().max() < 0.05
