"""Reliability, second pass: every case of the fault-injection table keeps being checked.

Arrays and sources, signals with real worker processes, two writers of one output, memory on long files, and
one line (no traceback) for every output that cannot be written, a full disk, a config that is not UTF-8, file
names that are not UTF-8 or are long, a format that needs ffmpeg, a plot that does not fit.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import hkdsme
from hkdsme.evaluate import files as F
from hkdsme.evaluate import predict as P
from hkdsme.evaluate.inference import Predictor
from hkdsme.model import checkpoint as ck
from hkdsme.model.student import MSNet
from hkdsme.pipeline import atomic, audio, grid
from hkdsme.pipeline.errors import InputError

from proc_tree import alive as _alive, descendants as _descendants

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "student.pt"
    return ck.save_checkpoint(path, MSNet(heads=False), kind="student", config={}, feature_hash=grid.feature_hash())


def _tone(seconds, sr, f=220.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _one_line(r):
    """A CliRunner result that failed with exactly one ``Error: ...`` line and no traceback."""
    assert r.exit_code != 0, r.output
    assert isinstance(r.exception, SystemExit), f"traceback: {r.exception!r}"
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


# ----------------------------------------------------------------------------------- arrays and sources

def test_integer_pcm_scaled_as_soundfile_and_scipy_define_it(tmp_path):
    i16 = np.array([-32768, -16384, 0, 16384, 32767], np.int16)
    np.testing.assert_array_equal(audio.to_float(i16), [-1.0, -0.5, 0.0, 0.5, np.float32(32767 / 32768)])
    np.testing.assert_array_equal(audio.to_float(np.array([-2**31, 2**30, 0], np.int32)), [-1.0, 0.5, 0.0])
    np.testing.assert_array_equal(audio.to_float(np.array([0, 64, 128, 255], np.uint8)),
                                  [-1.0, -0.5, 0.0, np.float32(127 / 128)])
    # the integers a WAV holds (as scipy.io.wavfile returns them), scaled, are the floats soundfile decodes
    from scipy.io import wavfile

    x = np.round(_tone(0.1, 8000) * 32767).astype(np.int16)
    for data, subtype in ((x, "PCM_16"), (x.astype(np.int32) << 16, "PCM_32"), ((x // 256) * 256, "PCM_U8")):
        p = tmp_path / f"{subtype}.wav"
        sf.write(p, data, 8000, subtype=subtype)
        ints = wavfile.read(p)[1]
        assert ints.dtype == {"PCM_16": np.int16, "PCM_32": np.int32, "PCM_U8": np.uint8}[subtype]
        np.testing.assert_array_equal(audio.to_float(ints), sf.read(p, dtype="float32")[0])


def test_integer_arrays_predict_as_their_floats():
    """What ``scipy.io.wavfile.read`` returns gives the melody of the same samples as floats (embedded model)."""
    x = _tone(2.0, 16000)
    x[: x.size // 2] *= 0.02                              # a quiet first half, so the scale matters
    i16 = np.round(x * 32767).astype(np.int16)
    ref = hkdsme.predict(i16.astype(np.float64) / 32768, 16000)[1]
    unscaled = hkdsme.predict(i16.astype(np.float64), 16000)[1]
    assert not np.array_equal(unscaled, ref)              # the scale changes the answer: the check can fail
    np.testing.assert_array_equal(hkdsme.extract_melody(i16, sr=16000)[1], ref)
    np.testing.assert_array_equal(hkdsme.predict((i16.astype(np.int32) << 16), 16000)[1], ref)


@pytest.mark.parametrize("bad", [np.zeros(8000, bool), np.array([0.1] * 8000, dtype=object),
                                 np.zeros(8000, np.complex64)], ids=["bool", "object", "complex"])
def test_non_numeric_arrays_refused_in_one_line(student, bad):
    with pytest.raises(InputError, match=str(bad.dtype)) as e:
        hkdsme.extract_melody(bad, sr=8000, checkpoint=student)
    assert "\n" not in str(e.value)


class _PathLike:
    def __init__(self, p):
        self.p = p

    def __fspath__(self):
        return self.p


def test_bytes_pathlike_and_file_object_sources(tmp_path, student):
    p = tmp_path / "x.wav"
    sf.write(p, _tone(2.0, 16000), 16000)
    ref = hkdsme.extract_melody(str(p), checkpoint=student)[1]
    np.testing.assert_array_equal(hkdsme.extract_melody(os.fsencode(p), checkpoint=student)[1], ref)
    np.testing.assert_array_equal(hkdsme.extract_melody(_PathLike(str(p)), checkpoint=student)[1], ref)
    np.testing.assert_array_equal(hkdsme.predict_from_file(os.fsencode(p), checkpoint=student)[1], ref)
    with open(p, "rb") as f:
        np.testing.assert_array_equal(hkdsme.extract_melody(f, checkpoint=student)[1], ref)
    with pytest.raises(TypeError, match="predict_from_file"):
        hkdsme.predict(os.fsencode(p), 16000, checkpoint=student)
    with pytest.raises(InputError, match="not found") as e:
        hkdsme.extract_melody(b"/nonexistent/x.wav", checkpoint=student)
    assert e.value.path == Path("/nonexistent/x.wav")


# ------------------------------------------------------------------------------------------------- signals

def _interrupt(cmd, sig, ready, cwd, timeout=120.0):
    """Run ``cmd``, send ``sig`` once ``ready()`` and it has 2+ worker processes; ``(status, pids seen, stderr)``.

    stderr goes to a file, not a pipe: orphaned workers would hold a pipe open and a reader would wait forever.
    """
    log = Path(cwd) / "stderr.txt"
    with open(log, "wb") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=cwd)
    seen, t0 = set(), time.monotonic()
    try:
        while time.monotonic() - t0 < timeout and p.poll() is None:
            seen |= _descendants(p.pid)
            if ready() and len([c for c in seen if _alive(c)]) >= 2:
                break
            time.sleep(0.05)
        assert p.poll() is None, f"finished before the signal: {log.read_text()[-2000:]}"
        p.send_signal(sig)
        status = p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [c for c in seen if _alive(c)]
    for c in left:                      # do not leave them running after a failed check
        os.kill(c, signal.SIGKILL)
    return status, seen, left, log.read_text()


needs_proc = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")


@needs_proc
def test_sigterm_ends_predict_workers_and_keeps_finished_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        sf.write(src / f"s{i}.wav", _tone(8.0, 8000, f=200 + 30 * i, seed=i), 8000)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hkdsme.evaluate.cli", "predict", str(src), "--out", str(out), "--jobs", "2"]
    status, seen, left, err = _interrupt(cmd, signal.SIGTERM, lambda: any(out.glob("*.csv")), tmp_path)
    assert status == 128 + signal.SIGTERM, err[-2000:]
    assert len(seen) >= 2 and not left, "worker or resource tracker left running"
    done = sorted(out.iterdir())
    assert done and all(f.name.endswith(".f0.csv") for f in done), done     # no temporaries
    assert len(done) < 6
    for f in done:                                                         # finished files are whole
        assert len(f.read_text().splitlines()) == 1 + grid.n_frames(8 * 8000)          # header + every frame


def _ignore_sigterm_and_wait():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)


def test_end_workers_kills_a_child_that_ignores_sigterm_even_without_popen_kill():
    # loky's Popen has terminate() but no kill(): the SIGKILL step must not rely on it
    import multiprocessing

    from hkdsme.pipeline import signals

    p = multiprocessing.get_context("fork").Process(target=_ignore_sigterm_and_wait)
    p.start()
    try:
        time.sleep(0.3)                         # let it install SIG_IGN
        p._popen.kill = None                    # as loky's Popen: no usable kill()
        signals.end_workers(timeout=0.5)
        p.join(2.0)
        assert not p.is_alive() and p.exitcode == -signal.SIGKILL
    finally:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)


@needs_proc
def test_sighup_ends_extract_workers_keeps_finished_tracks(tmp_path):
    from hkdsme.pipeline.synthetic import write_dataset

    write_dataset(tmp_path / "data", n=6, seed=1, duration=15.0)
    cache = tmp_path / "cache"
    journal = cache / "manifest.journal"
    cmd = [sys.executable, "-m", "hkdsme.pipeline.cli", "extract", "--dataset", "synthetic", "--root",
           str(tmp_path / "data"), "--out", str(cache), "--jobs", "2", "--no-progress"]
    status, seen, left, err = _interrupt(cmd, signal.SIGHUP, lambda: journal.is_file() and journal.stat().st_size > 0,
                                         tmp_path)
    assert status == 128 + signal.SIGHUP, err[-2000:]
    assert len(seen) >= 2 and not left, "worker or resource tracker left running"
    kept = json.loads((cache / "manifest.json").read_text())["tracks"]
    assert 1 <= len(kept) < 6                                              # what finished is in the manifest
    assert all((cache / e["shard"]).is_file() for e in kept.values())      # ... with its shard: a rerun skips it
    assert not [f for f in cache.rglob("*") if ".tmp-" in f.name]           # no temporaries
    assert not (cache / "manifest.journal").exists()                       # the journal was folded in


# ------------------------------------------------------------------------------------ two writers, one name

class _RacedPredictor:
    """A predictor during whose work another run writes the same output name (after the checks before work)."""

    def __init__(self, real, rival: Path):
        self.real, self.rival = real, rival

    def __getattr__(self, name):
        return getattr(self.real, name)

    def predict_many(self, paths, **kw):
        self.rival.write_text("the other run's melody\n")
        yield from self.real.predict_many(paths, **kw)


def test_second_writer_of_one_name_refuses(tmp_path, student):
    wav = tmp_path / "a" / "song.wav"
    wav.parent.mkdir()
    sf.write(wav, _tone(1.0, 8000), 8000)
    out = tmp_path / "out"
    rival = out / "song.f0.csv"
    out.mkdir()
    pred = _RacedPredictor(Predictor(student), rival)
    written, failed = P.predict_files([wav], out_dir=out, predictor=pred, progress=False)
    assert written == {} and "exists" in failed[wav] and "\n" not in failed[wav]
    assert rival.read_text() == "the other run's melody\n"                # never silently replaced
    assert sorted(p.name for p in out.iterdir()) == ["song.f0.csv"]        # and no temporary left
    written, failed = P.predict_files([wav], out_dir=out, predictor=pred, progress=False, overwrite=True)
    assert written == {wav: rival} and rival.read_text().startswith("time")


def test_exclusive_publish(tmp_path):
    dest = tmp_path / "x.txt"
    atomic.write_text(dest, "first")
    with pytest.raises(FileExistsError):
        with atomic.atomic_path(dest, overwrite=False) as tmp:
            tmp.write_text("second")
    assert dest.read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


# ------------------------------------------------------------------------------------------- memory

def test_decoding_memory_does_not_grow_with_length(tmp_path):
    """A 60 s 44.1 kHz stereo file: numpy memory while decoding is the 8 kHz result plus one block, not the
    whole file at its native rate (21 MB of float32, plus a float64 mono copy)."""
    import tracemalloc

    p = tmp_path / "long.wav"
    with sf.SoundFile(p, "w", 44100, 2, subtype="PCM_16") as f:
        for i in range(6):
            f.write(np.stack([_tone(10.0, 44100, seed=i), _tone(10.0, 44100, f=330, seed=i)], axis=1))
    tracemalloc.start()
    y = audio.load_audio(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert y.shape == (60 * 8000,)
    assert peak < y.nbytes + 3 * audio.BLOCK_FRAMES * 2 * 8 + (1 << 20), peak     # result + a few blocks + 1 MB


def test_extract_streams_without_torch(tmp_path):
    """The streamed CFP of extraction lives in pipeline/ and needs no torch (workers stay light)."""
    code = f"""
