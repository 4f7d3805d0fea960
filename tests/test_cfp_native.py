"""The MSNet vocal network's native front end (44.1 kHz CFP, hop 256): the original code's numbers (a committed
slice), the formulas written out per frame, the frame grid, a tone's row, bad input; the mapping onto the 10 ms
grid; and ``front_end="native"`` end to end."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hkdsme
from hkdsme.evaluate import inference as I
from hkdsme.pipeline import audio, cfp, cfp_native as cn, grid
from hkdsme.pipeline.errors import InputError

ASSETS = Path(__file__).resolve().parent / "assets"
SR = 44100


def synth(n: int, seed: int = 0, f0: float = 220.0, vibrato: float = 0.88) -> np.ndarray:
    """5 harmonics of an f0 Hz tone with ±2 % vibrato at 5 Hz (``vibrato`` = its phase amplitude) + noise, 44.1 kHz."""
    t = np.arange(n) / SR
    phi = 2 * np.pi * f0 * t + vibrato * (1 - np.cos(2 * np.pi * 5 * t))
    x = 0.1 * sum(np.sin(h * phi) / h for h in range(1, 6))
    return (x + 0.01 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# --- the transform -------------------------------------------------------------------------------------------------

def test_matches_original_reference_slice():
    """Frames 0 and 171 (cut by the edges) and 86 of the original cfp.py (window 2049, hop 256, 44.1 kHz) on 1 s
    of the synthetic tone (tests/assets/README.md)."""
    s = np.load(ASSETS / "cfp_native_synth_1s_slice.npz")
    x = synth(SR)
    raw, w = cn.cfp_native_raw(x), cn.cfp_native(x)
    assert raw.dtype == w.dtype == np.float32 and raw.shape == (3, 320, int(s["n_frames"])) == (3, 320, 172)
    np.testing.assert_allclose(raw.max(axis=(1, 2)), s["raw_max"], rtol=1e-6)
    for c in range(3):
        assert np.abs(raw[c][:, s["frames"]] - s["raw"][c]).max() <= 1e-6 * s["raw_max"][c]
    assert np.abs(w[:, :, s["frames"]] - s["cfp"]).max() <= 1e-6
    np.testing.assert_allclose(cn.frame_times(172)[s["frames"]], s["times"], rtol=0, atol=1e-12)


def _plain(x: np.ndarray) -> np.ndarray:
    """The module docstring's formulas frame by frame: full complex FFTs of length N, both cepstral ends zeroed,
    dense filterbanks. Slow (three 22050-point FFTs per frame); for short signals."""
    from scipy.signal import windows

    h, n, lh = windows.blackmanharris(cn.WIN), cn.N_FFT, (cn.WIN - 1) // 2
    spec_m, quef_m = (np.zeros((320, k)) for k in (cn.N_SPEC, cn.N_QUEF))
    for m, (ptr, idx, wt) in zip((spec_m, quef_m), cfp.filterbanks(sr=SR, n_fft=n)):
        for r in range(320):
            m[r, idx[ptr[r]:ptr[r + 1]]] = wt[ptr[r]:ptr[r + 1]]
    out = np.zeros((3, 320, cn.n_frames(len(x))))
    for i in range(out.shape[2]):
        ti = cn.HOP * (i + 1)                                   # 1-based centre sample
        tau = np.arange(-min(lh, ti - 1), min(lh, len(x) - ti))
        taps = h[(lh - 1 + tau) % cn.WIN]                       # h[Lh+τ-1], τ = -Lh wrapping to h[-1]
        frame = np.zeros(n)
        frame[tau % n] = x[ti - 1 + tau] * taps / np.linalg.norm(taps)
        x0 = np.abs(np.fft.fft(frame)) ** 0.24
        c = np.maximum(np.fft.fft(x0).real / np.sqrt(n), 0)
        c[:cn.TC_IDX] = 0
        c[n - cn.TC_IDX:] = 0
        c = c ** 0.6
        s = np.maximum(np.fft.fft(c).real / np.sqrt(n), 0)
        s[:cn.FC_IDX] = 0
        s[n - cn.FC_IDX:] = 0
        out[:, :, i] = spec_m @ x0[:cn.N_SPEC], spec_m @ s[:cn.N_SPEC], quef_m @ c[:cn.N_QUEF]
    return out


def test_fast_equals_plain_formulas():
    """The DCT-I rewrite, the halved C[35] and the folded 1/sqrt(N) factors change no number: 3000 samples,
    11 frames, the first 4 and last 4 cut by the edges."""
    x = synth(3000, seed=3)
    raw, ref = cn.cfp_native_raw(x), _plain(x)
    assert raw.shape == ref.shape == (3, 320, 11)
    for c in range(3):
        assert np.abs(raw[c] - ref[c]).max() <= 1e-6 * ref[c].max()


def test_filterbanks_at_44k():
    spec, quef = cfp.filterbanks(sr=SR, n_fft=cn.N_FFT)
    assert len(spec[0]) == len(quef[0]) == 321                   # 320 rows in CSR
    assert spec[1].max() < cn.N_SPEC == 626 and quef[1].max() < cn.N_QUEF == 1424
    # quefrency row k collects n ≈ 44100/f_k: row 1 (31.4 Hz) spans n = round(44100/f_2) .. round(44100/f_0)
    cf = cfp.center_freqs()
    row1 = quef[1][quef[0][1]:quef[0][2]]
    assert row1.min() >= round(SR / cf[2]) and row1.max() <= round(SR / cf[0])
    assert (cn.TC_IDX, cn.FC_IDX, cn.N_QUEF) == (35, 16, 1424)


@pytest.mark.parametrize("n", [513, 768, 769, 2049, 5000, 44100, 44101])
def test_frame_count_and_times(n):
    raw = cn.cfp_native_raw(synth(n, seed=n))
    t5 = int(np.ceil(n / 256)) - 1
    assert raw.shape == (3, 320, t5) == (3, 320, cn.n_frames(n))
    np.testing.assert_allclose(cn.frame_times(t5), 256 * (np.arange(t5) + 1) / SR, rtol=0, atol=1e-15)
    assert cn.frame_times(t5)[0] == pytest.approx(0.0058049887)


@pytest.mark.parametrize("s", [0, 254, 255, 256, 1278, 1279, 1280, 2302, 2303, 4000])
def test_frame_i_centres_on_sample_256i_plus_255(s):
    """An impulse at 0-based sample s reaches exactly the frames whose taps c−1024 … c+1023 hold it,
    c = 256(i+1) − 1: the centre convention and the 2048 taps of the original."""
    x = np.zeros(6000, np.float32)
    x[s] = 1.0
    hit = np.flatnonzero(cn.cfp_native_raw(x)[0].max(axis=0) > 0)
    c = 256 * (np.arange(cn.n_frames(x.size)) + 1) - 1
    np.testing.assert_array_equal(hit, np.flatnonzero((c - 1024 <= s) & (s <= c + 1023)))


def test_last_sample_is_never_read():
    x = synth(10000)
    y = x.copy()
    y[-1] = 0.5
    np.testing.assert_array_equal(cn.cfp_native_raw(x), cn.cfp_native_raw(y))


def test_block_size_does_not_change_output():
    x = synth(30000, seed=1)
    np.testing.assert_array_equal(cn.cfp_native_raw(x, block=7), cn.cfp_native_raw(x))


def test_440_hz_sine_peaks_at_row_230():
    """Spectrum and GCoS peak at row round(60·log2(440/31)) = round(229.63) = 230 in every interior frame."""
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    raw = cn.cfp_native_raw(x)
    row = round(60 * np.log2(440 / 31))
    assert row == 230
    interior = slice(4, raw.shape[2] - 4)                          # windows fully inside the signal
    assert (raw[0][:, interior].argmax(axis=0) == row).all()
    assert (raw[1][:, interior].argmax(axis=0) == row).all()


def test_harmonic_tone_salience_peaks_at_its_f0():
    """5 harmonics of 220 Hz: GCoS × GC (the CFP salience) peaks within ±2 rows of round(60·log2(220/31)) = 170
    in every interior frame (GC alone has quefrency bins ~9 cents apart at n ≈ 200 and an octave-below peak)."""
    raw = cn.cfp_native_raw(synth(SR, vibrato=0.0))
    assert (np.abs((raw[1] * raw[2])[:, 4:-4].argmax(axis=0) - 170) <= 2).all()


def test_normalised_channels_span_0_to_1():
    w = cn.cfp_native(synth(20000))
    assert w.dtype == np.float32 and w.shape == (3, 320, cn.n_frames(20000))
    np.testing.assert_array_equal(w.min(axis=(1, 2)), 0.0)
    np.testing.assert_array_equal(w.max(axis=(1, 2)), 1.0)


@pytest.mark.parametrize("x, msg", [
    (np.zeros((2, 3000), np.float32), "1-D"),
    (np.zeros(3000, np.int16), "float"),
    (np.zeros(0, np.float32), "empty"),
    (np.full(3000, np.nan, np.float32), "NaN"),
    (np.ones(512, np.float32), "too short"),
])
def test_bad_input(x, msg):
    with pytest.raises(InputError, match=msg):
        cn.cfp_native_raw(x)


def test_only_44k():
    with pytest.raises(ValueError, match="sr=44100"):
        cn.cfp_native_raw(synth(3000), sr=48000)


# --- onto the 10 ms grid -------------------------------------------------------------------------------------------

def test_to_grid_by_hand():
    """10 ms frame i sits at native position u_i = (441(i+1) − 256)/256 = 0.72, 2.45, 4.17, 5.89, 7.61, 9.34."""
    a = np.arange(10, dtype=np.float32) * 2.0                  # native frame j holds 2j
    np.testing.assert_allclose(cn.to_grid(a, 6), 2 * np.array([185, 626, 1067, 1508, 1949, 2304]) / 256)
    np.testing.assert_array_equal(cn.to_grid(a, 6, "nearest"), [2, 4, 8, 12, 16, 18])
    # past the last native frame: the last frame
    np.testing.assert_array_equal(cn.to_grid(a[:5], 4), [185 / 128, 626 / 128, 8, 8])
    with pytest.raises(ValueError, match="linear, nearest"):
        cn.to_grid(a, 6, "cubic")


def test_to_grid_mixes_posteriors():
    """One-hot posteriors on rows 100 / 200 alternating: each 10 ms column is (1 − w) of one and w of the other,
    still a distribution."""
    t5 = 12
    post = np.zeros((321, t5), np.float32)
    post[np.where(np.arange(t5) % 2 == 0, 100, 200), np.arange(t5)] = 1.0
    out = cn.to_grid(post, 6)
    assert out.shape == (321, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-6)
    u = (441 * np.arange(1, 7) - 256) / 256
    w = u - np.floor(u)
    first = np.where(np.floor(u) % 2 == 0, 100, 200)           # row of native frame floor(u)
    np.testing.assert_allclose(out[first, np.arange(6)], 1 - w, atol=1e-6)
    np.testing.assert_allclose(out[300 - first, np.arange(6)], w, atol=1e-6)
    near = cn.to_grid(post, 6, "nearest")
    assert set(np.unique(near)) == {0.0, 1.0}


@pytest.mark.parametrize("n", [44100, 44150, 12345, 1000003, 529])
def test_grid_len_is_the_8k_frame_count(n):
    x8 = audio.resample(np.zeros(n, np.float32), SR, grid.SR)
    assert cn.grid_len(n) == grid.n_frames(x8.size)


# --- front_end="native" end to end ---------------------------------------------------------------------------------

def _song(seconds=2.0):
    """Two notes (220 Hz, 330 Hz) with a gap of silence + noise: a short synthetic song at 44.1 kHz."""
    n = int(seconds * SR)
    x = np.zeros(n, np.float32)
    x[:n // 2 - 4410] = synth(n // 2 - 4410, seed=1)
    x[n // 2:] = synth(n - n // 2, seed=2, f0=330.0)
    return x + (0.003 * np.random.default_rng(5).standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def native():
    return I.Predictor(model="msnet-vocal", front_end="native")


def test_native_end_to_end_on_the_10ms_grid(native):
    x = _song()
    times, f0, conf = hkdsme.extract_melody(x, sr=SR, model="msnet-vocal", front_end="native",
                                            return_confidence=True)
    n = grid.n_frames(int(2.0 * grid.SR))                       # = the 8 kHz front end's frames: 199
    assert n == 199 and times.shape == f0.shape == conf.shape == (n,)
    np.testing.assert_allclose(times, grid.frame_times(n))
    t8, _ = hkdsme.extract_melody(x, sr=SR, model="msnet-vocal")
    np.testing.assert_array_equal(t8, times)
    assert conf.dtype == np.float32 and ((conf >= 0) & (conf <= 1)).all()
    # the wiring: native CFP → network in chunks → posteriors interpolated onto 10 ms → voicing decoder at 0.5
    from hkdsme.model.decode import f0_from_voicing, voicing_and_pitch

    post = cn.to_grid(native.native_posteriors(cn.cfp_native(x)), n)
    _, hz = voicing_and_pitch(post[None], logits=False)
    np.testing.assert_allclose(conf, 1 - post[0], atol=1e-6)
    np.testing.assert_allclose(f0, f0_from_voicing(1 - post[0], hz, 0.5), rtol=1e-9)
    # the network follows the notes: voiced frames within a semitone of 220 / 330 Hz (octave errors aside)
    ref = np.where(times < 1.0, 220.0, 330.0)
    voiced = f0 > 0
    cents = 1200 * np.log2(f0[voiced] / ref[voiced])
    assert voiced.sum() > 100 and np.median(np.abs(cents - 1200 * np.round(cents / 1200))) < 100


def test_native_chunks_do_not_change_short_input(native, monkeypatch):
    """Chunks of NATIVE_CHUNK frames, as the published code: a 2-chunk run equals one chunk except within the
    network's reach (±12 frames) of the cut."""
    f = cn.cfp_native(_song(1.0))
    whole = native.native_posteriors(f)
    monkeypatch.setattr(I, "NATIVE_CHUNK", 100)
    cut = native.native_posteriors(f)
    far = np.r_[0:100 - 16, 100 + 16:f.shape[2]]
    np.testing.assert_allclose(cut[:, far], whole[:, far], atol=1e-5)


