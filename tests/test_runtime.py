"""model/runtime.py: precision by hardware capability, threads; the fast predict path equals the plain one."""
import numpy as np
import pytest
import torch

from hkdsme.evaluate import inference as I
from hkdsme.model import runtime
from hkdsme.pipeline import cfp as cfp_mod
from hkdsme.pipeline import grid, synthetic

AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl"}
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512 | {"amx_bf16", "amx_tile"}


@pytest.mark.parametrize("flags, native", [(AVX2, False), (AVX512, False), (AVX512_BF16, True), (AMX, True),
                                           (set(), False)])
def test_native_bf16_from_cpu_flags(flags, native):
    ok, why = runtime.native_cpu_bf16(flags, env={}, machine="x86_64")
    assert ok is native and why


def test_onednn_isa_cap_below_bf16_disables_native():
    assert runtime.native_cpu_bf16(AVX512_BF16, env={"ONEDNN_MAX_CPU_ISA": "AVX2"}, machine="x86_64")[0] is False
    assert runtime.native_cpu_bf16(AVX512_BF16, env={"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"},
                                   machine="x86_64")[0] is True


def test_arm_bf16_flag():
    assert runtime.native_cpu_bf16({"fp", "asimd", "bf16"}, env={}, machine="aarch64")[0] is True
    assert runtime.native_cpu_bf16({"fp", "asimd"}, env={}, machine="aarch64")[0] is False


@pytest.mark.parametrize("cpu_bf16, expected", [(False, "fp32"), (True, "bf16")])
def test_auto_on_cpu_follows_capability(cpu_bf16, expected):
    p = runtime.resolve_precision("auto", "cpu", cpu_bf16=cpu_bf16)
    assert p.name == expected and p.reason.startswith("auto")


@pytest.mark.parametrize("cuda_bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_follows_capability(cuda_bf16, expected):
    assert runtime.resolve_precision("auto", "cuda", cuda_bf16=cuda_bf16).name == expected


def test_auto_on_this_machine_matches_its_flags():
    native, _ = runtime.native_cpu_bf16()
    assert runtime.resolve_precision("auto", "cpu").name == ("bf16" if native else "fp32")


def test_explicit_precisions_and_errors():
    assert runtime.resolve_precision("fp32", "cpu", cpu_bf16=True).name == "fp32"
    assert runtime.resolve_precision("bf16", "cpu", cpu_bf16=False).name == "bf16"   # allowed, only slow
    with pytest.raises(ValueError, match="fp16 needs --device cuda"):
        runtime.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be"):
        runtime.resolve_precision("int4", "cpu")


def test_threads_follow_affinity_unless_omp_set(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0}, raising=False)
        assert runtime.usable_cores() == 1
        assert runtime.configure_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert runtime.configure_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_trainer_logs_and_stores_precision(tmp_path):
    from hkdsme.model.checkpoint import load_checkpoint
    from hkdsme.train import config
    from hkdsme.train.teacher import train_teacher
    from train_helpers import write_cache

    cache = write_cache(tmp_path / "c")
    cfg = config.resolve("teacher", overrides=dict(data=[str(cache)], val=str(cache), out=str(tmp_path / "run"),
                                                   epochs=2, batch=2, max_steps_per_epoch=1, precision="auto"))
    train_teacher(cfg)
    expected = runtime.resolve_precision("auto", "cpu").name
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"precision {expected} (auto:" in log and log.count("precision ") == 1
    import json
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["precision"] == expected for r in rows)
    _, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    assert meta["extra"]["precision"] == expected


