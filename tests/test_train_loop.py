"""Teacher pre-training and HKDSME distillation on tiny synthetic caches: loss goes down, exact resume,
teacher-logit cache, HCR bookkeeping, config resolution, bad inputs."""
import json
import random
import shutil

import h5py
import numpy as np
import pytest
import torch

from hkdsme.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError
from hkdsme.train import config, loop
from hkdsme.train.dataset import SegmentSample, ShardDataset
from hkdsme.train.distill import DistillTrainer, train_student
from hkdsme.train.teacher import train_teacher

from train_helpers import write_cache


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {
        "one": write_cache(root / "one", n_tracks=1, frames=(128,), seed=1),       # 2 segments = one batch
        "lab": write_cache(root / "lab", n_tracks=2, frames=(150, 64), seed=2),   # 4 segments
        "unl": write_cache(root / "unl", n_tracks=1, frames=(100,), seed=3, labeled=False),
        "val": write_cache(root / "val", n_tracks=1, frames=(64,), seed=4),
        "teacher": save_checkpoint(root / "teacher.pt", build_model("teacher"), kind="teacher", config={},
                                   feature_hash=grid.feature_hash()),
    }


def _losses(run):
    return [json.loads(line)["loss_total"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_teacher_loss_decreases_and_checkpoints(data, tmp_path):
    cfg = config.resolve("teacher", overrides=dict(data=[data["one"]], val=data["val"], out=tmp_path / "t",
                                                   epochs=2, batch=2, precision="fp32"))
    m = train_teacher(cfg)
    losses = _losses(tmp_path / "t")
    assert len(losses) == 2 and losses[-1] < losses[0]          # same batch every step: must fit it
    assert {"val_OA", "val_RPA", "val_RCA", "val_VR", "val_VFA"} <= m.keys()
    assert m["epoch_cpu_s"] > 0 and m["epoch_wall_s"] > 0                  # cost accounting per epoch
    model, meta = load_checkpoint(tmp_path / "t" / "best.pt", expected_kind="teacher")
    assert meta["metrics"]["val_OA"] == m["best_val_select"]
    saved = config.load_saved(tmp_path / "t")
    assert saved["epochs"] == 2 and saved["data"] == [str(data["one"])]


def _logged(trainer, start: str) -> bool:
    """A log line starts with ``start`` (HCR lines go on with the pool's parts and pseudo-label quality)."""
    return any(line.startswith(start) for line in trainer.log_lines)


def _student_cfg(data, out, **kw):
    o = dict(teacher=data["teacher"], labeled=[data["lab"]], unlabeled=[data["unl"]], val=data["val"], out=out,
             epochs=2, batch=2, precision="fp32", hcr_threshold=0.0)
    o.update(kw)
    return config.resolve("distill", overrides=o)


def test_student_resume_is_bit_exact_and_hcr_logged(data, tmp_path):
    straight = DistillTrainer(_student_cfg(data, tmp_path / "a", val="", max_steps_per_epoch=2))
    straight.fit()
    assert _logged(straight, "epoch 0: kept 2 of 2 unlabeled segments")
    assert _logged(straight, "epoch 1: kept 2 of 2 unlabeled segments")
    with h5py.File(tmp_path / "a" / "pseudo.h5") as h:
        assert h["probs"].shape == (2, 4, 321, 64) and list(h["uidx"][()]) == [0, 1]
        np.testing.assert_allclose(h["probs"][()].astype(np.float32).sum(axis=2), 1.0, atol=0.02)
    with h5py.File(tmp_path / "a" / "teacher_cache.h5") as h:
        assert h["labeled"].shape == (4, 4, 321, 64) and h["unlabeled"].shape == (2, 4, 321, 64)

    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "teacher_cache.h5", tmp_path / "b")      # same key: must be reused
    first = DistillTrainer(_student_cfg(data, tmp_path / "b", val="", max_steps_per_epoch=2, epochs=1))
    first.fit()
    assert any("reusing teacher logits" in s for s in first.log_lines)
    resumed = DistillTrainer(_student_cfg(data, tmp_path / "b", val="", max_steps_per_epoch=2), resume=True)
    resumed.fit()
    assert any("resumed" in s for s in resumed.log_lines)
    wa, _ = load_checkpoint(tmp_path / "a" / "last.pt")
    wb, _ = load_checkpoint(tmp_path / "b" / "last.pt")
    for (k, va), vb in zip(wa.state_dict().items(), wb.state_dict().values()):
        assert torch.equal(va, vb), k
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")


def test_runs_share_one_teacher_cache_file(data, tmp_path):
    shared = tmp_path / "caches" / "t.h5"
    a = DistillTrainer(_student_cfg(data, tmp_path / "a", val="", max_steps_per_epoch=1, epochs=1, teacher_cache=shared))
    a.fit()
    assert shared.is_file() and not (tmp_path / "a" / "teacher_cache.h5").exists()
    assert not any("reusing teacher logits" in s for s in a.log_lines)
    b = DistillTrainer(_student_cfg(data, tmp_path / "b", val="", max_steps_per_epoch=1, epochs=1, teacher_cache=shared,
                                    hcr=False))
    b.fit()
    assert any("reusing teacher logits" in s for s in b.log_lines)
    assert not (tmp_path / "b" / "teacher_cache.h5").exists()


def test_a_cache_in_the_same_folder_donates_identical_sets(data, tmp_path):
    """Another pool, same teacher and labeled data: the labeled logits are copied (bit-equal), the pool computed."""
    folder = tmp_path / "caches"
    a = DistillTrainer(_student_cfg(data, tmp_path / "a", val="", max_steps_per_epoch=1, epochs=1,
                                    teacher_cache=folder / "a.h5"))
    a.fit()
    b = DistillTrainer(_student_cfg(data, tmp_path / "b", val="", max_steps_per_epoch=1, epochs=1,
                                    teacher_cache=folder / "b.h5", unlabeled=[data["lab"]]))
    b.fit()
    assert any("teacher logits (labeled): copied from" in s and "a.h5" in s for s in b.log_lines)
    assert not any("teacher logits (unlabeled): copied" in s for s in b.log_lines)
    with h5py.File(folder / "a.h5") as ha, h5py.File(folder / "b.h5") as hb:
        np.testing.assert_array_equal(ha["labeled"][()], hb["labeled"][()])
        assert ha.attrs["checksum_labeled"] == hb.attrs["checksum_labeled"]
        assert hb["unlabeled"].shape[0] == len(ShardDataset([data["lab"]], labeled=False))
    # the copy is a valid cache: complete, checksums intact, b's key (a later run with b's data reuses it whole)
    from hkdsme.train.teacher_cache import cache_matches, file_hash

    assert cache_matches(folder / "b.h5", b._cache_key(file_hash(data["teacher"])))


def test_a_corrupt_donor_is_not_copied(data, tmp_path):
    folder = tmp_path / "caches"
    DistillTrainer(_student_cfg(data, tmp_path / "a", val="", max_steps_per_epoch=1, epochs=1,
                                teacher_cache=folder / "a.h5")).fit()
    with h5py.File(folder / "a.h5", "r+") as h:                  # flip the stored logits, keep the checksum
        h["labeled"][0] = h["labeled"][0] + 1.0
    b = DistillTrainer(_student_cfg(data, tmp_path / "b", val="", max_steps_per_epoch=1, epochs=1,
                                    teacher_cache=folder / "b.h5", unlabeled=[data["lab"]]))
    with pytest.warns(UserWarning, match="a.h5: checksum mismatch in labeled"):
        b.fit()
    assert not any("copied from" in s for s in b.log_lines)
    from hkdsme.train.teacher_cache import cache_matches, file_hash

    assert cache_matches(folder / "b.h5", b._cache_key(file_hash(data["teacher"])))   # recomputed, intact


def test_student_loss_decreases_without_unlabeled(data, tmp_path):
    cfg = _student_cfg(data, tmp_path / "s", labeled=[data["one"]], unlabeled=[], val="")
    train_student(cfg)
    losses = _losses(tmp_path / "s")
    assert losses[-1] < losses[0]
    assert not (tmp_path / "s" / "pseudo.h5").exists()


def test_strict_hcr_keeps_nothing_from_untrained_student(data, tmp_path):
    t = DistillTrainer(_student_cfg(data, tmp_path / "f", epochs=1, faithful=True, hcr_threshold=0.75, kd=False,
                                    max_steps_per_epoch=1))
    t.fit()
    assert _logged(t, "epoch 0: kept 0 of 2 unlabeled segments")
    with h5py.File(tmp_path / "f" / "pseudo.h5") as h:
        assert h["probs"].shape[0] == 0


def test_bad_teacher_inputs(data, tmp_path):
    other = save_checkpoint(tmp_path / "other.pt", build_model("teacher", n_classes=4), kind="teacher", config={},
                            feature_hash="ffffffffffffffff")
    with pytest.raises(InputError, match="ffffffffffffffff"):
        DistillTrainer(_student_cfg(data, tmp_path / "x", teacher=other))
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="corrupt.pt"):
        DistillTrainer(_student_cfg(data, tmp_path / "x", teacher=bad))
    with pytest.raises(InputError, match="no teacher"):
        DistillTrainer(_student_cfg(data, tmp_path / "x", teacher=""))