import sys
from hkdsme.pipeline import datasets, extract
from hkdsme.pipeline.synthetic import write_dataset
write_dataset({str(tmp_path / 'd')!r}, n=1, seed=3, duration=4.0)
t = datasets.list_tracks("synthetic", {str(tmp_path / 'd')!r})[0]
res = extract.process_track(t, {str(tmp_path / 'c')!r}, "shards/a.h5", "synthetic", stream_frames=100)
assert "failed" not in res, res
print("torch" in sys.modules)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr


# ------------------------------------------------------------------------------ one line, no traceback

@pytest.fixture
def blocked(tmp_path):
    """A path whose folder cannot be made: a file stands where the folder should be (ENOTDIR for anyone,
    root included)."""
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    return f / "sub"


def test_train_run_unwritable_out_is_one_line(tmp_path, blocked, monkeypatch):
    from hkdsme.train import distill
    from hkdsme.train.cli import main

    called = []
    monkeypatch.setattr(distill, "train_student", lambda cfg, resume=False: called.append(cfg) or {})
    line = _one_line(CliRunner().invoke(main, ["run", "--labeled", str(tmp_path), "--no-kd", "--out", str(blocked)]))
    assert str(blocked) in line and called == []                       # before any work


def test_prep_extract_and_cfp_unwritable_out_are_one_line(tmp_path, blocked):
    from hkdsme.pipeline.cli import main
    from hkdsme.pipeline.synthetic import write_dataset

    write_dataset(tmp_path / "d", n=1, seed=2, duration=2.0)
    line = _one_line(CliRunner().invoke(main, ["extract", "--dataset", "synthetic", "--root", str(tmp_path / "d"),
                                               "--out", str(blocked), "--jobs", "1", "--no-progress"]))
    assert str(blocked) in line
    wav = next((tmp_path / "d").glob("*.wav"))
    line = _one_line(CliRunner().invoke(main, ["cfp", str(wav), "-o", str(blocked / "x.npy")]))
    assert str(blocked / "x.npy") in line and "cannot write" in line


