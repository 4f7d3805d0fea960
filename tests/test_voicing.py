"""The voicing decoder (model/decode.py) on hand-made probability maps, calibration, and its use in predict."""
import numpy as np
import pytest
import torch

from hkdsme.model import decode as D
from hkdsme.pipeline import grid


def _probs(columns):
    """(1, 1, 321, T) probabilities from a list of {row: mass} dicts (rest spread evenly over the other pitch rows)."""
    p = np.zeros((1, 1, grid.N_BINS, len(columns)))
    for t, col in enumerate(columns):
        others = [r for r in range(1, grid.N_BINS) if r not in col]
        p[0, 0, others, t] = (1.0 - sum(col.values())) / len(others)
        for r, m in col.items():
            p[0, 0, r, t] = m
    return p


def test_mass_decides_voicing_where_argmax_says_unvoiced():
    # row 0 holds 0.35, the pitch mass is spread over rows 100..102 (0.15, 0.3, 0.15): argmax picks row 0
    p = _probs([{0: 0.35, 100: 0.15, 101: 0.3, 102: 0.15}])
    assert D.bins_from_output(p).item() == 0
    v, hz = D.voicing_and_pitch(p, logits=False)
    assert v[0, 0] == pytest.approx(0.65, abs=1e-6)
    f0 = D.f0_from_voicing(v, hz, 0.5)
    # symmetric neighbours: the weighted mean row is exactly 101
    assert f0[0, 0] == pytest.approx(grid.FMIN * 2 ** (101 / 60), rel=1e-6)


def test_threshold_and_unvoiced_row():
    p = _probs([{0: 0.3, 50: 0.6}, {0: 0.9, 50: 0.05}])
    v, hz = D.voicing_and_pitch(p, logits=False)
    assert D.f0_from_voicing(v, hz, 0.5)[0].tolist()[1] == 0.0            # p(row 0) = 0.9 → unvoiced
    assert D.f0_from_voicing(v, hz, 0.5)[0, 0] > 0
    assert D.f0_from_voicing(v, hz, 0.75)[0, 0] == 0.0                    # 0.7 voiced mass < θ = 0.75
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        D.f0_from_voicing(v, hz, 1.0)
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        D.f0_from_voicing(v, hz, -0.1)
    assert (D.f0_from_voicing(v, hz, 0.0) == hz).all()                    # θ = 0: every frame voiced, its pitch


def test_sub_bin_refinement_weighted_mean():
    # masses 0.4 at row 200, 0.2 at 201 (radius 2 window 198..202): mean row = (200·0.4 + 201·0.2)/0.6 + spread
    p = np.zeros((1, 1, grid.N_BINS, 1))
    p[0, 0, 200, 0] = 0.4
    p[0, 0, 201, 0] = 0.2
    p[0, 0, 0, 0] = 0.4
    _, hz = D.voicing_and_pitch(p, logits=False)
    row = (200 * 0.4 + 201 * 0.2) / 0.6
    assert hz[0, 0] == pytest.approx(grid.FMIN * 2 ** (row / 60), rel=1e-6)
    # mass outside the ±2 window does not move it
    p[0, 0, 210, 0] = 0.0001
    assert D.voicing_and_pitch(p, logits=False)[1][0, 0] == pytest.approx(hz[0, 0], rel=1e-6)


def test_refinement_at_the_edges_counts_rows_once():
    p = np.zeros((1, 1, grid.N_BINS, 2))
    p[0, 0, 1, 0], p[0, 0, 2, 0] = 0.5, 0.5           # lowest pitch rows
    p[0, 0, 320, 1] = 1.0                             # top row alone
    _, hz = D.voicing_and_pitch(p, logits=False)
    assert hz[0, 0] == pytest.approx(grid.FMIN * 2 ** (1.5 / 60), rel=1e-6)
    assert hz[0, 1] == pytest.approx(grid.FMIN * 2 ** (320 / 60), rel=1e-6)


def test_logits_and_torch_agree_with_numpy_probs():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 4, grid.N_BINS, 8)).astype(np.float32)
    v1, h1 = D.voicing_and_pitch(torch.from_numpy(logits))
    p = torch.softmax(torch.from_numpy(logits), dim=2).numpy()
    v2, h2 = D.voicing_and_pitch(p, logits=False)
    np.testing.assert_allclose(v1.numpy(), v2, atol=1e-6)
    np.testing.assert_allclose(h1.numpy(), h2, rtol=1e-6)
    assert v1.shape == (2, 8)