def test_config_resolution(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\nbatch = 8\nlr = 1\n[distill]\nhcr_threshold = 0.5\n')
    cfg = config.resolve("distill", f, {"batch": 4, "epochs": None})
    assert cfg["batch"] == 4 and cfg["lr"] == 1.0 and cfg["hcr_threshold"] == 0.5
    assert cfg["epochs"] == config.defaults("distill")["epochs"]
    config.save(cfg, tmp_path / "run", "distill")
    assert config.resolve("distill", tmp_path / "run" / "config.toml") == cfg      # saved TOML reloads
    f.write_text("[train]\nbatchsize = 8\n")
    with pytest.raises(InputError, match="batchsize"):
        config.resolve("teacher", f)
    f.write_text('[train]\nepochs = "many"\n')
    with pytest.raises(InputError, match="epochs"):
        config.resolve("teacher", f)


def test_rng_state_round_trip():
    loop.seed_everything(7)
    state = loop.rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    loop.set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_epoch_lr_constant_and_cosine():
    import math

    from hkdsme.train.loop import epoch_lr

    cfg = {"lr": 1e-3, "epochs": 4, "lr_schedule": "constant"}
    assert [epoch_lr(cfg, e) for e in range(4)] == [1e-3] * 4
    cfg["lr_schedule"] = "cosine"
    got = [epoch_lr(cfg, e) for e in range(4)]
    assert got[0] == 1e-3 and math.isclose(got[2], 0.5e-3) and math.isclose(got[1], 1e-3 * (1 + math.sqrt(0.5)) / 2)
    with pytest.raises(InputError, match="lr_schedule"):
        epoch_lr(dict(cfg, lr_schedule="step"), 0)


def test_unlabeled_max_uses_a_fixed_sample_with_its_own_teacher_logits(data, tmp_path):
    full = DistillTrainer(_student_cfg(data, tmp_path / "full", val="", epochs=1, max_steps_per_epoch=1))
    full.fit()
    cfg = _student_cfg(data, tmp_path / "s", val="", epochs=1, max_steps_per_epoch=1, unlabeled_max=1)
    t = DistillTrainer(cfg)
    t.fit()
    assert len(t.unl) == 1 and _logged(t, "epoch 0: kept 1 of 1 unlabeled segments")
    again = DistillTrainer(cfg)                                   # same seed → same sample
    assert list(again.unl.index) == list(t.unl.index)
    (u,) = t.unl.index
    with h5py.File(tmp_path / "full" / "teacher_cache.h5") as a, h5py.File(tmp_path / "s" / "teacher_cache.h5") as b:
        assert b["unlabeled"].shape[0] == 1
        # logits of the sampled segment (batch of 1 vs 2: float16 values may differ by one rounding step)
        np.testing.assert_allclose(b["unlabeled"][0].astype(np.float32), a["unlabeled"][u].astype(np.float32),
                                   rtol=2e-3, atol=1e-5)
        assert a.attrs["unlabeled"] != b.attrs["unlabeled"]      # a sample is another data identity
    with pytest.raises(ValueError, match="sample indices"):
        SegmentSample(t.unl.base, [5])


def test_init_warm_starts_from_a_checkpoint(data, tmp_path):
    src = tmp_path / "src.pt"
    torch.manual_seed(7)
    save_checkpoint(src, build_model("teacher"), kind="teacher", config={}, feature_hash=grid.feature_hash())
    cfg = config.resolve("teacher", overrides=dict(data=[data["one"]], out=tmp_path / "t", epochs=1, batch=2,
                                                   precision="fp32", lr=0.0, init=str(src)))
    train_teacher(cfg)
    want, _ = load_checkpoint(src)
    got, _ = load_checkpoint(tmp_path / "t" / "last.pt")
    for (k, w), g in zip(want.state_dict().items(), got.state_dict().values()):
        if k.endswith(".weight") and w.dim() == 4:                  # conv weights: lr 0 keeps them as loaded
            assert torch.equal(w, g), k
    student = save_checkpoint(tmp_path / "student.pt", build_model("student"), kind="student", config={},
                              feature_hash=grid.feature_hash())
    cfg["init"], cfg["out"] = str(student), str(tmp_path / "u")
    with pytest.raises(InputError, match="student.pt"):
        train_teacher(cfg)


def test_val_every_validates_every_nth_and_the_last_epoch(data, tmp_path):
    cfg = _student_cfg(data, tmp_path / "s", labeled=[data["one"]], unlabeled=[], epochs=4, val_every=3,
                       teacher="random", kd=False)
    train_student(cfg)
    rows = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert [("val_OA" in r) for r in rows] == [False, False, True, True]       # after epochs 3 and 4 (the last)
    _, meta = load_checkpoint(tmp_path / "s" / "best.pt")
    assert meta["metrics"]["val_select"] == max(r["val_select"] for r in rows if "val_select" in r)
    with pytest.raises(InputError, match="val_every must be >= 1"):
        _student_cfg(data, tmp_path / "x", val_every=0)


def test_patience_stops_early_and_a_resumed_run_stays_stopped(data, tmp_path, monkeypatch):
    # scripted validation scores per validated epoch: best at epoch 1, then none better for 2 epochs
    scores = iter([1.0, 2.0, 2.0, 1.5, 9.0, 9.0, 9.0])
    monkeypatch.setattr(DistillTrainer, "validate", lambda self, model: {"val_OA": 0.0, "val_select": next(scores)})
    kw = dict(labeled=[data["one"]], unlabeled=[], epochs=6, teacher="random", kd=False, patience=2)
    t = DistillTrainer(_student_cfg(data, tmp_path / "p", **kw))
    t.fit()
    rows = [json.loads(line) for line in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]                      # 3 - 1 >= 2: stop after epoch 3
    assert [r.get("early_stop", False) for r in rows] == [False, False, False, True]
    assert _logged(t, "early stop after epoch 3: val_select has not improved on epoch 1's in 2 epochs")
    _, meta = load_checkpoint(tmp_path / "p" / "best.pt")
    assert meta["extra"]["epoch"] == 1 and meta["metrics"]["val_select"] == 2.0

    again = DistillTrainer(_student_cfg(data, tmp_path / "p", **kw), resume=True)      # same patience: no epoch
    assert again.fit() == {}
    assert len((tmp_path / "p" / "metrics.jsonl").read_text().splitlines()) == 4
    assert _logged(again, "early stop after epoch 3")

    longer = DistillTrainer(_student_cfg(data, tmp_path / "p", **{**kw, "patience": 0}), resume=True)
    longer.fit()                                                            # off: epochs 4 and 5 run (score 9)
    rows = [json.loads(line) for line in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4, 5]
    _, meta = load_checkpoint(tmp_path / "p" / "best.pt")
    assert meta["extra"]["epoch"] == 4
    with pytest.raises(InputError, match="patience must be >= 0"):
        _student_cfg(data, tmp_path / "x", patience=-1)


def test_patience_on_a_run_saved_before_best_epoch_was_stored(data, tmp_path, monkeypatch):
    # last.pt of older runs has no "best_epoch": it is read back from metrics.jsonl
    scores = iter([3.0, 1.0, 1.0])
    monkeypatch.setattr(DistillTrainer, "validate", lambda self, model: {"val_OA": 0.0, "val_select": next(scores)})
    kw = dict(labeled=[data["one"]], unlabeled=[], teacher="random", kd=False)
    DistillTrainer(_student_cfg(data, tmp_path / "o", epochs=2, **kw)).fit()
    last = tmp_path / "o" / "last.pt"
    blob = torch.load(last, weights_only=True)
    st = blob["extra"]["train_state"]
    del st["best_epoch"], st["validated"]
    torch.save(blob, last)
    t = DistillTrainer(_student_cfg(data, tmp_path / "o", epochs=5, patience=2, **kw), resume=True)
    t.fit()                                                     # best epoch 0; epoch 2 is 2 epochs on: stop
    rows = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2] and rows[-1]["early_stop"] is True


