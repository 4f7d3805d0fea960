"""The embedded default model (hkdsme/weights/default.pt) loads and finds the melody of a synthetic song."""
import mir_eval
import numpy as np

import hkdsme
from hkdsme.evaluate.predict import Predictor, default_checkpoint
from hkdsme.pipeline import grid, synthetic


def test_default_model_loads_as_a_small_student():
    pred = Predictor()                                    # no checkpoint: the embedded one
    assert pred.checkpoint == default_checkpoint()
    assert pred.meta["kind"] == "student" and pred.meta["feature_hash"] == grid.feature_hash()
    assert default_checkpoint().stat().st_size < 5e6


def test_default_model_finds_the_melody_of_a_synthetic_song():
    audio, times, f0 = synthetic.make_song(seed=123, duration=8.0)
    t, est = hkdsme.extract_melody(audio, sr=grid.SR)
    assert np.allclose(t, grid.frame_times(grid.n_frames(audio.size)))
    scores = mir_eval.melody.evaluate(times, f0, t, est)
    assert scores["Raw Pitch Accuracy"] >= 0.70, scores
