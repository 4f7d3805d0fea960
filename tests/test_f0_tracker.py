"""f0 labels of isolated voice (pipeline/f0_tracker.py, `hkd-prep label-f0`): accuracy on a synthetic voice with
vibrato and silences, label files (round trip, atomic, resumable, bad input)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from hkdsme.pipeline import f0_tracker as ft
from hkdsme.pipeline import synthetic
from hkdsme.pipeline.cli import main as prep
from hkdsme.pipeline.errors import InputError

SR = 16000
NOTES = synthetic.VIBRATO_NOTES       # (start s, end s, centre Hz); digital silence between the notes
true_f0 = synthetic.vibrato_f0          # centre pitch with a 5.5 Hz vibrato of ±50 cents; 0 outside the notes
synthetic_voice = synthetic.vibrato_voice


def test_vibrato_voice_f0_by_hand():
    quarter = 1 / (4 * 5.5)                                   # a quarter vibrato period: the peak, +50 cents
    f = true_f0(np.array([0.3, 0.4, 0.4 + quarter, 2.0 + 3 * quarter, 3.2, 4.2]))
    np.testing.assert_allclose(f, [0, 220.0, 220.0 * 2 ** (0.5 / 12), 523.25 * 2 ** (-0.5 / 12), 0, 0], rtol=1e-12)
    x = synthetic_voice(8000)
    assert x.dtype == np.float32 and x.size == 36000 and not x[:3200].any() and 0.2 < np.abs(x).max() < 0.5


def interior(times, margin=0.06):
    """Frames at least ``margin`` from every note edge: (voiced mask, silent mask)."""
    voiced = np.zeros(times.shape, bool)
    near = np.zeros(times.shape, bool)
    for a, b, _ in NOTES:
        voiced |= (times >= a + margin) & (times <= b - margin)
        near |= (np.abs(times - a) < margin) | (np.abs(times - b) < margin) | ((times >= a) & (times <= b))
    return voiced, ~near


@pytest.mark.parametrize("tracker", ["pyin", "swift"])
def test_synthetic_voice_within_20_cents_and_silence_unvoiced(tracker):
    if tracker != ft.DEFAULT_TRACKER:
        pytest.importorskip({"swift": "swift_f0"}[tracker], reason="optional tracker not installed")
    x = synthetic_voice()
    times, f0, conf = ft.track(x, SR, tracker)
    assert np.allclose(times, 0.01 * np.arange(len(x) // 160 + 1))
    f = ft.voiced_f0(f0, conf, ft.THRESHOLDS[tracker])
    voiced, silent = interior(times)
    ref = true_f0(times)
    assert (f[voiced] > 0).all(), f"{tracker}: {int((f[voiced] == 0).sum())} voiced frames missed"
    cents = 1200 * np.abs(np.log2(f[voiced] / ref[voiced]))
    assert cents.max() < 20, f"{tracker}: max error {cents.max():.1f} c"
    assert (f[silent] == 0).all(), f"{tracker}: {int((f[silent] > 0).sum())} silent frames voiced"


def test_track_at_another_rate_gives_the_same_grid():
    x16 = synthetic_voice()
    x8 = synthetic_voice(8000)
    t16, f16, c16 = ft.track(x16, SR)
    t8, f8, c8 = ft.track(x8, 8000)      # resampled to 16 kHz inside: same 10 ms frames
    assert t8.size == t16.size
    voiced, _ = interior(t8)
    assert np.median(np.abs(1200 * np.log2(f8[voiced] / f16[voiced]))) < 5


def test_unknown_tracker_and_empty_audio_are_refused():
    with pytest.raises(ValueError, match="unknown tracker"):
        ft.track(np.zeros(1600, np.float32), SR, "nope")
    with pytest.raises(ValueError, match="empty"):
        ft.track(np.zeros(0, np.float32), SR)


def test_missing_optional_tracker_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "swift_f0", None)      # makes `import swift_f0` fail as if not installed
    monkeypatch.setattr(ft, "_SWIFT", None)
    with pytest.raises(RuntimeError, match="pip install swift-f0"):
        ft.track(np.ones(1600, np.float32), SR, "swift")


def test_voiced_f0_threshold():
    f = ft.voiced_f0([100.0, 200.0, 300.0, 0.0], [0.2, 0.5, 0.9, 0.9], 0.5)
    assert f.tolist() == [0.0, 200.0, 300.0, 0.0]


def test_label_file_round_trip(tmp_path):
    t = 0.01 * np.arange(5)
    f = np.array([0.0, 220.0, 220.5, 441.123, 0.0])
    c = np.array([0.1, 0.9, 0.95, 0.8765, 0.2])
    p = ft.write_f0_csv(tmp_path / "a.f0.csv", t, f, c)
    assert p.read_text().splitlines()[0] == "time_s,f0_hz,confidence"
    assert p.read_text().splitlines()[2] == "0.010,220.000,0.9000"
    t2, f2, c2 = ft.read_f0_csv(p)
    assert np.allclose(t2, t) and np.allclose(f2, f, atol=5e-4) and np.allclose(c2, c, atol=5e-5)
    assert [q.name for q in tmp_path.iterdir()] == ["a.f0.csv"]       # no temp file left behind


@pytest.mark.parametrize("text,why", [
    ("time_s,f0_hz,confidence\n0.0,100,0.5\n0.0,100,0.5\n", "strictly increasing"),
    ("time_s,f0_hz,confidence\n0.0,-1,0.5\n", ">= 0"),
    ("time_s,f0_hz,confidence\n0.0,100,1.5\n", "within \\[0, 1\\]"),
    ("time_s,f0_hz,confidence\n0.0,nan,0.5\n", "NaN"),
    ("time_s,f0_hz,confidence\n", "no rows"),
])
def test_bad_label_files_name_the_file(tmp_path, text, why):
    p = tmp_path / "bad.f0.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=why) as e:
        ft.read_f0_csv(p)
    assert str(p) in str(e.value)


def test_label_f0_cli_writes_resumes_and_skips_bad_files(tmp_path):
    audio = tmp_path / "voices"
    (audio / "sub").mkdir(parents=True)
    sf.write(audio / "sub" / "v1.wav", synthetic_voice(), SR)
    (audio / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    out = tmp_path / "labels"
    r = CliRunner().invoke(prep, ["label-f0", str(audio), "--out", str(out)])
    assert r.exit_code == 0, r.output
    skips = [line for line in r.output.splitlines() if line.startswith("skip ")]
    assert len(skips) == 1 and "broken.wav" in skips[0]
    assert "1 labeled, 0 already there, 1 failed" in r.output
    t, f, c = ft.read_f0_csv(out / "sub__v1.f0.csv")
    voiced, silent = interior(t)
    assert (f[voiced] > 0).all() and (f[silent] == 0).all()
    before = (out / "sub__v1.f0.csv").stat().st_mtime_ns
    r = CliRunner().invoke(prep, ["label-f0", str(audio), "--out", str(out)])
    assert "0 labeled, 1 already there, 1 failed" in r.output
    assert (out / "sub__v1.f0.csv").stat().st_mtime_ns == before
