"""HKDSME loss: faithful terms vs the official reference values, default terms vs an independent numpy
recompute, masks, switches, gradients, bf16 autocast."""
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from hkdsme.train.cgl import cgl_class_axis, cgl_freq_axis, frame_mean
from hkdsme.train.losses import compose, hkdsme_loss, supervised_loss, target_distribution

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "hkdsme"
F_ROWS = 321


class Out(NamedTuple):  # stand-in for hkdsme.model.output.NetOutput (same fields)
    probs: torch.Tensor
    logits: torch.Tensor
    aux_logits: tuple = ()


def net_out(logits, heads=()):
    return Out(torch.softmax(logits, dim=2), logits, tuple(heads))


def harmonic_map(bins):
    """Tiny local 4-class builder (docs/method.md §2.2 on our bins 1..320, 0 unvoiced)."""
    bins = np.asarray(bins)
    b_, t_ = bins.shape
    y = np.zeros((b_, 4, F_ROWS, t_), np.float32)
    for b in range(b_):
        for t in range(t_):
            k = int(bins[b, t])
            y[b, 0, k, t] = 1
            if k >= 1 and k + 60 <= 320:
                y[b, 1, k + 60, t] = 1
            if k >= 1 and k - 60 >= 1:
                y[b, 2, k - 60, t] = 1
    y[:, 3] = 1 - y[:, :3].sum(1)
    return torch.from_numpy(y)


# ---------------------------------------------------------------- independent numpy (float64) formulas
def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_target(y):
    y = y.astype(np.float64).copy()
    b_, c_, _, t_ = y.shape
    for b in range(b_):
        for c in range(c_):
            for t in range(t_):
                col = y[b, c, :, t]
                if col.sum() == 0:
                    col[0] = 1
                y[b, c, :, t] = col / col.sum()
    return y


def np_default(s, heads, t, y, eps=1.5, tau=1.0, clamp=True):
    s, t = s.astype(np.float64), t.astype(np.float64)
    lo = 0.0 if clamp else -np.inf
    yd = np_target(y)
    ce = lambda z: np.mean(-(yd * np.log(np_softmax(z, 2))).sum(2))                       # noqa: E731
    tt = np_softmax(t / tau, 2)
    cgl = lambda z: np.mean(-(np.maximum((tt + yd) ** eps - yd, lo) * np.log(np_softmax(z / tau, 2) + 1e-8)).sum(2))  # noqa
    kl = np.mean((tt * (np.log(tt) - np.log(np_softmax(s / tau, 2)))).sum(2)) * tau ** 2
    aux = [cgl(h.astype(np.float64)) for h in heads]
    return dict(ce=ce(s), cgl=cgl(s), kl=kl, aux=0.1 * sum(aux), total=ce(s) + cgl(s) + kl + 0.1 * sum(aux))


def np_faithful(s, heads, t, y):
    s, t, y = s.astype(np.float64), t.astype(np.float64), y.astype(np.float64)
    cls = y.argmax(1)
    ls = np.log(np_softmax(s, 1))
    ce = -np.mean(np.take_along_axis(ls, cls[:, None], 1))
    tt = np_softmax(t, 1)
    cgl = lambda z: np.mean(-(((tt + y) ** 1.5 - y) * np.log(np_softmax(z, 1) + 1e-8)).sum(1))  # noqa: E731
    kl = np.mean(t * (np.log(t) - np.log(s + 1e-8)))
    aux = 0.1 * sum(cgl(h.astype(np.float64)) for h in heads)
    return dict(ce=ce, cgl=cgl(s), kl=kl, aux=aux, total=ce + cgl(s) + aux + kl)


def small_case(seed=0, t_len=2, bins=((100, 0),)):
    g = torch.Generator().manual_seed(seed)
    shape = (len(bins), 4, F_ROWS, t_len)
    s = 2 * torch.randn(shape, generator=g)
    heads = [2 * torch.randn(shape, generator=g) for _ in range(3)]
    t = 3 * torch.randn(shape, generator=g)
    return s, heads, t, harmonic_map(bins)


