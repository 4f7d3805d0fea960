"""CFP features: reference vectors (when shared/ exists), fast == plain per-frame implementation, shapes,
hand-checkable properties and bad-input errors."""
from pathlib import Path

import numpy as np
import pytest

from hkdsme.pipeline import cfp, grid
from hkdsme.pipeline import _cfp_reference as ref
from hkdsme.pipeline.errors import InputError

REF_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "cfp"
ASSETS = Path(__file__).resolve().parent / "assets"            # a committed slice of the reference (README there)
REF_NAMES = ["synth_3s", "mir1k_abjones_1_01_5s"]


def synth(n: int, seed: int = 0) -> np.ndarray:
    """The reference README's synthetic signal (5 harmonics of a 220 Hz ±2 % vibrato tone + noise), float32."""
    t = np.arange(n) / 8000.0
    phi = 2 * np.pi * 220 * t + 0.88 * (1 - np.cos(2 * np.pi * 5 * t))
    x = 0.1 * sum(np.sin(h * phi) / h for h in range(1, 6))
    return (x + 0.01 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def rel_err(a, b):
    """Max abs difference per channel relative to that channel's max of b."""
    return [float(np.abs(a[c] - b[c]).max() / b[c].max()) for c in range(3)]


@pytest.fixture(scope="module")
def one_second():
    x = synth(8000)
    return x, cfp.cfp_raw(x), ref.cfp_raw_reference(x)


# --- reference vectors from the original cfp.py ------------------------------------------------------------------

@pytest.mark.parametrize("name", REF_NAMES)
def test_matches_original_reference(name):
    if not (REF_DIR / f"{name}_input.npy").exists():
        pytest.skip("shared/reference/cfp not available")
    x = np.load(REF_DIR / f"{name}_input.npy")
    raw_ref = np.load(REF_DIR / f"{name}_raw.npy")
    w_ref = np.load(REF_DIR / f"{name}_cfp.npy")
    raw = cfp.cfp_raw(x)
    assert raw.dtype == np.float32 and raw.shape == raw_ref.shape == (3, 320, grid.n_frames(len(x)))
    assert max(rel_err(raw, raw_ref)) <= 1e-5
    w = cfp.cfp(x)
    assert w.dtype == np.float32 and np.abs(w - w_ref).max() <= 1e-4
    assert np.allclose(grid.frame_times(raw.shape[2]), np.load(REF_DIR / f"{name}_times.npy"))


def test_matches_original_reference_slice():
    """The committed slice of the synthetic reference (edge and interior frames), checked without shared/."""
    s = np.load(ASSETS / "cfp_synth_3s_slice.npz")
    x = synth(24000)                              # = synth_3s_input.npy exactly (float32 values)
    raw, w = cfp.cfp_raw(x), cfp.cfp(x)
    assert raw.shape[2] == int(s["n_frames"]) == 299
    np.testing.assert_allclose(raw.max(axis=(1, 2)), s["raw_max"], rtol=1e-5)
    fr = s["frames"]
    assert max(float(np.abs(raw[c][:, fr] - s["raw"][c]).max() / s["raw_max"][c]) for c in range(3)) <= 1e-5
    assert np.abs(w[:, :, fr] - s["cfp"]).max() <= 1e-4


def test_reference_implementation_matches_original():
    name = REF_NAMES[0]
    if not (REF_DIR / f"{name}_input.npy").exists():
        pytest.skip("shared/reference/cfp not available")
    x = np.load(REF_DIR / f"{name}_input.npy")
    assert max(rel_err(ref.cfp_raw_reference(x), np.load(REF_DIR / f"{name}_raw.npy"))) <= 1e-6


def test_center_freqs_match_reference_file():
    if not (REF_DIR / "cenfreq.npy").exists():
        pytest.skip("shared/reference/cfp not available")
    assert np.allclose(cfp.center_freqs(), np.load(REF_DIR / "cenfreq.npy"), rtol=1e-12)


# --- without shared/ ---------------------------------------------------------------------------------------------

def test_fast_equals_plain_per_frame(one_second):
    _, fast, plain = one_second
    assert fast.shape == plain.shape == (3, 320, 99)
    assert max(rel_err(fast, plain)) <= 1e-5
    w_plain = ref.cfp_reference(synth(8000))
    assert np.abs(cfp.cfp(synth(8000)) - w_plain).max() <= 1e-4


def test_block_size_does_not_change_output(one_second):
    x, fast, _ = one_second
    for block in (1, 7, 1000):
        np.testing.assert_allclose(cfp.cfp_raw(x, block=block), fast, rtol=0, atol=1e-6 * fast.max())


def test_filterbanks_equal_literal_loops():
    spec, quef = cfp.filterbank_matrices()
    assert spec.shape == (320, 626) and quef.shape == (320, 259)
    np.testing.assert_allclose(spec, ref.spectral_matrix_reference(), atol=1e-12)
    np.testing.assert_allclose(quef, ref.quefrency_matrix_reference(), atol=1e-12)
    # the README's counts: 29 empty spectral rows (row 0 included), 92 empty quefrency rows (0 and 167..319)
    assert (spec.sum(1) == 0).sum() == 29 and (quef.sum(1) == 0).sum() == 92
    assert (quef[1:167].sum(1) > 0).all() and (quef[167:].sum(1) == 0).sum() == 91


@pytest.mark.parametrize("n", [161, 240, 241, 1000, 8000, 8079, 8080, 8081])
def test_frame_count_and_edges(n):
    x = synth(n, seed=n)
    raw = cfp.cfp_raw(x)
    assert raw.shape == (3, 320, grid.n_frames(n)) == (3, 320, int(np.ceil(n / 80)) - 1)
    # edge frames (truncated windows, x[-1] never read) agree with the literal implementation
    assert max(rel_err(raw, ref.cfp_raw_reference(x))) <= 1e-5


def test_last_sample_is_never_read():
    x = synth(4000)
    y = x.copy()
    y[-1] = 0.5
    np.testing.assert_array_equal(cfp.cfp_raw(x), cfp.cfp_raw(y))


def test_normalised_properties(one_second):
    x, raw, _ = one_second
    w = cfp.cfp(x)
    assert w.dtype == np.float32 and np.isfinite(w).all()
    assert (raw >= 0).all() and (raw[:, 0] == 0).all() and (w[:, 0] == 0).all()
    for c in range(3):
        assert w[c].min() == 0.0 and w[c].max() == 1.0
    # min is 0, so W = log1p(raw) / log1p(max raw) per channel
    expect = np.log1p(raw.astype(np.float64)) / np.log1p(raw.astype(np.float64).max(axis=(1, 2)))[:, None, None]
    assert np.abs(w - expect).max() < 1e-6


def test_220_hz_tone_peaks_near_row_169():
    # 220 Hz is row 60·log2(220/31) = 169.6
    t = np.arange(16000) / 8000.0
    pure = cfp.cfp_raw((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32))[:, :, 20:-20]
    # spectrum: the unnormalised triangles widen upwards and |X|^0.24 flattens the window's main lobe
    # (about ±40 Hz), so the argmax sits a few rows above 169.6 (172 for the original too)
    assert 168 <= np.median(pure[0].argmax(axis=0)) <= 173
    harmonic = cfp.cfp_raw((0.3 * sum(np.sin(2 * np.pi * 220.0 * h * t) / h for h in range(1, 6)))
                           .astype(np.float32))[:, :, 20:-20]
    # GC of a harmonic tone: quefrency 8000/37 = 216 Hz -> row 168, as in the reference README
    assert 167 <= np.median(harmonic[2].argmax(axis=0)) <= 170


def test_silent_and_constant_input_are_finite():
    for x in (np.zeros(1600, np.float32), np.full(1600, 0.25, np.float32)):
        w = cfp.cfp(x)
        assert w.shape == (3, 320, 19) and np.isfinite(w).all()
    assert (cfp.cfp(np.zeros(1600)) == 0).all()


def test_float64_input_is_cast_like_load_audio():
    x = synth(2000)
    np.testing.assert_array_equal(cfp.cfp_raw(x.astype(np.float64)), cfp.cfp_raw(x))


@pytest.mark.parametrize("x, msg", [
    (np.zeros(0, np.float32), "empty"),
    (np.zeros(160, np.float32), "too short: 160 samples"),
    (np.zeros((2, 8000), np.float32), "1-D"),
    (np.array([0.0, np.nan] * 400), "NaN/inf"),
    (np.array([0.0, np.inf] * 400), "NaN/inf"),
    (np.zeros(800, np.int16), "float"),
])
def test_bad_input(x, msg):
    with pytest.raises(InputError, match=msg) as e:
        cfp.cfp(x)
    assert e.value.path is None


def test_only_8khz():
    with pytest.raises(ValueError, match="sr=8000"):
        cfp.cfp(synth(8000), sr=16000)


def test_window_equals_scipy_blackmanharris_bit_for_bit():
    from scipy.signal import windows

    np.testing.assert_array_equal(cfp._window(), windows.blackmanharris(cfp.WIN, sym=True))