def test_overall_accuracy_and_calibration():
    ref = np.array([0, 0, 200, 200, 200, 0.0])
    hz = np.array([100, 100, 201, 200, 150, 100.0])      # frame 4 is 5 semitones off
    v = np.array([0.2, 0.6, 0.7, 0.4, 0.9, 0.45])
    oa = D.overall_accuracy(ref, v, hz, [0.3, 0.5, 0.65])
    # θ=0.3: est voiced = 1,2,3,4,5 → correct: frame 2, 3 (within 50c) + frame 0 (both unvoiced) = 3/6
    # θ=0.5: est voiced = 1,2,4 → correct: 0, 2, 3? no (frame 3 unvoiced est, ref voiced), 5 → 0,2,5 = 3/6
    # θ=0.65: est voiced = 2,4 → correct: 0,1,2,5 = 4/6
    np.testing.assert_allclose(oa, [3 / 6, 3 / 6, 4 / 6])
    theta, th, mean = D.calibrate_threshold([(ref, v, hz)], thresholds=[0.3, 0.5, 0.65])
    assert theta == 0.65 and mean.max() == pytest.approx(4 / 6)


def test_overall_accuracy_matches_mir_eval():
    from hkdsme.evaluate.metrics import melody_scores

    rng = np.random.default_rng(1)
    n = 500
    ref = np.where(rng.random(n) < 0.6, 220 * 2 ** rng.uniform(-1, 1, n), 0.0)
    hz = np.where(rng.random(n) < 0.5, ref * 2 ** rng.normal(0, 0.05, n), 300.0)
    hz[ref == 0] = 300.0
    v = rng.random(n)
    times = grid.frame_times(n)
    for theta in (0.3, 0.5, 0.8):
        est = D.f0_from_voicing(v, hz, theta)
        ours = 100 * D.overall_accuracy(ref, v, hz, [theta])[0]
        # mir_eval resamples onto its own grid from t = 0 (one extra unvoiced frame here): within 1/n
        assert ours == pytest.approx(melody_scores(times, ref, times, est)["OA"], abs=100 / n)


def test_predictor_uses_stored_threshold_and_override(tmp_path):
    from hkdsme.evaluate import inference as I
    from hkdsme.model.checkpoint import save_checkpoint
    from hkdsme.model.student import MSNet

    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "s.pt", MSNet(), kind="student", config={}, feature_hash=grid.feature_hash(),
                         extra={"voicing_threshold": 0.3})
    assert I.Predictor(ck).voicing_threshold == 0.3
    assert I.Predictor(ck, voicing_threshold=0.7).voicing_threshold == 0.7
    assert I.Predictor(ck, decode="argmax").voicing_threshold is None
    with pytest.raises(ValueError, match="decode must be"):
        I.Predictor(ck, decode="median")
    # threshold changes only voicing, never the pitch of frames voiced under both
    from hkdsme.pipeline import synthetic

    x, _, _ = synthetic.make_song(seed=3, duration=3.0)
    lo = I.Predictor(ck, voicing_threshold=0.05, precision="fp32").predict_audio(x)[1]
    hi = I.Predictor(ck, voicing_threshold=0.95, precision="fp32").predict_audio(x)[1]
    both = (lo > 0) & (hi > 0)
    np.testing.assert_array_equal(lo[both], hi[both])
    assert (lo > 0).sum() >= (hi > 0).sum()


def test_hkd_eval_calibrate_writes_theta_and_keeps_the_weights(tmp_path):
    from click.testing import CliRunner

    from hkdsme.evaluate.cli import main
    from hkdsme.model.checkpoint import load_checkpoint, save_checkpoint
    from hkdsme.model.student import MSNet
    from train_helpers import write_cache

    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "s.pt", MSNet(heads=False), kind="student", config={},
                         feature_hash=grid.feature_hash())
    before = {k: v.clone() for k, v in load_checkpoint(ck)[0].state_dict().items()}
    cache = write_cache(tmp_path / "val", 2)
    r = CliRunner().invoke(main, ["calibrate", "--checkpoint", str(ck), "--cache", str(cache), "--write",
                                  "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    net, meta = load_checkpoint(ck)
    theta = meta["extra"]["voicing_threshold"]
    assert f"θ = {theta:g}" in r.output and theta in D.THRESHOLDS
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    for row in ("argmax", "voicing@0.5", f"voicing@{theta:g}"):
        assert f"| {cache} | {row} |" in r.output
