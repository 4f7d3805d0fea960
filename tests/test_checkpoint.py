"""Checkpoints: round trips, weights-only loading, and every refusal naming the file."""
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from hkdsme.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from hkdsme.model.student import MSNet
from hkdsme.model.teacher import FTANet
from hkdsme.pipeline.errors import InputError

HASH = "0123456789abcdef"


def _trained_like(model):
    # move BN running stats and weights away from the init values so a round trip that dropped them would show
    torch.manual_seed(3)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 320, 64))
    return model.eval()


@pytest.mark.parametrize("kind,kwargs", [("student", {}), ("student", {"n_classes": 1, "heads": False}),
                                         ("teacher", {})])
def test_round_trip_same_outputs(tmp_path, kind, kwargs):
    model = _trained_like(build_model(kind, **kwargs))
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, kind=kind, config={"lr": 8e-4, "dirs": (Path("a"), "b")},
                           feature_hash=HASH, metrics={"OA": 0.71}, extra={"epoch": 3})
    assert os.listdir(path.parent) == ["m.pt"]                     # no temp file left behind
    raw = torch.load(path, weights_only=True)                        # plain python only
    assert raw["kind"] == kind
    loaded, meta = load_checkpoint(path, expected_feature_hash=HASH, expected_kind=kind)
    assert type(loaded) is type(model) and not loaded.training
    assert meta["config"] == {"lr": 8e-4, "dirs": ["a", "b"]}
    assert meta["metrics"] == {"OA": 0.71} and meta["extra"] == {"epoch": 3} and meta["feature_hash"] == HASH
    assert "state_dict" not in meta
    x = torch.rand(1, 3, 320, 64)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.logits, b.logits) and len(a.aux_logits) == len(b.aux_logits)
    for p, q in zip(a.aux_logits, b.aux_logits):
        assert torch.equal(p, q)


def test_wrapped_model_saved_with_bare_names(tmp_path):
    path = save_checkpoint(tmp_path / "dp.pt", nn.DataParallel(MSNet(heads=False)), kind="student",
                           config={}, feature_hash=HASH)
    assert all(not k.startswith("module.") for k in torch.load(path, weights_only=True)["state_dict"])
    model, _ = load_checkpoint(path)
    assert isinstance(model, MSNet) and not model.heads


def test_overwrite_is_atomic_replacement(tmp_path):
    p = tmp_path / "m.pt"
    save_checkpoint(p, MSNet(heads=False), kind="student", config={"v": 1}, feature_hash=HASH)
    save_checkpoint(p, MSNet(heads=False), kind="student", config={"v": 2}, feature_hash=HASH)
    assert load_checkpoint(p)[1]["config"] == {"v": 2} and os.listdir(tmp_path) == ["m.pt"]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="not found") as e:
        load_checkpoint(tmp_path / "nope.pt")
    assert "nope.pt" in str(e.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(InputError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(junk)
    good = save_checkpoint(tmp_path / "good.pt", MSNet(heads=False), kind="student", config={}, feature_hash=HASH)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.pt"):
        load_checkpoint(cut)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": MSNet().state_dict()}, other)           # a bare torch file, not ours
    with pytest.raises(InputError, match="not an hkdsme checkpoint"):
        load_checkpoint(other)


def test_pickled_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "hkdsme-checkpoint", "obj": Path("x")}, evil)   # needs a non-weights-only unpickler
    with pytest.raises(InputError, match="evil.pt: not a readable checkpoint"):
        load_checkpoint(evil)


def test_wrong_kind_and_hash_mismatch(tmp_path):
    p = save_checkpoint(tmp_path / "s.pt", MSNet(), kind="student", config={}, feature_hash=HASH)
    with pytest.raises(InputError, match="holds a student network, expected a teacher"):
        load_checkpoint(p, expected_kind="teacher")
    with pytest.raises(InputError) as e:
        load_checkpoint(p, expected_feature_hash="ffffffffffffffff")
    assert str(e.value) == (f"{p}: checkpoint was trained on features {HASH}, data has ffffffffffffffff: "
                            "re-extract or use a matching checkpoint")


