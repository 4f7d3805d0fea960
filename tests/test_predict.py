"""inference.py (streaming CFP → network → f0), predict.py (batch files), formats.py round trips, `hkd-eval predict`."""
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from torch import nn

import hkdsme
from hkdsme.evaluate import inference as I
from hkdsme.evaluate import models as M
from hkdsme.evaluate import predict as P
from hkdsme.evaluate.cli import main
from hkdsme.evaluate.formats import FORMATS, read_melody, write_melody
from hkdsme.model.checkpoint import save_checkpoint
from hkdsme.model.output import NetOutput
from hkdsme.model.student import MSNet
from hkdsme.pipeline import cfp as cfp_mod
from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError


class TinyNet(nn.Module):
    """Cheap stand-in for the network: a 3x5 conv (5 frames of time context, so a wrong 64-frame segmentation
    changes the output at segment edges) and mean + 2.5 std of the column as the "unvoiced" row 0."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, (3, 5), padding=(1, 2))
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))

    def forward(self, x):
        h = self.conv(x)
        logits = torch.cat([h.mean(dim=2, keepdim=True) + 2.5 * h.std(dim=2, keepdim=True), h], dim=2)
        return NetOutput(torch.softmax(logits, dim=2), logits, ())


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    return save_checkpoint(path, MSNet(), kind="student", config={}, feature_hash=grid.feature_hash())


def _song(seconds, sr=grid.SR, seed=0):
    """A gliding harmonic tone with low noise, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = 220 * 2 ** (0.5 * np.sin(2 * np.pi * 0.3 * t))
    ph = 2 * np.pi * np.cumsum(f) / sr
    x = sum(0.3 / k * np.sin(k * ph) for k in (1, 2, 3)) + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def _tiny_predictor(ckpt, **kw):
    pred = I.Predictor(ckpt, channels_last=False, precision="fp32", decode="argmax", **kw)   # TinyNet has near-ties: one layout
    pred.model = TinyNet().eval()
    return pred


# ----------------------------------------------------------------------------------------------- streaming