def test_init_without_projector_heads_starts_a_run_with_fresh_heads(data, tmp_path):
    trunk = build_model("student", heads=False)
    torch.manual_seed(7)
    for p in trunk.parameters():
        p.data.normal_()
    init = save_checkpoint(tmp_path / "trunk.pt", trunk, kind="student", config={}, feature_hash=grid.feature_hash())
    cfg = _student_cfg(data, tmp_path / "h", labeled=[data["one"]], unlabeled=[], epochs=1, init=str(init),
                       lr=0.0, teacher="random", kd=False, val="")
    t = DistillTrainer(cfg)
    t.fit()
    assert _logged(t, f"initialised from {init}; projector heads not in it: initialised fresh")
    model, meta = load_checkpoint(tmp_path / "h" / "last.pt")
    assert meta["heads"] is True
    got = model.state_dict()
    for k, v in trunk.state_dict().items():
        if k.endswith(".weight") and v.dim() == 4:              # lr 0: conv weights stay as loaded
            assert torch.equal(got[k], v), k
    torch.manual_seed(int(cfg["seed"]))                          # the heads: the run's seeded initialisation
    fresh = build_model("student", heads=True).state_dict()
    assert torch.equal(got["fc1.weight"], fresh["fc1.weight"]) and torch.equal(got["cc3.weight"], fresh["cc3.weight"])

    back = DistillTrainer(_student_cfg(data, tmp_path / "n", labeled=[data["one"]], unlabeled=[], epochs=1,
                                       init=str(tmp_path / "h" / "last.pt"), teacher="random", kd=False, val="",
                                       heads=False))
    back.fit()                                                  # heads → --no-heads: the trunk only
    assert _logged(back, "initialised from") and any("left out (--no-heads)" in s for s in back.log_lines)
    from hkdsme.train import rundir

    melody = build_model("student", n_classes=1, heads=False)
    one = save_checkpoint(tmp_path / "one.pt", melody, kind="student", config={}, feature_hash=grid.feature_hash())
    rundir.check_checkpoints("distill", _student_cfg(data, tmp_path / "x", init=str(one)))   # melody → channel 0
    with pytest.raises(InputError, match="output classes"):     # a harmonic net cannot start a melody-only run
        rundir.check_checkpoints("distill", _student_cfg(data, tmp_path / "y", init=str(init), harmonic=False))
