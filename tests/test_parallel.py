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


def test_parallel_parent_loads_no_torch_and_writes_the_same_files(files, tmp_path):
    # the parent of a many-file predict only hands out files and writes results: no torch, no network there
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hkdsme.evaluate.predict import predict_files\n"
        f"w, f = predict_files([{str(files['songs'][0])!r}, {str(files['songs'][2])!r}], {str(files['ckpt'])!r},\n"
        f"                     out_dir={str(tmp_path / 'par')!r}, jobs=2, precision='fp32', progress=False)\n"
        "assert len(w) == 2 and not f, (w, f)\n"
        "print('torch' in sys.modules, 'numba' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]
    one = tmp_path / "one"
    I.predict_from_files_to_files([files["songs"][0], files["songs"][2]],
                                  [one / "song0.f0.csv", one / "song2.f0.csv"], checkpoint=files["ckpt"],
                                  precision="fp32", jobs=1)
    for name in ("song0.f0.csv", "song2.f0.csv"):
        assert (tmp_path / "par" / name).read_bytes() == (one / name).read_bytes()


def test_worker_side_checkpoint_error_is_raised_in_the_parent(files, tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"\x00 not a checkpoint")
    songs = [files["songs"][0], files["songs"][1]]
    outs = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for jobs in (1, 2):           # the same one-line error with and without worker processes
        with pytest.raises(I.InputError, match="not a readable checkpoint") as e:
            I.predict_from_files_to_files(songs, outs, checkpoint=bad, jobs=jobs)
        assert e.value.path == bad
    assert not any(o.exists() for o in outs)
    r = CliRunner().invoke(main, ["predict", *map(str, songs), "--checkpoint", str(bad), "--jobs", "2",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 1 and "garbage.pt: not a readable checkpoint" in r.output


def test_input_error_survives_pickling():
    import pickle

    e = pickle.loads(pickle.dumps(I.InputError("/x/song.wav", "audio is silent")))
    assert isinstance(e, I.InputError) and str(e) == "/x/song.wav: audio is silent" and e.reason == "audio is silent"
    assert str(pickle.loads(pickle.dumps(I.InputError(None, "no path")))) == "no path"


def test_files_are_handed_out_longest_first(tmp_path):
    from hkdsme.evaluate.parallel import _longest_first

    # durations 1 s, 3 s, 2 s; the 1 s file is the largest on disk (float64 samples, 4x the bytes per second)
    for name, sec, sub in (("a.wav", 1.0, "DOUBLE"), ("b.wav", 3.0, "PCM_16"), ("c.wav", 2.0, "PCM_16")):
        sf.write(tmp_path / name, np.zeros(int(sec * grid.SR)), grid.SR, subtype=sub)
    paths = [tmp_path / n for n in ("a.wav", "b.wav", "c.wav")]
    assert _longest_first(paths) == [1, 2, 0]                               # by duration, not by size
    junk = tmp_path / "d.wav"
    junk.write_bytes(b"x" * 10)
    sizes = [p.stat().st_size for p in paths + [junk]]
    assert _longest_first(paths + [junk]) == sorted(range(4), key=lambda i: -sizes[i])   # a header unread: sizes


def test_a_rewritten_checkpoint_gets_fresh_workers(files, tmp_path):
    # the worker pool is kept between calls; the same path with new weights must not be served by old workers
    ck = tmp_path / "c.pt"
    songs = [files["songs"][0], files["songs"][2]]
    got = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        save_checkpoint(ck, MSNet(), kind="student", config={}, feature_hash=grid.feature_hash())
        outs = [tmp_path / f"{seed}-{p.stem}.csv" for p in songs]
        I.predict_from_files_to_files(songs, outs, checkpoint=ck, jobs=2, precision="fp32")
        one = I.Predictor(checkpoint=ck, precision="fp32").predict_file(songs[0])[1]
        np.testing.assert_allclose(read_melody(outs[0])[1], one, rtol=0, atol=1e-6)   # csv keeps 6 decimals
        got.append(one)
    assert not np.array_equal(got[0], got[1])          # the two networks do differ on this song