def test_train_export_and_plot_unwritable_are_one_line(tmp_path, blocked, student):
    from hkdsme.train.cli import main

    line = _one_line(CliRunner().invoke(main, ["export", str(student), "-o", str(blocked / "x.pt")]))
    assert str(blocked / "x.pt") in line and "cannot write" in line
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "loss": 1.0, "val_OA": 50.0}) + "\n")
    line = _one_line(CliRunner().invoke(main, ["plot", str(run), "-o", str(blocked / "c.png")]))
    assert str(blocked / "c.png") in line


def test_calibrate_write_on_read_only_place_is_one_line_before_scoring(tmp_path, monkeypatch):
    import tempfile

    from hkdsme.evaluate import calibrate
    from hkdsme.evaluate.cli import main
    from train_helpers import write_cache

    torch.manual_seed(0)
    c = ck.save_checkpoint(tmp_path / "ro" / "s.pt", MSNet(heads=False), kind="student", config={},
                           feature_hash=grid.feature_hash())
    cache = write_cache(tmp_path / "val", 1)
    real = tempfile.mkstemp

    def read_only(*a, dir=None, **k):         # the checkpoint's folder is on a read-only mount (root ignores chmod)
        if dir is not None and Path(dir) == c.parent:
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    scored = []
    monkeypatch.setattr(calibrate, "calibrate_checkpoint", lambda *a, **k: scored.append(1) or {})
    line = _one_line(CliRunner().invoke(main, ["calibrate", "--checkpoint", str(c), "--cache", str(cache), "--write"]))
    assert str(c.parent) in line and "Read-only file system" in line and scored == []


