from pathlib import Path

import numpy as np
import pytest
import torch

from hkdsme.pipeline import grid, labels
from hkdsme.pipeline.errors import InputError

ASSETS = Path(__file__).resolve().parent / "assets"      # committed slice of the official reference vectors


# ------------------------------------------------------------------------------------------- f0_to_grid

def test_f0_to_grid_20ms_annotation_on_10ms_grid():
    # MIR-1K style: frame k at 0.02·(k+1); grid frame i at 0.01·(i+1)
    times = 0.02 * (np.arange(5) + 1)            # 0.02 .. 0.10
    f0 = np.array([100.0, 200.0, 0.0, 300.0, 300.0])
    g = labels.f0_to_grid(times, f0, 12)
    assert g.dtype == np.float32 and g.shape == (12,)
    expected = [0.0,                 # 0.01: before the first annotation
                100.0,               # 0.02 exact
                np.sqrt(100 * 200),  # 0.03 midway: geometric mean (linear in cents)
                200.0,               # 0.04
                0.0,                 # 0.05 between voiced and unvoiced -> unvoiced
                0.0,                 # 0.06 unvoiced sample
                0.0,                 # 0.07 between unvoiced and voiced -> unvoiced (gap never bridged)
                300.0, 300.0, 300.0,  # 0.08, 0.09, 0.10
                0.0, 0.0]            # beyond the span
    np.testing.assert_allclose(g, expected, rtol=1e-6)


def test_f0_to_grid_interpolates_in_cents():
    times = np.array([0.0, 0.04])
    g = labels.f0_to_grid(times, [200.0, 400.0], 4)   # grid 0.01..0.04: quarter steps of one octave
    np.testing.assert_allclose(g, 200.0 * 2.0 ** np.array([0.25, 0.5, 0.75, 1.0]), rtol=1e-6)


def test_f0_to_grid_negative_is_unvoiced_and_fine_annotation():
    t = np.arange(0, 0.1, 0.001)
    f = np.where(t < 0.05, 220.0, -220.0)            # negative = unvoiced with a pitch guess
    g = labels.f0_to_grid(t, f, 9)
    assert (g[:4] == 220.0).all() and (g[4:] == 0).all()   # 0.05 is unvoiced, 0.01..0.04 voiced


@pytest.mark.parametrize("times,f0,msg", [
    ([0.1, 0.1, 0.2], [1.0, 1.0, 1.0], "increasing"),
    ([0.2, 0.1], [1.0, 1.0], "increasing"),
    ([0.1, 0.2], [1.0], "times but"),
    ([0.1, np.nan], [1.0, 1.0], "NaN"),
    ([0.1, 0.2], [1.0, np.inf], "NaN"),
    ([], [], "empty"),
    ([[0.1, 0.2]], [[1.0, 1.0]], "1-D"),
])
def test_f0_to_grid_rejects_bad_annotations(times, f0, msg):
    with pytest.raises(InputError, match=msg) as e:
        labels.f0_to_grid(times, f0, 10)
    assert e.value.path is None


# ------------------------------------------------------------------------------------------- harmonic map

def test_hand_cases_bins():
    assert grid.hz_to_bin([440.0, 0.0, 2000.0]).tolist() == [230, 0, 320]


def test_harmonic_map_hand_cases():
    bins = np.array([230, 0, 320, 1, 60, 61, 260, 261])
    m = labels.harmonic_map(bins)
    assert m.shape == (4, 321, 8) and m.dtype == np.uint8
    rows = lambda c, t: np.flatnonzero(m[c, :, t]).tolist()   # noqa: E731
    expected = {  # frame: (melody, harmonic, sub)
        0: ([230], [290], [170]),
        1: ([0], [], []),
        2: ([320], [], [260]),
        3: ([1], [61], []),
        4: ([60], [120], []),       # sub needs k - 60 >= 1
        5: ([61], [121], [1]),
        6: ([260], [320], [200]),
        7: ([261], [], [201]),      # harmonic needs k + 60 <= 320
    }
    for t, (mel, harm, sub) in expected.items():
        assert (rows(0, t), rows(1, t), rows(2, t)) == (mel, harm, sub), t
        assert sorted(rows(3, t)) == sorted(set(range(321)) - set(mel + harm + sub))


