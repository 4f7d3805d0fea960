"""File-level parallel prediction (evaluate/parallel.py): same output as one process, errors per file, order kept."""
import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from hkdsme.evaluate import inference as I
from hkdsme.evaluate.cli import main
from hkdsme.evaluate.formats import read_melody
from hkdsme.model import runtime
from hkdsme.model.checkpoint import save_checkpoint
from hkdsme.model.student import MSNet
from hkdsme.pipeline import grid


def _song(seconds, f=220.0, seed=0):
    t = np.arange(int(seconds * grid.SR)) / grid.SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("songs")
    torch.manual_seed(0)
    ckpt = save_checkpoint(d / "s.pt", MSNet(), kind="student", config={}, feature_hash=grid.feature_hash())
    paths = []
    for i, (sec, f) in enumerate([(2.0, 220.0), (0.9, 330.0), (3.1, 180.0)]):
        p = d / f"song{i}.wav"
        sf.write(p, _song(sec, f, seed=i), grid.SR)
        paths.append(p)
    bad = d / "broken.wav"
    bad.write_bytes(b"not audio at all")
    return {"ckpt": ckpt, "songs": paths, "bad": bad, "dir": d}


def test_two_workers_give_the_single_process_output(files, tmp_path):
    inputs = [files["songs"][0], files["bad"], files["songs"][1], files["songs"][2]]
    res = {}
    for jobs in (1, 2):
        outs = [tmp_path / f"{jobs}-{p.stem}.csv" for p in inputs]
        written, failed = I.predict_from_files_to_files(inputs, outs, checkpoint=files["ckpt"], jobs=jobs,
                                                        precision="fp32")
        assert list(written) == [inputs[0], inputs[2], inputs[3]]          # input order, the bad file skipped
        assert list(failed) == [files["bad"]]
        res[jobs] = [read_melody(o) for o in outs if o.exists()]
    assert len(res[1]) == len(res[2]) == 3
    for (t1, f1), (t2, f2) in zip(res[1], res[2]):
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(f1, f2)


def test_predict_many_with_jobs_yields_errors_in_place(files):
    pred = I.Predictor(checkpoint=files["ckpt"], precision="fp32")
    got = list(pred.predict_many([files["bad"], files["songs"][1]], jobs=2))
    assert [p for p, _ in got] == [files["bad"], files["songs"][1]]
    assert isinstance(got[0][1], I.InputError) and str(files["bad"]) in str(got[0][1])
    t, f0 = got[1][1]
    t1, f1 = pred.predict_file(files["songs"][1])
    np.testing.assert_array_equal(f0, f1)


def test_auto_jobs_rule(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    assert runtime.inference_jobs("cpu", 1) == 1
    assert runtime.inference_jobs("cpu", 13) == 2
    assert runtime.inference_jobs("cuda", 13) == 1
    monkeypatch.setattr(runtime, "usable_cores", lambda: 16)
    assert runtime.inference_jobs("cpu", 13) == runtime.MAX_AUTO_JOBS
    assert runtime.inference_jobs("cpu", 3) == 3


def test_cli_jobs_option(files, tmp_path):
    r = CliRunner().invoke(main, ["predict", str(files["songs"][1]), "--checkpoint", str(files["ckpt"]),
                                  "--jobs", "0", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--jobs" in r.output
    r = CliRunner().invoke(main, ["predict", str(files["songs"][0]), str(files["songs"][1]), "--checkpoint",
                                  str(files["ckpt"]), "--jobs", "2", "--out", str(tmp_path), "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "song0.f0.csv").is_file() and (tmp_path / "song1.f0.csv").is_file()
