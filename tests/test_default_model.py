"""The embedded named models (hkdsme/weights/models.json) load, run and find the melody."""
import json

import mir_eval
import numpy as np
import pytest
from click.testing import CliRunner

import hkdsme
from hkdsme.evaluate import models as M
from hkdsme.evaluate.cli import main
from hkdsme.evaluate.inference import Predictor
from hkdsme.evaluate.models import default_checkpoint
from hkdsme.pipeline import grid, synthetic


def test_default_model_loads_as_a_small_student():
    pred = Predictor()                                    # no checkpoint: the embedded default
    assert pred.checkpoint == default_checkpoint() == M.model_checkpoint(M.default_model_name())
    assert pred.meta["kind"] == "student" and pred.meta["feature_hash"] == grid.feature_hash()
    assert M.default_model_name() in M.STUDENTS          # the default is a fast student, never the teacher
    total = sum(M.model_checkpoint(n).stat().st_size for n in M.STUDENTS)
    assert total < 7e6                                    # the three named students together: package data budget


@pytest.mark.parametrize("name", M.MODELS)
def test_each_named_model_loads_runs_and_finds_the_melody(name):
    audio, times, f0 = synthetic.make_song(seed=123, duration=8.0)
    pred = Predictor(model=name)
    assert pred.checkpoint.name == json.loads((pred.checkpoint.parent / "models.json").read_text())["models"][name]
    assert 0 < pred.voicing_threshold < 1                 # calibrated θ stored with the model
    t, est = hkdsme.extract_melody(audio, sr=grid.SR, model=name)
    assert np.allclose(t, grid.frame_times(grid.n_frames(audio.size)))
    scores = mir_eval.melody.evaluate(times, f0, t, est)
    assert scores["Raw Pitch Accuracy"] >= 0.70, scores


def test_model_errors_name_the_valid_choices(tmp_path):
    with pytest.raises(ValueError, match="choose one of hkdsme, hkdsme-mir1k, supervised, ftanet"):
        Predictor(model="best")
    with pytest.raises(ValueError, match="not both"):
        Predictor(checkpoint=default_checkpoint(), model="hkdsme")
    r = CliRunner().invoke(main, ["predict", str(tmp_path / "x.wav"), "--model", "best"])
    assert r.exit_code != 0 and "choose one of hkdsme, hkdsme-mir1k, supervised, ftanet" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_ftanet_is_the_teacher_in_half_the_bytes():
    import torch

    path = M.model_checkpoint("ftanet")
    payload = torch.load(path, weights_only=True, mmap=True)
    assert payload["kind"] == "teacher" and payload["n_classes"] == 4
    assert payload["extra"]["export_dtype"] == "float16" and "train_state" not in payload["extra"]
    assert path.stat().st_size < 7.5e6                    # 3,389,580 parameters × 2 bytes + BatchNorm statistics
    assert {t.dtype for t in payload["state_dict"].values() if t.is_floating_point()} == {torch.float16}


def test_msnet_vocal_ships_with_its_mit_licence():
    import torch

    path = M.model_checkpoint("msnet-vocal")
    payload = torch.load(path, weights_only=True, mmap=True)
    assert payload["n_classes"] == 1 and payload["extra"]["export_dtype"] == "float16"
    assert "MIT License" in payload["extra"]["license"]
    licence = (path.parent / "LICENSE-msnet-vocal.txt").read_text(encoding="utf-8")
    assert "Copyright (c) 2019 Bill Hsieh" in licence and "MIT License" in licence
    # the default learnt from MSNet vocal's outputs on real music: its weights carry the same notice
    taught = torch.load(M.model_checkpoint("hkdsme"), weights_only=True, mmap=True)
    assert "msnet-vocal" in taught["config"]["pool_teacher"]
    assert taught["extra"]["license"] == payload["extra"]["license"]
