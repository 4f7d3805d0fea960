"""MSNet vocal inside the project: import equality with the reference code, warm start, the ensemble teacher."""
import importlib.util
import json
from pathlib import Path

import h5py
import pytest
import torch
from click.testing import CliRunner

from hkdsme.model.checkpoint import load_checkpoint, save_checkpoint
from hkdsme.model.ensemble import TeacherEnsemble, ensemble_key, load_ensemble, parse_spec
from hkdsme.model.msnet_vocal import N_PARAMS, import_msnet, melody_to_harmonic
from hkdsme.model.student import MSNet
from hkdsme.model.teacher import FTANet
from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError
from hkdsme.train.cli import main

from train_helpers import write_cache

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "teachers" / "msnet-vocal"
WEIGHTS = SHARED / "MSnet_vocal.pth"
needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason="../shared/teachers/msnet-vocal not present")
MIT = "MIT License\n\nCopyright (c) 2019 Bill Hsieh\n"


def _reference_net():
    spec = importlib.util.spec_from_file_location("msnet_reference_model", SHARED / "reference" / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.MSnet_vocal()
    net.load_state_dict(torch.load(WEIGHTS, weights_only=True, map_location="cpu"))
    return net.eval()


@needs_weights
def test_import_equals_the_reference_model_on_a_fixed_input():
    ours, ref = import_msnet(WEIGHTS), _reference_net()
    assert sum(p.numel() for p in ours.parameters()) == N_PARAMS
    x = torch.rand(2, 3, 320, 37, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, _ = ref(x)
        got = ours(x)
    assert got.probs.shape == (2, 1, 321, 37)
    assert (got.probs - want).abs().max().item() <= 1e-5


@needs_weights
def test_import_cli_keeps_the_licence_and_the_shipped_copy_is_the_same_network(tmp_path):
    out = tmp_path / "msnet.pt"
    r = CliRunner().invoke(main, ["import-msnet", str(WEIGHTS), "-o", str(out)])
    assert r.exit_code == 0, r.output
    net, meta = load_checkpoint(out, expected_feature_hash=grid.feature_hash())
    assert meta["n_classes"] == 1 and meta["heads"] is False and meta["kind"] == "student"
    assert "MIT License" in meta["extra"]["license"] and "Hsieh" in meta["extra"]["license"]
    shipped = Path(__file__).resolve().parents[1] / "hkdsme" / "weights" / "msnet-vocal.pt"
    if shipped.is_file():       # float16 copy: every weight within float16 rounding of the published one
        small, _ = load_checkpoint(shipped)
        for (k, a), b in zip(net.state_dict().items(), small.state_dict().values()):
            if a.is_floating_point():
                assert torch.allclose(a, b, rtol=2 ** -10, atol=1e-7), k


def test_import_refuses_other_files_with_one_line(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"conv1.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(InputError, match="other.pth.*not the MSnet_vocal network"):
        import_msnet(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not torch")
    with pytest.raises(InputError, match="junk.pth"):
        import_msnet(junk)


def test_melody_weights_fill_channel_zero_of_a_harmonic_student():
    torch.manual_seed(0)
    melody = MSNet(n_classes=1, heads=False)
    student = MSNet(n_classes=4, heads=True)
    fresh = {k: v.clone() for k, v in student.state_dict().items()}
    student.load_state_dict(melody_to_harmonic(melody.state_dict(), student))
    sd, msd = student.state_dict(), melody.state_dict()
    assert torch.equal(sd["conv2.1.weight"], msd["conv2.1.weight"])            # trunk copied
    assert torch.equal(sd["bottom.1.weight"][:1], msd["bottom.1.weight"])      # melody channel copied
    assert torch.equal(sd["bottom.1.weight"][1:], fresh["bottom.1.weight"][1:])  # harmonic channels fresh
    assert torch.equal(sd["up_conv1.1.bias"][1:], fresh["up_conv1.1.bias"][1:])
    assert torch.equal(sd["fc1.weight"], fresh["fc1.weight"])                  # heads fresh
    x = torch.rand(1, 3, 320, 16)
    student.eval(), melody.eval()
    with torch.no_grad():                  # channel 0 of the student IS the melody network
        assert torch.allclose(student(x).probs[:, :1], melody(x).probs, atol=1e-6)


def test_ensemble_fuses_posteriors_per_channel_by_hand():
    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.l = logits
            self.n_classes = logits.shape[1]

        def forward(self, x):
            from hkdsme.model.output import NetOutput
            return NetOutput(None, self.l, ())

    g = torch.Generator().manual_seed(1)
    a = torch.randn(1, 4, 321, 3, generator=g)
    b = torch.randn(1, 1, 321, 3, generator=g)
    ens = TeacherEnsemble([Fixed(a), Fixed(b)], [3.0, 1.0])
    out = ens(torch.zeros(1, 3, 320, 3))
    pa, pb = torch.softmax(a, 2), torch.softmax(b, 2)
    assert torch.allclose(out.probs[:, 0], 0.75 * pa[:, 0] + 0.25 * pb[:, 0], atol=1e-6)   # melody: both
    assert torch.allclose(out.probs[:, 1:], pa[:, 1:], atol=1e-6)                          # harmonic: a only
    assert torch.allclose(torch.softmax(out.logits, 2), out.probs, atol=1e-6)              # logits = log p
    assert torch.allclose(out.probs.sum(2), torch.ones(1, 4, 3), atol=1e-5)


def test_spec_parsing_and_errors():
    assert parse_spec("a.pt*0.7+b.pt") == [("a.pt", 0.7), ("b.pt", 1.0)]
    for bad in ("a.pt", "a.pt+", "a.pt*x+b.pt", "a.pt*-1+b.pt", "a.pt*0+b.pt"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def _tiny_checkpoints(tmp_path):
    torch.manual_seed(0)
    t = tmp_path / "t.pt"
    m = tmp_path / "m.pt"
    save_checkpoint(t, FTANet(n_classes=4), kind="teacher", config={}, feature_hash=grid.feature_hash())
    save_checkpoint(m, MSNet(n_classes=1, heads=False), kind="student", config={}, feature_hash=grid.feature_hash())
    return t, m


def test_ensemble_cache_key_names_every_member_and_weight(tmp_path):
    t, m = _tiny_checkpoints(tmp_path)
    k1 = ensemble_key(f"{t}*0.5+{m}*0.5")
    assert k1 != ensemble_key(f"{t}*0.6+{m}*0.4")          # another weight → another cache
    assert k1 != ensemble_key(f"{m}*0.5+{t}*0.5")          # another order (member identity) → another cache
    save_checkpoint(m, MSNet(n_classes=1, heads=False), kind="student", config={"x": 1},
                    feature_hash=grid.feature_hash())
    assert k1 != ensemble_key(f"{t}*0.5+{m}*0.5")          # a changed member file → another cache
    assert isinstance(load_ensemble(f"{t}+{m}"), TeacherEnsemble)


def test_run_with_an_ensemble_teacher_and_a_melody_warm_start(tmp_path):
    t, m = _tiny_checkpoints(tmp_path)
    lab = write_cache(tmp_path / "lab", n_tracks=2, frames=(150, 64), seed=2)
    val = write_cache(tmp_path / "val", n_tracks=1, frames=(64,), seed=4)
    run = tmp_path / "run"
    spec = f"{t}*0.6+{m}*0.4"
    r = CliRunner().invoke(main, ["run", "--teacher", spec, "--init", str(m), "--labeled", str(lab), "--val",
                                  str(val), "--out", str(run), "--epochs", "1", "--batch", "2",
                                  "--max-steps-per-epoch", "1", "--precision", "fp32", "--no-hcr"])
    assert r.exit_code == 0, r.output
    log = (run / "train.log").read_text() if (run / "train.log").exists() else r.output
    assert "melody network into channel 0" in log
    with h5py.File(run / "teacher_cache.h5", "r") as h:
        assert h.attrs["teacher_hash"] == ensemble_key(spec)
        assert h["labeled"].shape[1] == 4
    assert json.loads((run / "config.json").read_text())["teacher"] == spec
    # a spec whose members have no harmonic channel is refused before any work, in one line
    r = CliRunner().invoke(main, ["run", "--teacher", f"{m}+{m}", "--labeled", str(lab), "--out",
                                  str(tmp_path / "r2"), "--epochs", "1"])
    assert r.exit_code != 0 and "no member has the 4-class harmonic output" in r.output


def test_pool_teacher_fills_the_unlabeled_sets_only(tmp_path):
    from hkdsme.train.dataset import ShardDataset

    t, m = _tiny_checkpoints(tmp_path)
    lab = write_cache(tmp_path / "lab", n_tracks=2, frames=(64,), seed=2)
    unl = write_cache(tmp_path / "unl", n_tracks=1, frames=(64,), seed=3, labeled=False)
    run = tmp_path / "run"
    pool = f"{t}*0.5+{m}*0.5"
    r = CliRunner().invoke(main, ["run", "--teacher", str(t), "--pool-teacher", pool, "--labeled", str(lab),
                                  "--unlabeled", str(unl), "--out", str(run), "--epochs", "1", "--batch", "2",
                                  "--max-steps-per-epoch", "1", "--precision", "fp32", "--no-hcr"])
    assert r.exit_code == 0, r.output
    teacher, _ = load_checkpoint(t)
    fused = load_ensemble(pool)
    with h5py.File(run / "teacher_cache.h5", "r") as h:
        assert h.attrs["pool_teacher_hash"] == ensemble_key(pool)
        got_l, got_u = torch.from_numpy(h["labeled"][0]).float(), torch.from_numpy(h["unlabeled"][0]).float()
    x_l = ShardDataset([lab], labeled=True).__getitems__([0])["x"]
    x_u = ShardDataset([unl], labeled=False).__getitems__([0])["x"]
    with torch.no_grad():
        want_l, want_u = teacher(x_l).logits[0], fused(x_u).logits[0]
    # float16 storage (11 significant bits): the stored logits are the teacher's for the labeled set and the
    # fused log-posteriors for the pool, which are far apart (log p ≈ −5.8 for these untrained nets, raw logits ≈ 0)
    assert torch.allclose(got_l, want_l, rtol=2e-3, atol=2e-3)
    assert torch.allclose(got_u, want_u, rtol=2e-3, atol=2e-3)
    assert (got_u - teacher(x_u).logits[0].detach()).abs().max() > 1.0