def test_harmonic_map_invariants_and_classes():
    rng = np.random.default_rng(0)
    bins = rng.integers(0, 321, size=(3, 64))
    bins[:, :5] = 0
    m = labels.harmonic_map(bins)
    assert m.shape == (3, 4, 321, 64)
    assert (m.sum(axis=1) == 1).all()                     # exactly one class per (row, frame)
    counts = m.sum(axis=(2, 3))
    voiced = bins > 0
    assert (counts[:, 0] == 64).all()
    np.testing.assert_array_equal(counts[:, 1], (voiced & (bins <= 260)).sum(axis=1))
    np.testing.assert_array_equal(counts[:, 2], (bins >= 61).sum(axis=1))
    np.testing.assert_array_equal(counts[:, 3], 321 * 64 - counts[:, :3].sum(axis=1))
    c = labels.harmonic_classes(bins)
    assert c.shape == (3, 321, 64) and c.dtype == np.int64
    np.testing.assert_array_equal(c, m.argmax(axis=1))
    assert c[0, 0, 0] == 0 and c[0, 1, 0] == 3             # unvoiced frame: row 0 is the melody


def test_numpy_torch_equal():
    rng = np.random.default_rng(1)
    bins = rng.integers(0, 321, size=(2, 64)).astype(np.int16)
    m_np = labels.harmonic_map(bins)
    m_t = labels.harmonic_map(torch.from_numpy(bins))
    assert m_t.dtype == torch.float32 and m_t.device.type == "cpu"
    np.testing.assert_array_equal(m_t.numpy(), m_np.astype(np.float32))
    c_t = labels.harmonic_classes(torch.from_numpy(bins))
    assert c_t.dtype == torch.int64
    np.testing.assert_array_equal(c_t.numpy(), labels.harmonic_classes(bins))


def test_bad_bins():
    with pytest.raises(ValueError, match="0..320"):
        labels.harmonic_map(np.array([321]))
    with pytest.raises(ValueError, match="0..320"):
        labels.harmonic_map(torch.tensor([-1]))
    with pytest.raises(ValueError, match="integers"):
        labels.harmonic_map(np.array([1.0]))


def test_equals_official_reference():
    """Frames whose official bin is in 0..320 and equals ours match the official map exactly.

    Deliberately different (see labels.py): 20/25/30 Hz (official negative bins wrapped to rows 321+k; ours clip
    to 1) and 31.0 Hz (official "unvoiced" bin 0; ours bin 1). 1260/1300/2000 Hz are clipped to 320 by both.
    """
    f0 = np.load(ASSETS / "labels_f0_hz.npy")
    ref_bins = np.load(ASSETS / "labels_bins.npy")
    ref_map = np.load(ASSETS / "labels_harmonic_map.npz")["map"]
    ours = grid.hz_to_bin(f0)
    same = (ref_bins >= 0) & (ref_bins <= 320) & (ours == ref_bins)
    # exactly the four documented quirk frames differ: (0,2..4) below 31 Hz and (0,5) = 31.0 Hz
    assert np.argwhere(~same).tolist() == [[0, 2], [0, 3], [0, 4], [0, 5]]
    m = labels.harmonic_map(ours)
    for s, t in np.argwhere(same):
        np.testing.assert_array_equal(m[s, :, :, t], ref_map[s, :, :, t])
    # official per-segment class counts, seg1 has no quirk frame
    assert ref_map[1].sum(axis=(1, 2)).tolist() == [64, 56, 56, 20368]
    assert m[1].sum(axis=(1, 2)).tolist() == [64, 56, 56, 20368]
