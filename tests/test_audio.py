import numpy as np
import pytest
import soundfile as sf

from hkdsme.pipeline import audio
from hkdsme.pipeline.errors import InputError


def _sine(f, sr, dur, amp=0.5):
    t = np.arange(int(sr * dur)) / sr
    return amp * np.sin(2 * np.pi * f * t)


def test_native_rate_is_exact_and_mono_is_mean(tmp_path):
    left, right = _sine(440, 8000, 0.5), _sine(1000, 8000, 0.5, amp=0.25)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    y = audio.load_audio(p)
    assert y.dtype == np.float32 and y.shape == (4000,)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-7)
    x, sr = audio.load_multichannel(p)
    assert sr == 8000 and x.shape == (4000, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 1], right, atol=1e-7)


def test_channel_weights(tmp_path):
    left, right = _sine(440, 8000, 0.25), _sine(700, 8000, 0.25)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    np.testing.assert_allclose(audio.load_audio(p, channel_weights=[1, 0]), left, atol=1e-7)
    np.testing.assert_allclose(audio.load_audio(p, channel_weights=[0.5, 2.0]), 0.5 * left + 2 * right, atol=1e-6)
    with pytest.raises(InputError, match="channel_weights"):
        audio.load_audio(p, channel_weights=[1.0, 1.0, 1.0])


def test_resample_16k_to_8k(tmp_path):
    p = tmp_path / "m.flac"
    sf.write(p, _sine(440, 16000, 1.0), 16000, subtype="PCM_16")
    y = audio.load_audio(p)
    assert y.shape == (8000,)
    # away from the edges the HQ resampler reproduces the 8 kHz sine up to 16-bit quantisation
    mid = slice(400, 7600)
    np.testing.assert_allclose(y[mid], _sine(440, 8000, 1.0)[mid], atol=2e-3)


def test_audioread_fallback_matches_soundfile(tmp_path, monkeypatch):
    p = tmp_path / "a.wav"
    sf.write(p, _sine(300, 16000, 0.3), 16000, subtype="PCM_16")
    direct = audio.load_audio(p)

    def broken(*a, **k):
        raise RuntimeError("pretend libsndfile cannot decode this")

    monkeypatch.setattr(sf, "SoundFile", broken)
    via_audioread = audio.load_audio(p)        # audioread's WAV reader: 16-bit samples / 32768, as soundfile
    np.testing.assert_array_equal(via_audioread, direct)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found") as e:
        audio.load_audio(tmp_path / "missing.wav")
    assert "missing.wav" in str(e.value)

    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00this is not audio" * 10)
    with pytest.raises(InputError, match="cannot decode") as e:
        audio.load_audio(junk)
    assert e.value.path == junk

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1)), 8000)
    with pytest.raises(InputError, match="empty"):
        audio.load_audio(empty)

    nan = tmp_path / "nan.wav"
    x = _sine(440, 8000, 0.1)
    x[10] = np.nan
    sf.write(nan, x, 8000, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN"):
        audio.load_audio(nan)
