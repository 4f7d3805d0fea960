"""metrics.melody_scores / mean_scores: hand-computed cases that mir_eval must also reproduce."""
import mir_eval
import numpy as np
import pytest

from hkdsme.evaluate.metrics import METRICS, mean_scores, melody_scores
from hkdsme.pipeline.errors import InputError


def _mir_eval_percent(rt, rf, et, ef):
    s = mir_eval.melody.evaluate(np.asarray(rt, float), np.asarray(rf, float), np.asarray(et, float),
                                 np.asarray(ef, float))
    return [100 * s[k] for k in ("Voicing Recall", "Voicing False Alarm", "Raw Pitch Accuracy",
                                 "Raw Chroma Accuracy", "Overall Accuracy")]


def test_same_grid_hand_computed():
    t = np.arange(10) * 0.01                       # starts at 0: mir_eval inserts nothing
    ref = [0, 0, 220, 220, 220, 220, 440, 440, 0, 0]
    est = [0, 100, 220, 226, 440, 0, 440, 300, 0, 0]
    # ref voiced {2..7} (6), unvoiced {0,1,8,9} (4); est voiced {1,2,3,4,6,7}
    # 226 vs 220 Hz = 46.6 cents (< 50, correct); 440 vs 220 = octave (chroma only); 300 vs 440 = 663 cents
    hand = {
        "VR": 100 * 5 / 6,     # est voiced on {2,3,4,6,7}
        "VFA": 100 * 1 / 4,    # frame 1
        "RPA": 100 * 3 / 6,    # frames 2, 3, 6
        "RCA": 100 * 4 / 6,    # + frame 4 (octave)
        "OA": 100 * 6 / 10,    # pitch-correct voiced {2,3,6} + correct unvoiced {0,8,9}
    }
    got = melody_scores(t, ref, t, est)
    assert list(got) == list(METRICS)
    for k in METRICS:
        assert got[k] == pytest.approx(hand[k], abs=1e-9), k
    assert [got[k] for k in METRICS] == pytest.approx(_mir_eval_percent(t, ref, t, est), abs=1e-9)


def test_native_20ms_reference_vs_10ms_estimate_hand_computed():
    # MIR-1K-like reference (frames at 0.02 k, k >= 1) against our 10 ms grid ((i+1)·0.01).
    rt = 0.02 * np.arange(1, 6)
    rf = [220, 0, 330, 330, 0]
    et = 0.01 * np.arange(1, 11)
    near = 330 * 2 ** (49 / 1200)                   # 49 cents sharp: still correct (strict < 50)
    ef = [220, 220, 999, 0, 999, near, 999, 0, 999, 110]
    # mir_eval prepends t=0 copying the first value to both series, then reads the estimate at the reference
    # times 0, .02, .04, .06, .08, .10 → est = [220, 220, 0, near, 0, 110] (the 999s at odd times are ignored)
    # ref = [220, 220, 0, 330, 330, 0]: voiced {0,1,3,4}, unvoiced {2,5}
    hand = {"VR": 75.0, "VFA": 50.0, "RPA": 75.0, "RCA": 75.0, "OA": 100 * 4 / 6}
    got = melody_scores(rt, rf, et, ef)
    for k in METRICS:
        assert got[k] == pytest.approx(hand[k], abs=1e-9), k
    assert [got[k] for k in METRICS] == pytest.approx(_mir_eval_percent(rt, rf, et, ef), abs=1e-9)


def test_fifty_cents_is_not_correct():
    t = np.arange(4) * 0.01
    ref = np.array([0, 200, 200, 200.0])
    est = np.array([0, 200 * 2 ** (50.5 / 1200), 200 * 2 ** (-49.5 / 1200), 200 * 2 ** (1249 / 1200)])
    got = melody_scores(t, ref, t, est)
    assert got["RPA"] == pytest.approx(100 / 3)      # only the -49.5 cent frame
    assert got["RCA"] == pytest.approx(200 / 3)      # + 1249 cents = octave + 49 cents


def test_mean_scores_is_unweighted_mean_over_tracks():
    a = dict(VR=100.0, VFA=0.0, RPA=50.0, RCA=60.0, OA=70.0)
    b = dict(VR=50.0, VFA=20.0, RPA=10.0, RCA=20.0, OA=30.0)
    assert mean_scores([a, b]) == dict(VR=75.0, VFA=10.0, RPA=30.0, RCA=40.0, OA=50.0)
    with pytest.raises(ValueError):
        mean_scores([])


@pytest.mark.parametrize("bad, words", [
    (dict(ref_time=np.zeros((2, 3))), "1-D"),
    (dict(est_freq=np.ones(4)), "3 times but 4 f0"),
    (dict(ref_freq=[100, np.nan, 100]), "non-finite f0"),
    (dict(est_time=[0, np.inf, 0.02]), "non-finite time"),
    (dict(ref_time=[0, 0.02, 0.01]), "times decrease at index 2"),
    (dict(est_time=[-0.01, 0, 0.01]), "negative time"),
    (dict(ref_time=[], ref_freq=[]), "empty"),
])
def test_invalid_input_names_the_problem(bad, words):
    args = dict(ref_time=[0, 0.01, 0.02], ref_freq=[0, 100, 100], est_time=[0, 0.01, 0.02], est_freq=[0, 100, 0])
    args.update(bad)
    which = "reference" if any(k.startswith("ref") for k in bad) else "estimate"
    with pytest.raises(InputError) as ei:
        melody_scores(args["ref_time"], args["ref_freq"], args["est_time"], args["est_freq"], path="song.txt")
    assert words in str(ei.value) and which in str(ei.value) and str(ei.value).startswith("song.txt: ")