def test_weights_that_do_not_fit(tmp_path):
    p = save_checkpoint(tmp_path / "s.pt", MSNet(), kind="student", config={}, feature_hash=HASH)
    payload = torch.load(p, weights_only=True)
    payload["heads"] = False                                             # metadata disagrees with weights
    torch.save(payload, p)
    with pytest.raises(InputError, match="do not fit a student"):
        load_checkpoint(p)


def test_save_refuses_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="needs a FTANet"):
        save_checkpoint(tmp_path / "x.pt", MSNet(), kind="teacher", config={}, feature_hash=HASH)
    with pytest.raises(ValueError, match="unknown model kind"):
        save_checkpoint(tmp_path / "x.pt", MSNet(), kind="net", config={}, feature_hash=HASH)
    with pytest.raises(TypeError, match="config.opt"):
        save_checkpoint(tmp_path / "x.pt", MSNet(), kind="student", config={"opt": object()}, feature_hash=HASH)
    with pytest.raises(ValueError, match="feature_hash"):
        save_checkpoint(tmp_path / "x.pt", MSNet(), kind="student", config={}, feature_hash="")
    assert list(tmp_path.iterdir()) == []


def test_build_model():
    assert isinstance(build_model("teacher"), FTANet)
    s = build_model("student", n_classes=1, heads=False)
    assert isinstance(s, MSNet) and s.n_classes == 1 and not s.heads
    with pytest.raises(ValueError):
        build_model("critic")
    with pytest.raises(TypeError):
        build_model("student", depth=3)


def test_export_drops_training_state_and_heads_but_keeps_the_function(tmp_path):
    import torch

    from hkdsme.model.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint
    from hkdsme.model.student import MSNet

    torch.manual_seed(0)
    net = MSNet().eval()
    src = save_checkpoint(tmp_path / "best.pt", net, kind="student", config={"lr": 1e-3}, feature_hash="abc",
                          metrics={"val_OA": 50.0}, extra={"train_state": {"epoch": 3}, "note": "x"})
    dst = export_checkpoint(src, tmp_path / "default.pt")
    small, meta = load_checkpoint(dst, expected_feature_hash="abc", expected_kind="student")
    assert meta["heads"] is False and "train_state" not in meta["extra"] and meta["extra"]["note"] == "x"
    assert meta["metrics"] == {"val_OA": 50.0}
    assert sum(p.numel() for p in small.parameters()) == 531_630
    x = torch.rand(1, 3, 320, 64)
    with torch.no_grad():
        assert torch.equal(small(x).probs, net(x).probs)
    assert dst.stat().st_size < src.stat().st_size


@pytest.mark.parametrize("dtype,bits", [("float16", 11), ("bfloat16", 8)])
def test_export_in_half_precision_halves_the_file_and_rounds_each_weight_once(tmp_path, dtype, bits):
    import torch

    from hkdsme.model.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint
    from hkdsme.model.teacher import FTANet

    torch.manual_seed(0)
    net = FTANet().eval()
    for m in net.modules():                       # non-trivial BatchNorm statistics, stored as floats too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(1234)
    src = save_checkpoint(tmp_path / "best.pt", net, kind="teacher", config={}, feature_hash="abc")
    full = export_checkpoint(src, tmp_path / "full.pt")
    half = export_checkpoint(src, tmp_path / "half.pt", dtype=dtype)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    stored = torch.load(half, weights_only=True)["state_dict"]
    assert {str(t.dtype) for k, t in stored.items() if "num_batches" not in k} == {f"torch.{dtype}"}
    assert stored[next(k for k in stored if "num_batches" in k)].dtype == torch.int64
    back, meta = load_checkpoint(half, expected_kind="teacher")
    assert meta["extra"]["export_dtype"] == dtype
    ref = net.state_dict()
    for k, t in back.state_dict().items():
        assert t.dtype == ref[k].dtype                      # loaded back into the fp32 network
        if t.is_floating_point():
            # round-to-nearest in a format of `bits` significant bits: relative error at most 2^-bits
            # (normal numbers; float16's subnormals below 6.1e-5 are bounded absolutely instead)
            err = (t - ref[k]).abs()
            assert bool((err <= ref[k].abs() * 2.0 ** -bits + 6e-8).all()), k
        else:
            assert torch.equal(t, ref[k])
    with pytest.raises(ValueError, match="float16"):
        export_checkpoint(src, tmp_path / "x.pt", dtype="int8")