# ------------------------------------------------------------------------------------- default mode
def test_target_distribution_cases():
    y = harmonic_map([[100, 0, 280, 30]])
    d = target_distribution(y)[0]
    assert torch.allclose(d.sum(1), torch.ones(4, 4))
    assert d[0, 100, 0] == 1 and d[1, 160, 0] == 1 and d[2, 40, 0] == 1
    assert d[0, 0, 1] == 1 and d[1, 0, 1] == 1 and d[2, 0, 1] == 1        # unvoiced: every channel -> row 0
    assert d[1, 0, 2] == 1 and d[2, 220, 2] == 1                            # k+60 > 320: harmonic -> row 0
    assert d[1, 90, 3] == 1 and d[2, 0, 3] == 1                             # k-60 < 1: sub -> row 0
    assert torch.allclose(d[3, 1:, 1], torch.full((320,), 1 / 320))       # non-melody uniform over its rows
    assert d[3, 0, 1] == 0 and d[3, 100, 0] == 0 and torch.isclose(d[3, 1, 0], torch.tensor(1 / 318))
    soft = torch.softmax(torch.randn(1, 4, F_ROWS, 3), dim=2)               # pseudo-label: kept as is
    assert torch.allclose(target_distribution(soft), soft, atol=1e-7)


def test_default_terms_match_numpy():
    s, heads, t, y = small_case(bins=((100, 0), (280, 30)))
    got = hkdsme_loss(net_out(s, heads), t, y)
    ref = np_default(s.numpy(), [h.numpy() for h in heads], t.numpy(), y.numpy())
    for k, v in ref.items():
        assert got[k].item() == pytest.approx(v, rel=1e-5), k
    assert got["total"].dtype == torch.float32


def test_default_tau_and_soft_target_match_numpy():
    s, heads, t, _ = small_case(seed=1)
    y = torch.softmax(torch.randn(s.shape), dim=2)                          # pseudo-label target
    for clamp in (None, False):                                             # None = default (clamped)
        got = hkdsme_loss(net_out(s, heads), net_out(t), y, eps=1.2, tau=2.0, cgl_clamp=clamp)  # teacher as NetOutput
        ref = np_default(s.numpy(), [h.numpy() for h in heads], t.numpy(), y.numpy(), eps=1.2, tau=2.0,
                         clamp=clamp is None)
        for k, v in ref.items():
            assert got[k].item() == pytest.approx(v, rel=1e-5), (k, clamp)
    assert got["cgl"].item() < hkdsme_loss(net_out(s, heads), net_out(t), y, eps=1.2, tau=2.0)["cgl"].item()


def test_cgl_freq_hand_value_confident_teacher():
    # teacher certain of the target row k, student uniform: CGL = (2^1.5 - 1)·log(321) + tiny teacher-mass terms
    y = torch.zeros(1, 1, F_ROWS, 1)
    y[0, 0, 7, 0] = 1
    t = torch.full_like(y, -1e4)
    t[0, 0, 7, 0] = 0
    val = cgl_freq_axis(torch.zeros_like(y), t, y).item()
    assert val == pytest.approx((2 ** 1.5 - 1) * np.log(321), rel=1e-6)
    # student also certain -> ~0 (log(1 + 1e-8))
    assert cgl_freq_axis(t, t, y).item() == pytest.approx(0, abs=1e-6)


def test_cgl_freq_negative_weights_on_spread_target_and_clamp():
    # uniform target over rows 1..320, unsure teacher: most weights (t+Y)^1.5 - Y < 0, so a student that
    # puts all mass on one row (others at the 1e-8 floor) scores below 0; the clamped form never does
    y = torch.zeros(1, 1, F_ROWS, 2)
    y[:, :, 1:] = 1 / 320
    t = torch.zeros_like(y)                                        # uniform teacher, t = 1/321 < Y
    peaky = torch.full_like(y, -100.0)
    peaky[:, :, 0] = 0
    w = (1 / 321 + 1 / 320) ** 1.5 - 1 / 320
    hand = -(w * 320 * np.log(1e-8) + (1 / 321) ** 1.5 * np.log(1 + 1e-8))
    assert cgl_freq_axis(peaky, t, y).item() == pytest.approx(hand, rel=1e-4) and hand < -10
    clamped = cgl_freq_axis(peaky, t, y, clamp=True).item()
    assert clamped >= 0 and clamped == pytest.approx(-(1 / 321) ** 1.5 * np.log(1 + 1e-8), abs=1e-6)
    # one-hot targets: clamp changes nothing
    s, heads, t4, y4 = small_case(seed=8)
    yd = target_distribution(y4)[:, :3]
    assert torch.equal(cgl_freq_axis(s[:, :3], t4[:, :3], yd), cgl_freq_axis(s[:, :3], t4[:, :3], yd, clamp=True))
    with pytest.raises(ValueError):
        hkdsme_loss(net_out(s), t4, y4, faithful=True, cgl_clamp=True)