def test_fast_predict_path_is_bit_identical_to_the_plain_one():
    """The speed work (channels_last, batch 32, inference_mode, threads, prefetch) must not change one frame:
    compare with the plain path (contiguous, batch 16, no_grad, fp32) on a synthetic song, default model."""
    x, _, _ = synthetic.make_song(seed=5, duration=12.0)
    fast = I.Predictor(precision="fp32", decode="argmax")
    assert fast.channels_last and fast.batch_size == 16          # fp32 on CPU: runtime.inference_batch
    _, f0 = fast.predict_audio(x)

    feats = cfp_mod.cfp(x)
    n = feats.shape[-1]
    pad = np.zeros((3, 320, -(-n // 64) * 64), np.float32)
    pad[:, :, :n] = feats
    segs = torch.from_numpy(pad.reshape(3, 320, -1, 64).transpose(2, 0, 1, 3).copy())
    plain = I.Predictor(precision="fp32", channels_last=False).model
    with torch.no_grad():
        k = torch.cat([plain(segs[i:i + 16]).logits[:, 0].argmax(dim=1) for i in range(0, len(segs), 16)])
    ref = grid.bin_to_hz(k.reshape(-1)[:n].numpy())
    ref = np.where(k.reshape(-1)[:n].numpy() > 0, ref, 0.0)
    assert (f0 > 0).sum() > 100
    np.testing.assert_array_equal(f0, ref)


def test_predict_many_with_prefetch_equals_one_by_one(tmp_path):
    import soundfile as sf

    paths = []
    for s in range(3):
        x, _, _ = synthetic.make_song(seed=20 + s, duration=3.0)
        p = tmp_path / f"s{s}.wav"
        sf.write(p, x, grid.SR)
        paths.append(p)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    paths.insert(1, bad)
    pred = I.Predictor(precision="fp32")
    got = list(pred.predict_many(paths))
    assert [p for p, _ in got] == paths
    assert isinstance(got[1][1], I.InputError) and "bad.wav" in str(got[1][1])
    for p, res in got:
        if p != bad:
            np.testing.assert_array_equal(res[1], pred.predict_file(p)[1])


def test_extract_melody_loads_the_model_once(monkeypatch):
    x, _, _ = synthetic.make_song(seed=1, duration=2.0)
    I._PREDICTORS.clear()
    calls = []
    real = I.Predictor.__init__

    def counting(self, *a, **k):
        calls.append(1)
        real(self, *a, **k)

    monkeypatch.setattr(I.Predictor, "__init__", counting)
    a = I.extract_melody(x, sr=grid.SR)
    b = I.extract_melody(x, sr=grid.SR)
    assert len(calls) == 1
    np.testing.assert_array_equal(a[1], b[1])


def test_memory_format_follows_network_and_precision(tmp_path):
    from hkdsme.model.checkpoint import build_model, save_checkpoint

    assert runtime.use_channels_last("cpu", "student", "fp32") and runtime.use_channels_last("cpu", "student", "bf16")
    assert not runtime.use_channels_last("cpu", "teacher", "fp32") and runtime.use_channels_last("cpu", "teacher", "bf16")
    assert not runtime.use_channels_last("cuda", "student", "bf16")
    ck = save_checkpoint(tmp_path / "t.pt", build_model("teacher"), kind="teacher", config={},
                         feature_hash=grid.feature_hash())
    assert I.Predictor(ck, precision="fp32").channels_last is False        # the rule sees the checkpoint's kind
    assert I.Predictor(ck, precision="bf16").channels_last is True


_F0_SCRIPT = """
import sys, numpy as np
from hkdsme.model import runtime
kept = runtime.keep_freed_memory()
from hkdsme.evaluate.inference import Predictor
from hkdsme.pipeline import synthetic
x, _, _ = synthetic.make_song(seed=11, duration=8.0)
_, f0 = Predictor(precision="fp32").predict_audio(x)
np.save(sys.argv[1], f0)
print(kept)
"""


def _f0_in_fresh_process(tmp_path, name, env):
    import os
    import subprocess
    import sys

    out = tmp_path / f"{name}.npy"
    r = subprocess.run([sys.executable, "-c", _F0_SCRIPT, str(out)], capture_output=True, text=True,
                       env={**os.environ, **env}, check=True)
    return r.stdout.split()[-1] == "True", np.load(out)


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_kept_heap_applies_on_glibc_is_opt_out_and_changes_no_number(tmp_path):
    kept, f0 = _f0_in_fresh_process(tmp_path, "kept", {"HKDSME_MALLOC": ""})
    system, ref = _f0_in_fresh_process(tmp_path, "system", {"HKDSME_MALLOC": "system"})
    assert kept and not system
    assert (ref > 0).sum() > 100
    np.testing.assert_array_equal(f0, ref)         # allocation never changes the arithmetic
