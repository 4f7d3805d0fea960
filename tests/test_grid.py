import numpy as np

from hkdsme.pipeline import grid


def test_hz_to_bin_hand_cases():
    # 440 Hz: 60*log2(440/31) = 229.60 -> 230
    assert grid.hz_to_bin([440.0])[0] == 230
    assert grid.hz_to_bin([0.0, -5.0, np.nan])[:].tolist() == [0, 0, 0]
    # clipping: below 31 Hz -> bin 1 (voiced), above 1250 Hz -> 320
    assert grid.hz_to_bin([20.0, 31.0, 2000.0]).tolist() == [1, 1, 320]


def test_bin_to_hz_roundtrip():
    k = np.arange(1, 321)
    assert np.array_equal(grid.hz_to_bin(grid.bin_to_hz(k)), k)
    assert grid.bin_to_hz([0])[0] == 0.0
    assert np.isclose(grid.bin_to_hz([60])[0], 62.0)


def test_frames():
    assert grid.n_frames(24000) == 299 and grid.n_frames(40000) == 499
    assert np.allclose(grid.frame_times(3), [0.01, 0.02, 0.03])


def test_feature_hash_changes_with_params():
    p = dict(grid.FEATURE_PARAMS, hop=81)
    assert grid.feature_hash() != grid.feature_hash(p)
    assert grid.feature_hash() == grid.feature_hash(dict(grid.FEATURE_PARAMS))