def test_switches():
    s, heads, t, y = small_case(seed=2)
    ce = lambda z: hkdsme_loss(net_out(z), None, y)["ce"]                   # noqa: E731
    no_kd = hkdsme_loss(net_out(s, heads), t, y, use_kd=False)
    assert no_kd["cgl"] == 0 and no_kd["kl"] == 0
    assert torch.isclose(no_kd["aux"], 0.1 * sum(ce(h) for h in heads))
    assert torch.isclose(no_kd["total"], ce(s) + no_kd["aux"])
    assert torch.equal(hkdsme_loss(net_out(s, heads), None, y)["total"], no_kd["total"])
    no_cgl = hkdsme_loss(net_out(s, heads), t, y, use_cgl=False)
    full = hkdsme_loss(net_out(s, heads), t, y)
    assert no_cgl["cgl"] == 0 and torch.equal(no_cgl["kl"], full["kl"]) and full["kl"] > 0
    assert torch.isclose(no_cgl["aux"], no_kd["aux"])
    sup = supervised_loss(net_out(s, heads), y)
    assert torch.equal(sup["total"], no_kd["total"])
    assert torch.equal(supervised_loss(net_out(s), y)["total"], ce(s))     # teacher-like net: CE only


def test_harmonic_false_uses_melody_channel_only():
    s, heads, t, y = small_case(seed=3)
    four = hkdsme_loss(net_out(s, heads), t, y, harmonic=False)
    one = hkdsme_loss(net_out(s[:, :1], [h[:, :1] for h in heads]), t[:, :1], y[:, :1])
    for k in ("ce", "cgl", "aux", "kl", "total"):
        assert torch.allclose(four[k], one[k]), k
    with pytest.raises(ValueError):
        hkdsme_loss(net_out(s), t, y, faithful=True, harmonic=False)


@pytest.mark.parametrize("faithful", [False, True])
def test_mask_ignores_padded_frames(faithful):
    s, heads, t, y = small_case(seed=4, t_len=3, bins=((100, 150, 0), (70, 0, 200)))
    mask = torch.tensor([[True, True, False], [True, False, False]])
    got = hkdsme_loss(net_out(s, heads), t, y, mask, faithful=faithful)
    # same loss whatever is in the padded frames (even inf logits)
    s2, t2 = s.clone(), t.clone()
    s2[0, :, :, 2] = float("inf")
    t2[1, :, 5, 1:] = 1e6
    got2 = hkdsme_loss(net_out(s2, heads), t2, y, mask, faithful=faithful)
    for k in got:
        assert torch.isfinite(got2[k]) and torch.allclose(got[k], got2[k]), k
    # equals the mean over the valid frames only: frames (0,0), (0,1), (1,0) as one batch of 3
    pick = lambda z: torch.stack([z[0, ..., 0], z[0, ..., 1], z[1, ..., 0]])[..., None]   # noqa: E731
    flat = hkdsme_loss(net_out(pick(s), [pick(h) for h in heads]), pick(t), pick(y), faithful=faithful)
    for k in got:
        assert torch.allclose(got[k], flat[k], rtol=1e-6), k
    none = hkdsme_loss(net_out(s, heads), t, y, torch.zeros(2, 3, dtype=torch.bool), faithful=faithful)
    assert none["total"] == 0
    with pytest.raises(ValueError):
        hkdsme_loss(net_out(s), t, y, torch.ones(2, 4, dtype=torch.bool))


def test_frame_mean():
    x = torch.arange(12.0).reshape(2, 2, 3)     # the middle (channel) dim shares the frame's mask
    m = torch.tensor([[True, False, True], [False, False, True]])
    assert frame_mean(x, m).item() == pytest.approx((0 + 2 + 3 + 5 + 8 + 11) / 6)
    assert frame_mean(x).item() == pytest.approx(x.mean().item())