@pytest.mark.parametrize("held", [True, False], ids=["one-pass", "two-pass"])
def test_streamed_equals_whole_file(ckpt, held):
    x = _song(20.0)
    pred = _tiny_predictor(ckpt, block_s=1.0, max_held_frames=10**9 if held else 0, batch_size=3)
    assert pred.block_frames == 128
    t, f0, spec = pred.predict_audio(x, return_spectrum=True)
    whole = cfp_mod.cfp(x)                                     # non-streamed features
    np.testing.assert_array_equal(spec, whole[0])               # bit-identical CFP
    t2, f2 = pred.predict_features(whole)
    n = grid.n_frames(x.size)
    np.testing.assert_allclose(t, grid.frame_times(n))
    np.testing.assert_array_equal(f0, f2)
    assert f0.shape == (n,) and (f0 > 0).any() and (f0 == 0).any()
    # reference decoding by hand: segments of 64 frames, zero-padded tail, argmax of channel 0
    pad = np.zeros((3, 320, -(-n // 64) * 64), np.float32)
    pad[:, :, :n] = whole
    segs = torch.from_numpy(pad.reshape(3, 320, -1, 64).transpose(2, 0, 1, 3).copy())
    with torch.no_grad():
        k = TinyNet()(segs).logits[:, 0].argmax(dim=1).reshape(-1)[:n].numpy()
    np.testing.assert_array_equal(f0, grid.bin_to_hz(k))


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_cfp_equals_whole_file(threads):
    x = _song(7.77)                                            # 776 frames: blocks of unequal length
    whole = cfp_mod.cfp(x)
    for block in (128, 64 * 64):                               # many small blocks; fewer blocks than 4 per thread
        np.testing.assert_array_equal(I.streamed_cfp(x, block, threads=threads), whole)


def test_real_student_segments_and_batches(ckpt):
    x = _song(2.0)
    a = I.Predictor(ckpt, batch_size=1).predict_audio(x)
    b = I.Predictor(ckpt, batch_size=16, block_s=0.5).predict_audio(x)
    assert a[1].shape == (grid.n_frames(x.size),)
    np.testing.assert_array_equal(a[1], b[1])
    assert np.all((a[1] == 0) | ((a[1] > 31) & (a[1] < 1250)))


class SliceNet(nn.Module):
    """Near-free stand-in for the memory test: logits are the spectrum channel with a constant row 0."""

    def forward(self, x):
        logits = torch.cat([torch.full_like(x[:, :1, :1], 0.5), x[:, :1]], dim=2).expand(-1, 4, -1, -1)
        return NetOutput(logits, logits, ())


def _cheap_raw(x, sr=grid.SR):
    """Stand-in CFP with the same framing, cost O(n) (the real one needs ~0.6 s per minute of audio)."""
    n = grid.n_frames(len(x))
    v = np.abs(x[grid.HOP * (np.arange(n) + 1) - 1])
    return (v * np.arange(1, 321, dtype=np.float32)[:, None])[None].repeat(3, axis=0)


def test_long_input_memory_bounded_by_block(ckpt, monkeypatch):
    """Two-pass path on 4 min of low-level noise: numpy memory stays near one block, not the whole track."""
    calls = []
    monkeypatch.setattr(cfp_mod, "cfp_raw", lambda x, sr=grid.SR: calls.append(len(x)) or _cheap_raw(x))
    x = (1e-3 * np.random.default_rng(1).standard_normal(4 * 60 * grid.SR)).astype(np.float32)
    pred = I.Predictor(ckpt, block_s=5.0, batch_size=64, max_held_frames=0)
    pred.model = SliceNet()
    n = grid.n_frames(x.size)
    tracemalloc.start()
    t, f0 = pred.predict_audio(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    block_bytes = 3 * 320 * 4 * (pred.block_frames + 2 * I.CONTEXT_FRAMES)
    assert peak < 6 * block_bytes + 40 * n, (peak, block_bytes)   # blocks + per-frame outputs (times, f0, bins)
    assert peak < 3 * 320 * 4 * n / 8                              # far below the whole raw CFP
    assert len(calls) == 2 * -(-n // pred.block_frames)            # two passes over the blocks
    assert max(calls) <= (pred.block_frames + 2 * I.CONTEXT_FRAMES + 1) * grid.HOP
    assert t.shape == f0.shape == (n,) and t[-1] == pytest.approx(n * 0.01)
    # same numbers as holding the whole track (one pass)
    pred_held = I.Predictor(ckpt, block_s=5.0, max_held_frames=10**9)
    pred_held.model = SliceNet()
    np.testing.assert_array_equal(pred_held.predict_audio(x)[1], f0)


def test_over_ten_minutes_switches_to_two_passes(ckpt, monkeypatch):
    seen = []
    monkeypatch.setattr(I, "streamed_cfp", lambda x, b, t=1: seen.append("one") or np.zeros((3, 320, grid.n_frames(x.size)),
                                                                                     np.float32))
    monkeypatch.setattr(I.Predictor, "_decode", lambda self, f, c: (np.zeros(f.shape[-1]), None))
    monkeypatch.setattr(I.Predictor, "_two_pass", lambda self, x, n, s, c: seen.append("two") or (np.zeros(n), None, None))
    pred = I.Predictor(ckpt)
    for minutes in (10, 10.01):
        pred.predict_audio(np.full(int(minutes * 60 * grid.SR), 0.1, np.float32))
    assert seen == ["one", "two"]


# ------------------------------------------------------------------------------------------ default model

def test_no_embedded_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(M.resources, "files", lambda pkg: tmp_path)
    with pytest.raises(M.NoDefaultModel, match=r"no embedded default model yet: train one with `hkd-train run"):
        I.Predictor()
    with pytest.raises(M.NoDefaultModel, match="--checkpoint"):
        hkdsme.extract_melody(np.zeros(8000, np.float32) + 0.1, sr=8000)
    r = CliRunner().invoke(main, ["predict", str(tmp_path / "x.wav")])
    assert r.exit_code == 1 and "no embedded default model yet" in r.output


def test_embedded_model_is_used_when_present(monkeypatch, tmp_path, ckpt):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "a.pt").write_bytes(Path(ckpt).read_bytes())
    (tmp_path / "weights" / "models.json").write_text(json.dumps(
        {"default": "supervised", "models": {"hkdsme": "missing.pt", "supervised": "a.pt"}}))
    monkeypatch.setattr(M.resources, "files", lambda pkg: tmp_path)
    assert I.Predictor().checkpoint == tmp_path / "weights" / "a.pt"
    assert I.Predictor(model="supervised").checkpoint == tmp_path / "weights" / "a.pt"
    with pytest.raises(M.NoDefaultModel, match="'hkdsme' is missing"):
        I.Predictor(model="hkdsme")


def test_extract_melody_array_resampled_with_soxr(ckpt):
    from hkdsme.pipeline.audio import resample

    x16 = _song(1.5, sr=16000)
    t, f0 = hkdsme.extract_melody(x16, sr=16000, checkpoint=ckpt)
    t8, f8 = I.Predictor(ckpt).predict_audio(resample(x16, 16000, 8000))
    np.testing.assert_array_equal(f0, f8)
    with pytest.raises(ValueError, match="sample rate"):
        hkdsme.extract_melody(x16, checkpoint=ckpt)


def test_wrong_checkpoints_are_rejected_naming_the_file(tmp_path, ckpt):
    junk = tmp_path / "junk.pt"
    torch.save({"hello": 1}, junk)
    with pytest.raises(InputError, match="junk.pt: not an hkdsme checkpoint"):
        I.Predictor(junk)
    other = save_checkpoint(tmp_path / "other.pt", MSNet(), kind="student", config={}, feature_hash="0" * 16)
    with pytest.raises(InputError, match="other.pt: checkpoint was trained on features 0000"):
        I.Predictor(other)
    r = CliRunner().invoke(main, ["predict", "--checkpoint", str(junk), str(tmp_path / "a.wav")])
    assert r.exit_code == 1 and "not an hkdsme checkpoint" in r.output


# ------------------------------------------------------------------------------------- files and the CLI

def _bad_and_good_files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "good.wav", _song(1.2, sr=16000), 16000)
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(d / "short.wav", _song(0.01, sr=16000), 16000)
    (d / "garbage.wav").write_bytes(b"RIFF not really a wave file" * 10)
    return d


def test_predict_files_skips_bad_files(tmp_path, ckpt):
    d = _bad_and_good_files(tmp_path)
    written, failed = P.predict_files([d, tmp_path / "missing.wav"], ckpt, out_dir=tmp_path / "out",
                                      progress=False)
    assert list(written) == [d / "good.wav"]
    assert written[d / "good.wav"] == tmp_path / "out" / "good.f0.csv"
    reasons = {p.name: why for p, why in failed.items()}
    assert set(reasons) == {"garbage.wav", "silent.wav", "short.wav", "missing.wav"}
    assert "not found" in reasons["missing.wav"]
    assert "silent" in reasons["silent.wav"]
    assert "cannot decode" in reasons["garbage.wav"]
    assert "short" in reasons["short.wav"]
    t, f0 = read_melody(written[d / "good.wav"])
    assert t.size == grid.n_frames(int(1.2 * 8000))


def test_cli_predict_formats_and_plot(tmp_path, ckpt):
    d = _bad_and_good_files(tmp_path)
    out = tmp_path / "out"
    ref = None
    for fmt in FORMATS:
        r = CliRunner().invoke(main, ["predict", str(d / "good.wav"), "--checkpoint", str(ckpt), "--out",
                                      str(out), "--format", fmt] + (["--plot"] if fmt == "csv" else []))
        assert r.exit_code == 0, r.output
        t, f0 = read_melody(out / ("good" + P.OUT_SUFFIX[fmt]))
        ref = (t, f0) if ref is None else ref
        np.testing.assert_allclose(t, ref[0], atol=1e-6)
        np.testing.assert_allclose(f0, ref[1], atol=1e-6)
    assert (out / "good.f0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(main, ["predict", str(d), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 1
    assert "3 of 4 input(s) failed" in r.output and "silent.wav" in r.output
    assert (tmp_path / "o2" / "good.f0.csv").is_file()


# ------------------------------------------------------------------------------------------------ formats

@pytest.mark.parametrize("fmt", FORMATS)
def test_formats_round_trip(tmp_path, fmt):
    t = grid.frame_times(50)
    f0 = grid.bin_to_hz(np.arange(50) * 6 % 321)   # includes 0 (unvoiced) and irrational Hz
    f0[7] = -180.5                                  # "unvoiced, with a pitch guess" survives too
    path = write_melody(tmp_path / f"m{P.OUT_SUFFIX[fmt]}", t, f0, fmt)
    t2, f2 = read_melody(path)
    np.testing.assert_allclose(t2, t, atol=5e-7, rtol=0)
    np.testing.assert_allclose(f2, f0, atol=5e-7, rtol=0)
    assert not list(tmp_path.glob("*.tmp"))


def test_format_layouts(tmp_path):
    t, f0 = np.array([0.01, 0.02]), np.array([0.0, 220.0])
    assert write_melody(tmp_path / "a.csv", t, f0, "csv").read_text() == "time,f0\n0.010000,0.000000\n" \
                                                                         "0.020000,220.000000\n"
    assert write_melody(tmp_path / "a.txt", t, f0, "mirex").read_text() == "0.010000\t0.000000\n" \
                                                                           "0.020000\t220.000000\n"
    doc = json.loads(write_melody(tmp_path / "a.jams", t, f0, "jams").read_text())
    ann = doc["annotations"][0]
    assert ann["namespace"] == "pitch_contour" and doc["file_metadata"]["jams_version"] == "0.3.4"
    assert {"annotation_metadata", "data", "namespace"} <= set(ann)
    assert ann["data"]["time"] == [0.01, 0.02] and ann["data"]["duration"] == [0.0, 0.0]
    assert ann["data"]["value"] == [{"index": 0, "frequency": 0.0, "voiced": False},
                                    {"index": 0, "frequency": 220.0, "voiced": True}]
    with pytest.raises(ValueError, match="unknown format"):
        write_melody(tmp_path / "a.x", t, f0, "midi")


def test_read_malformed_files(tmp_path):
    (tmp_path / "bad.csv").write_text("t;f\n1;2\n")
    with pytest.raises(InputError, match="bad.csv: not a valid csv"):
        read_melody(tmp_path / "bad.csv")
    (tmp_path / "bad.txt").write_text("0.01 100 7\n")
    with pytest.raises(InputError, match="expected 2 columns"):
        read_melody(tmp_path / "bad.txt")
    (tmp_path / "bad.jams").write_text("{\"annotations\": []}")
    with pytest.raises(InputError, match="no pitch_contour"):
        read_melody(tmp_path / "bad.jams")
    with pytest.raises(InputError, match="no such file"):
        read_melody(tmp_path / "nope.csv")