def test_full_disk_while_saving_a_checkpoint_names_it_and_keeps_the_previous(tmp_path, monkeypatch, student):
    import builtins

    last = tmp_path / "last.pt"
    last.write_bytes(student.read_bytes())
    before = last.read_bytes()

    class Full:
        """A file on a disk that fills up after 64 KB."""

        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += len(b)
            if self.n > 65536:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    monkeypatch.setattr(ck, "open", lambda *a, **k: Full(builtins.open(*a, **k)), raising=False)
    with pytest.raises(InputError) as e:
        ck.save_checkpoint(last, MSNet(heads=False), kind="student", config={}, feature_hash=grid.feature_hash())
    assert e.value.path == last and "No space left on device" in str(e.value) and "\n" not in str(e.value)
    assert last.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    from hkdsme.train.cli import main

    line = _one_line(CliRunner().invoke(main, ["export", str(student), "-o", str(tmp_path / "small.pt")]))
    assert str(tmp_path / "small.pt") in line and "No space left on device" in line


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_config_not_utf8_is_one_line(tmp_path, encoding):
    from hkdsme.train.cli import main

    f = tmp_path / "c.toml"
    f.write_bytes("# réglages d'été\n[train]\nbatch = 8\n".encode(encoding))
    line = _one_line(CliRunner().invoke(main, ["teacher", "--config", str(f), "--data", str(tmp_path),
                                               "--out", str(tmp_path / "r")]))
    assert str(f) in line and "UTF-8" in line and ("UTF-16" in line) == (encoding == "utf-16")
    f.write_bytes("\ufeff[train]\nbatch = 8\n".encode("utf-8"))      # UTF-8 with a byte-order mark is fine
    from hkdsme.train import config

    assert config.resolve("teacher", f)["batch"] == 8


