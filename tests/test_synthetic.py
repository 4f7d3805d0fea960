import numpy as np
import pytest
import soundfile as sf

from hkdsme.pipeline import datasets, grid, labels, synthetic


def test_make_song_deterministic_and_plausible():
    for seed in (0, 7):
        y, t, f0 = synthetic.make_song(seed, duration=8.0)
        y2, t2, f02 = synthetic.make_song(seed, duration=8.0)
        assert np.array_equal(y, y2) and np.array_equal(f0, f02) and np.array_equal(t, t2)
        assert y.dtype == np.float32 and y.shape == (64000,) and np.isfinite(y).all()
        assert 0 < np.abs(y).max() <= 0.8 + 1e-6
        np.testing.assert_allclose(t[:3], [0.0, 0.001, 0.002])
        voiced = f0 > 0
        assert 0.4 <= voiced.mean() <= 0.9
        assert f0[voiced].min() >= 100 and f0[voiced].max() <= 800
        assert (f0 >= 0).all() and not voiced[0]           # starts with a breath
    assert not np.array_equal(synthetic.make_song(1, 2.0)[0], synthetic.make_song(2, 2.0)[0])


def test_voice_f0_is_in_the_audio():
    """The labelled f0 is where the voice is: spectral energy near f0 (and 2 f0) is much higher when voiced."""
    y, t, f0 = synthetic.make_song(3, duration=4.0)
    n = 512
    win = np.hanning(n)
    ratios = []
    for i in range(0, t.size, 50):
        c = int(round(t[i] * grid.SR))
        if f0[i] <= 0 or c - n // 2 < 0 or c + n // 2 > y.size:
            continue
        spec = np.abs(np.fft.rfft(y[c - n // 2:c + n // 2] * win))
        freqs = np.fft.rfftfreq(n, 1 / grid.SR)
        near = np.zeros(freqs.size, bool)
        for h in (1, 2, 3):
            near |= np.abs(freqs - h * f0[i]) < 20
        ratios.append(spec[near].max() / np.median(spec))
    assert len(ratios) > 20 and np.median(ratios) > 20


def test_write_dataset_roundtrip(tmp_path):
    paths = synthetic.write_dataset(tmp_path, n=2, seed=5, duration=3.0)
    assert [p.name for p in paths] == ["synth_000.wav", "synth_001.wav"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    tracks = datasets.list_tracks("synthetic", tmp_path)
    assert [tr.track_id for tr in tracks] == ["synth_000", "synth_001"]
    for i, tr in enumerate(tracks):
        y, t, f0 = synthetic.make_song(synthetic._song_seed(5, i), 3.0)
        audio = tr.load_audio()
        assert audio.shape == y.shape and sf.info(tr.audio_path).samplerate == 8000
        np.testing.assert_allclose(audio, y, atol=1 / 32768 + 1e-7)   # 16-bit PCM
        times, ref = tr.load_f0()
        n = grid.n_frames(y.size)
        np.testing.assert_allclose(times, grid.frame_times(n), atol=1e-9)
        np.testing.assert_allclose(ref, f0[10::10][:n], rtol=1e-6, atol=1e-6)
        # on the feature grid the REF file reproduces itself exactly
        np.testing.assert_allclose(labels.f0_to_grid(times, ref, n), ref, rtol=1e-6)
        # and agrees with the fine 1 ms label resampled onto the grid
        np.testing.assert_allclose(labels.f0_to_grid(t, f0, n), ref, rtol=1e-5)


def test_bad_duration():
    with pytest.raises(ValueError):
        synthetic.make_song(0, duration=0.5)
