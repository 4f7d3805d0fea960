"""Decoding network output to bins, Hz and whole tracks."""
from pathlib import Path

import numpy as np
import pytest
import torch

from hkdsme.model.decode import bins_from_output, bins_to_hz, decode_track
from hkdsme.pipeline import grid

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "hkdsme"
ASSETS = Path(__file__).resolve().parent / "assets"      # committed slice of REF (tests/assets/README.md)


def _ref(name):
    if not (REF / name).is_file():
        pytest.skip("reference vectors not available")
    return np.load(REF / name)


def test_bins_from_output_hand_case():
    p = np.zeros((1, 4, 321, 3), np.float32)
    p[0, 0, 7, 0] = 1.0                 # frame 0 → bin 7
    p[0, 0, 0, 1] = 0.9                 # frame 1 → unvoiced row
    p[0, 0, [5, 9], 2] = 0.5            # frame 2: tie → first maximum
    p[0, 1, 300, :] = 5.0               # other channels never matter
    assert bins_from_output(p).tolist() == [[7, 0, 5]]
    t = bins_from_output(torch.from_numpy(p))
    assert t.dtype == torch.int64 and t.tolist() == [[7, 0, 5]]
    assert bins_from_output(p[0]).tolist() == [7, 0, 5]            # unbatched (C, 321, T)
    with pytest.raises(ValueError):
        bins_from_output(np.zeros((1, 4, 320, 3)))


def test_logits_and_probs_give_same_bins():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 321, 64) * 3
    assert torch.equal(bins_from_output(logits), bins_from_output(torch.softmax(logits, dim=2)))


def test_bins_to_hz_hand_values():
    hz = bins_to_hz(np.array([0, 1, 60, 120, 320, -3]))
    np.testing.assert_allclose(hz, [0.0, 31 * 2 ** (1 / 60), 62.0, 124.0, 31 * 2 ** (320 / 60), 0.0])
    th = bins_to_hz(torch.tensor([0, 60, 273]))
    assert th.dtype == torch.float64
    np.testing.assert_allclose(th.numpy(), [0.0, 62.0, 31 * 2 ** (273 / 60)])
    assert int(bins_to_hz(np.array([273]))[0]) == 726           # the official int value (README)


def test_matches_official_argmax():
    probs = _ref("student_output.npy")
    ref_bins = np.load(ASSETS / "decode_student_argmax_bins.npy")
    bins = bins_from_output(probs)
    assert bins.dtype == np.int64 and np.array_equal(bins, ref_bins)
    assert np.array_equal(bins_from_output(torch.from_numpy(probs)).numpy(), ref_bins)


def test_matches_official_pred2res():
    bins = np.load(ASSETS / "decode_student_argmax_bins.npy")
    pred2res = np.load(ASSETS / "decode_pred2res_student.npy")
    hz = bins_to_hz(bins)
    voiced = bins > 0
    assert voiced.sum() > 100 and (~voiced).sum() >= 1
    # official pred2res = our float Hz truncated to int; 0 where unvoiced
    assert np.array_equal(pred2res[voiced], np.floor(hz[voiced]).astype(np.int64))
    assert (pred2res[~voiced] == 0).all()
    assert np.all(pred2res[~voiced] == 0) and np.all(hz[~voiced] == 0)


def test_decode_track_concatenates_and_cuts():
    seg = np.zeros((2, 64), np.int64)
    seg[0, :] = 60
    seg[1, :10] = 120
    seg[1, 10:] = 200                   # tail padding beyond n_frames must be dropped
    times, f0 = decode_track(seg, 70)
    assert times.shape == f0.shape == (70,)
    np.testing.assert_allclose(times, grid.frame_times(70))
    assert times[0] == pytest.approx(0.01) and times[-1] == pytest.approx(0.70)
    np.testing.assert_allclose(f0[:64], 62.0)
    np.testing.assert_allclose(f0[64:70], 124.0)
    t2, f2 = decode_track(torch.from_numpy(seg), 128)
    assert f2.shape == (128,) and f2[-1] == pytest.approx(31 * 2 ** (200 / 60))


@pytest.mark.parametrize("n", [64, 129, 0])
def test_decode_track_rejects_inconsistent_length(n):
    with pytest.raises(ValueError):
        decode_track(np.zeros((2, 64), np.int64), n)
    with pytest.raises(ValueError):
        decode_track(np.zeros(128, np.int64), 100)