@pytest.fixture
def latin1_wav(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.path.join(os.fsencode(folder), "été.wav".encode("latin-1"))
    try:
        sf.write(name, _tone(3.0, 16000), 16000)
    except (OSError, RuntimeError):
        pytest.skip("this filesystem refuses file names that are not UTF-8")
    return folder, Path(os.fsdecode(name))


def test_non_utf8_file_name_predicts(latin1_wav, student, tmp_path):
    folder, wav = latin1_wav
    written, failed = P.predict_files([folder], student, out_dir=tmp_path / "out", progress=False, jobs=1)
    assert failed == {} and written[wav].name == os.fsdecode("été".encode("latin-1")) + ".f0.csv"
    assert written[wav].read_text(encoding="utf-8").startswith("time")
    from hkdsme.evaluate.cli import main

    r = CliRunner().invoke(main, ["predict", str(wav), "--checkpoint", str(student), "--out",
                                                      str(tmp_path / "cli"), "--jobs", "1"])
    assert r.exit_code == 0, r.output


def test_non_utf8_file_name_extracts(latin1_wav, tmp_path):
    from hkdsme.pipeline import datasets, extract, shards

    folder, wav = latin1_wav
    tracks = datasets.list_tracks("unlabeled", folder)
    s = extract.extract(tracks, tmp_path / "cache", jobs=1, backend="threading", progress=False)
    assert s["done"] == 1 and s["failed"] == 0, s["failures"]
    cache = shards.open_cache(tmp_path / "cache")
    feats, _, _ = shards.read_track(cache.shard_path(tracks[0].track_id))
    assert feats.shape == (3, grid.N_FREQ, grid.n_frames(3 * grid.SR))


def test_long_file_names_fit_their_temporaries(tmp_path, student):
    dest = tmp_path / ("n" * 250 + ".csv")                       # 254 bytes: fits the 255-byte limit
    atomic.write_text(dest, "x")
    assert dest.read_text() == "x"
    wav = tmp_path / ("é" * 120 + ".wav")                        # 244 bytes; its output 247
    sf.write(wav, _tone(1.0, 8000), 8000)
    written, failed = P.predict_files([wav], student, progress=False, jobs=1)
    assert failed == {} and len(os.fsencode(written[wav].name)) == 247
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dest.name, wav.name, written[wav].name])


def test_ffmpeg_needed_is_said_when_it_is_absent(tmp_path, monkeypatch):
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(InputError, match=r"ffmpeg is needed to read \.m4a") as e:
        audio.load_audio(m4a)
    assert e.value.path == m4a and "\n" not in str(e.value)
    junk = tmp_path / "junk.wav"                                 # a format libsndfile reads: corrupt, not ffmpeg
    junk.write_bytes(b"RIFF\x00\x00this is not audio" * 10)
    with pytest.raises(InputError, match="cannot decode") as e:
        audio.load_audio(junk)
    assert "ffmpeg is needed" not in str(e.value)


def test_plot_that_does_not_fit_leaves_no_half_result(tmp_path, student, monkeypatch):
    import matplotlib.figure

    wav = tmp_path / "song.wav"
    sf.write(wav, _tone(1.0, 8000), 8000)
    real = matplotlib.figure.Figure.savefig

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    written, failed = P.predict_files([wav], student, plot=True, progress=False, jobs=1)
    assert written == {} and "song.f0.png" in failed[wav] and "No space left on device" in failed[wav]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]          # neither file, no temporaries
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", real)
    written, failed = P.predict_files([wav], student, plot=True, progress=False, jobs=1)   # the rerun works
    assert failed == {} and sorted(p.name for p in tmp_path.iterdir()) == ["song.f0.csv", "song.f0.png", "song.wav"]