def test_native_file_argmax_and_spectrum(native, tmp_path):
    x = _song(1.5)
    path = tmp_path / "song.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    t_arr, f_arr = hkdsme.extract_melody(x, sr=SR, model="msnet-vocal", front_end="native")
    t_file, f_file = hkdsme.predict_from_file(path, model="msnet-vocal", front_end="native")
    np.testing.assert_array_equal(t_file, t_arr)
    np.testing.assert_array_equal(f_file, f_arr)
    times, f0, spec = native.predict_file(path, return_spectrum=True)
    assert spec.shape == (320, times.size) and spec.min() >= 0 and spec.max() <= 1
    am = I.Predictor(model="msnet-vocal", front_end="native", decode="argmax")
    _, f_am = am.predict_audio(x)
    voiced = f_am[f_am > 0]
    np.testing.assert_allclose(voiced, grid.bin_to_hz(np.rint(60 * np.log2(voiced / 31))))   # bin frequencies


def test_front_end_choice(tmp_path):
    import torch

    from hkdsme.model.checkpoint import save_checkpoint
    from hkdsme.model.student import MSNet

    with pytest.raises(ValueError, match="front_end must be one of cfp-8k, native"):
        I.Predictor(model="msnet-vocal", front_end="44k")
    with pytest.raises(ValueError, match="msnet-vocal"):
        I.Predictor(model="hkdsme", front_end="native")
    assert I.Predictor(model="msnet-vocal").front_end == "cfp-8k"        # today's default
    # the checkpoint's extra["front_end"] is the default when none is asked for
    torch.manual_seed(0)
    net = MSNet(n_classes=1, heads=False)
    for fe, expect in (("native", "native"), ("cfp-8k", "cfp-8k")):
        ck = save_checkpoint(tmp_path / f"{fe}.pt", net, kind="student", config={"source": "msnet-vocal"},
                             feature_hash=grid.feature_hash(), extra={"front_end": fe})
        p = I.Predictor(ck)
        assert p.front_end == expect and p.sr == (SR if fe == "native" else grid.SR)
        assert p.spec["front_end"] == expect
        assert I.Predictor(ck, front_end="cfp-8k").front_end == "cfp-8k"     # the argument wins
    bad = save_checkpoint(tmp_path / "bad.pt", net, kind="student", config={"source": "msnet-vocal"},
                          feature_hash=grid.feature_hash(), extra={"front_end": "22k"})
    with pytest.raises(InputError, match="bad.pt.*front_end '22k'"):
        I.Predictor(bad)


def test_native_bad_audio_names_the_file(native, tmp_path):
    with pytest.raises(InputError, match="silent"):
        native.predict_audio(np.zeros(SR, np.float32))
    path = tmp_path / "short.wav"
    sf.write(path, synth(400), SR, subtype="FLOAT")
    with pytest.raises(InputError, match="short.wav.*too short"):
        native.predict_file(path)