@pytest.mark.parametrize("faithful", [False, True])
def test_gradients_flow_to_student_not_teacher(faithful):
    s, heads, t, y = small_case(seed=5)
    s.requires_grad_(True)
    t.requires_grad_(True)
    for h in heads:
        h.requires_grad_(True)
    hkdsme_loss(net_out(s, heads), t, y, faithful=faithful)["total"].backward()
    for z in [s, *heads]:
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert t.grad is None


def test_bf16_autocast_close_to_fp32():
    s, heads, t, y = small_case(seed=6, t_len=8, bins=((100, 0, 120, 130, 250, 270, 40, 60),))
    ref = hkdsme_loss(net_out(s, heads), t, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sb = s.bfloat16().requires_grad_(True)
        out = Out(torch.softmax(sb, 2), sb, tuple(h.bfloat16() for h in heads))
        got = hkdsme_loss(out, t.bfloat16(), y)
    assert got["total"].dtype == torch.float32 and torch.isfinite(got["total"])
    assert got["total"].item() == pytest.approx(ref["total"].item(), rel=2e-2)
    got["total"].backward()
    assert torch.isfinite(sb.grad.float()).all()


def test_shape_errors():
    s, heads, t, y = small_case()
    with pytest.raises(ValueError):
        hkdsme_loss(net_out(s), t[..., :1], y)
    with pytest.raises(ValueError):
        hkdsme_loss(net_out(s), t, y[:, :3])
    with pytest.raises(ValueError):
        cgl_class_axis(s, t, y[..., :1])


# ------------------------------------------------------------------------------------- faithful mode
def test_faithful_small_case_matches_numpy():
    s, heads, t, y = small_case(seed=7, t_len=3, bins=((100, 0, 300),))
    sp, tp = torch.softmax(s, 2), torch.softmax(t, 2)
    hp = [torch.softmax(h, 2) for h in heads]
    got = hkdsme_loss(net_out(s, heads), t, y, faithful=True)
    ref = np_faithful(sp.numpy(), [h.numpy() for h in hp], tp.numpy(), y.numpy())
    for k, v in ref.items():
        assert got[k].item() == pytest.approx(v, rel=1e-5, abs=1e-9), k


def _load(name):
    return torch.from_numpy(np.load(REF / name))


CASES = {  # losses.json section -> (student outputs, teacher output, target)
    "official_torch_float32": ("main", "teacher_output.npy", "labels"),
    "supplementary_teacher_trainmode": ("main", "teacher_output_trainmode.npy", "labels"),
    "supplementary_pseudolabel_target": ("main", "teacher_output.npy", "student"),
    "supplementary_stress": ("stress", None, "labels"),
}
KEYS = {"ce": "ce", "cgl": "cgl_main", "aux1": "cgl_out1", "aux2": "cgl_out2", "aux3": "cgl_out3",
        "aux": "cgl_aux_weighted_0.1", "kl": "kl", "total": "total"}


@pytest.mark.parametrize("case", list(CASES))
def test_faithful_reference_values(case):
    if not (REF / "losses.json").exists():
        pytest.skip("shared reference vectors absent")
    ref = json.loads((REF / "losses.json").read_text())
    ref = ref[case] if case == "official_torch_float32" else ref[case]["official_torch_float32"]
    students, teacher, target = CASES[case]
    if students == "main":
        s0, heads = _load("student_output.npy"), [_load(f"student_out{i}.npy") for i in (1, 2, 3)]
        t = _load(teacher)
    else:
        z = {k: torch.from_numpy(v) for k, v in np.load(REF / "loss_stress_inputs.npz").items()}
        s0, heads, t = z["s0"], [z["out1"], z["out2"], z["out3"]], z["t"]
    y = _load("labels_harmonic_map.npy").float() if target == "labels" else _load("student_output.npy")
    got = compose(s0, heads, t, y, faithful=True)
    for ours, theirs in KEYS.items():
        assert got[ours].item() == pytest.approx(ref[theirs], rel=1e-6), ours
    # through the NetOutput path: probs given, heads/teacher as logits = log(probs)
    if students == "main":
        out = Out(s0, torch.log(s0), tuple(torch.log(h) for h in heads))
        got2 = hkdsme_loss(out, torch.log(t), y, faithful=True)
        assert got2["total"].item() == pytest.approx(ref["total"], rel=1e-6)
        assert got2["kl"].item() == pytest.approx(ref["kl"], rel=1e-3, abs=1e-10)
