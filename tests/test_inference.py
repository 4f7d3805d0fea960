"""The inference module: the predict → predict_from_file → predict_from_files_to_files ladder, one
extension list / bins_to_hz / audio validator, and `hkd-eval predict|report` output errors as one line."""
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import hkdsme
from hkdsme.evaluate import inference as I
from hkdsme.evaluate import predict as P
from hkdsme.evaluate.cli import main
from hkdsme.evaluate.formats import read_melody
from hkdsme.model import decode
from hkdsme.model.checkpoint import save_checkpoint
from hkdsme.model.student import MSNet
from hkdsme.pipeline import cfp, datasets, grid
from hkdsme.pipeline.errors import InputError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    return save_checkpoint(path, MSNet(), kind="student", config={}, feature_hash=grid.feature_hash())


def _tone(seconds=1.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture()
def songs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name, sec in (("a", 1.0), ("b", 0.8)):
        sf.write(d / f"{name}.wav", _tone(sec), 16000)
    return d


# ------------------------------------------------------------------------------------------------ the ladder

def test_ladder_rungs_agree_and_are_exported(ckpt, songs, tmp_path):
    x = _tone(1.0)
    ref = I.Predictor(ckpt).predict_file(songs / "a.wav")
    t0, f0 = hkdsme.predict(x, sr=16000, checkpoint=ckpt)
    t1, f1 = hkdsme.predict_from_file(songs / "a.wav", checkpoint=ckpt)
    t2, f2 = hkdsme.extract_melody(songs / "a.wav", checkpoint=ckpt)
    for t, f in ((t1, f1), (t2, f2)):
        np.testing.assert_array_equal(t, ref[0])
        np.testing.assert_array_equal(f, ref[1])
    assert t0.shape == f0.shape == (grid.n_frames(8000),)
    outs = [tmp_path / "o" / "a.f0.csv", tmp_path / "o" / "b.f0.txt"]
    written, failed = hkdsme.predict_from_files_to_files([songs / "a.wav", songs / "b.wav"], outs, checkpoint=ckpt)
    assert failed == {} and list(written.values()) == outs
    t3, f3 = read_melody(outs[0])
    np.testing.assert_allclose(f3, ref[1], atol=1e-6)
    assert outs[1].read_text().count("\t") == grid.n_frames(int(0.8 * 8000))    # .txt → mirex
    with pytest.raises(TypeError, match="predict_from_file"):
        hkdsme.predict(songs / "a.wav", sr=None)
    assert not hasattr(I, "expand_inputs")                                # batch file I/O stays in predict.py
    assert not hasattr(P, "Predictor")                                    # and the network stays in inference.py


def test_files_to_files_records_a_failed_write_and_continues(ckpt, songs, tmp_path, monkeypatch):
    from hkdsme.evaluate import formats

    real = formats.write_melody

    def writer(path, *a, **k):
        if Path(path).parent.name == "ro":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(formats, "write_melody", writer)
    outs = [tmp_path / "ro" / "a.f0.csv", tmp_path / "ok" / "b.f0.csv"]
    written, failed = I.predict_from_files_to_files([songs / "a.wav", songs / "b.wav"], outs, checkpoint=ckpt)
    assert list(written) == [songs / "b.wav"] and outs[1].is_file()
    assert failed == {songs / "a.wav": f"cannot write {outs[0]}: Permission denied"}


# ------------------------------------------------------------------------------------- one of each helper

def test_one_extension_list_one_bins_to_hz_one_validator(tmp_path):
    assert P.AUDIO_EXTENSIONS is datasets.AUDIO_EXTENSIONS
    sf.write(tmp_path / "x.aiff", _tone(0.2), 16000, format="AIFF")           # predict found it, prep did not
    assert [t.track_id for t in datasets.list_tracks("unlabeled", tmp_path)] == ["x"]
    assert P.expand_inputs([tmp_path])[0] == [tmp_path / "x.aiff"]

    assert decode.bins_to_hz is grid.bin_to_hz
    th = grid.bin_to_hz(torch.tensor([0, 60, -2]))
    assert th.dtype == torch.float64 and th.tolist() == [0.0, 62.0, 0.0]
    np.testing.assert_array_equal(grid.bin_to_hz(np.array([-3, 0, 120])), [0.0, 0.0, 124.0])

    bad = np.array([0.1, np.nan] * 400, np.float32)
    msgs = set()
    for fn in (lambda: I.check_audio(bad, "s.wav"), lambda: cfp.validate_audio(bad, path="s.wav"),
               lambda: cfp.cfp(bad)):
        with pytest.raises(InputError) as e:
            fn()
        msgs.add(e.value.reason)
    assert msgs == {"audio contains NaN/inf samples"}
    with pytest.raises(InputError, match="s.wav: audio is silent"):
        cfp.validate_audio(np.zeros(800, np.float32), path="s.wav", reject_silent=True)


# ------------------------------------------------------------------------------- hkd-eval output errors

def _run(args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit), r.output
    return r


def test_predict_never_overwrites_silently(ckpt, songs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.f0.csv").write_text("old\n")
    r = _run(["predict", songs, "--checkpoint", ckpt, "--out", out])
    assert r.exit_code == 1
    assert f"FAILED {songs / 'a.wav'}: {out / 'a.f0.csv'} exists: not overwritten (pass --overwrite" in r.output
    assert "1 of 2 input(s) failed" in r.output
    assert (out / "a.f0.csv").read_text() == "old\n" and (out / "b.f0.csv").is_file()
    r = _run(["predict", songs, "--checkpoint", ckpt, "--out", out, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert read_melody(out / "a.f0.csv")[0].size == grid.n_frames(8000)


def test_out_is_an_existing_file_one_line(ckpt, songs, tmp_path):
    f = tmp_path / "taken.txt"
    f.write_text("x")
    for args in (["predict", songs / "a.wav", "--checkpoint", ckpt, "--out", f],
                 ["report", "--checkpoint", ckpt, "--dataset", "unlabeled", "--root", songs, "--out", f]):
        r = _run(args)
        assert r.exit_code == 1
        assert r.output.strip().splitlines() == [f"Error: {f}: --out must be a folder, but this is an existing file"]
    assert f.read_text() == "x"


def _read_only(folder: Path) -> bool:
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return not os.access(folder, os.W_OK)


@pytest.fixture()
def no_write(monkeypatch):
    """Make the given folders look read-only to os.access (root ignores chmod, so test the logic this way too)."""
    denied = set()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if (Path(p) in denied and mode & os.W_OK)
                        else real(p, mode, *a, **k))
    return denied


@pytest.mark.parametrize("how", ["chmod", "patched"])
def test_read_only_out_one_line(ckpt, songs, tmp_path, how, no_write):
    ro = tmp_path / "ro"
    ro.mkdir()
    if how == "chmod" and not _read_only(ro):
        ro.chmod(0o755)
        pytest.skip("chmod does not stop this user (root) from writing")
    no_write.add(ro)
    try:
        for args in (["predict", songs / "a.wav", "--checkpoint", ckpt, "--out", ro],
                     ["report", "--checkpoint", ckpt, "--dataset", "unlabeled", "--root", songs, "--out", ro]):
            r = _run(args)
            assert r.exit_code == 1
            assert r.output.strip().splitlines() == [f"Error: {ro}: --out folder is not writable (permission denied)"]
    finally:
        ro.chmod(0o755)


def test_report_write_error_mid_run_is_one_line(ckpt, songs, tmp_path, monkeypatch):
    from hkdsme.evaluate import report

    def denied(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(report, "write_text", denied)
    r = _run(["report", "--checkpoint", ckpt, "--dataset", "unlabeled", "--root", songs, "--out", tmp_path / "r",
              "--no-plots"])
    assert r.exit_code == 1
    assert f"Error: {tmp_path / 'r' / 'report.json'}: cannot write: Permission denied" in r.output.splitlines()


@pytest.mark.parametrize("how", ["chmod", "patched"])
def test_read_only_audio_folder_fails_that_file_only(ckpt, songs, tmp_path, how, no_write, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    sf.write(other / "c.wav", _tone(0.8), 16000)
    if how == "chmod":
        if not _read_only(songs):
            songs.chmod(0o755)
            pytest.skip("chmod does not stop this user (root) from writing")
    else:   # the writer itself refuses, as the OS would (the up-front check is bypassed)
        from hkdsme.evaluate import formats

        real = formats.write_melody
        monkeypatch.setattr(formats, "write_melody", lambda p, *a, **k: (_ for _ in ()).throw(
            PermissionError(13, "Permission denied", str(p))) if Path(p).parent == songs else real(p, *a, **k))
    try:
        r = _run(["predict", songs, other, "--checkpoint", ckpt])
    finally:
        songs.chmod(0o755)
    assert r.exit_code == 1
    assert (other / "c.f0.csv").is_file() and not (songs / "a.f0.csv").exists()
    fails = [ln for ln in r.output.splitlines() if ln.startswith("FAILED")]
    assert len(fails) == 2 and all("Permission denied" in ln or "permission denied" in ln for ln in fails)
    assert "2 of 3 input(s) failed" in r.output


# ------------------------------------------------------------------------------------------ docs/method.md

def test_method_citations_resolve_to_the_repo_doc():
    """Docstrings cite `docs/method.md §X`; that file is in the repo and has a heading for every cited section."""
    import re

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "method.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#+ (\d+(?:\.\d+)*)[ .]", doc, flags=re.M))
    cited, bare = set(), []
    for py in sorted(p for d in ("pipeline", "model", "train", "evaluate", "hkdsme") for p in (root / d).rglob("*.py")):
        text = py.read_text(encoding="utf-8")
        bare += [py.name for m in re.finditer(r"(?<![/\w])method\.md", text)]
        for m in re.finditer(r"docs/method\.md (§[\d.,\s§–-]+)", text):
            cited |= {c.split(".")[0] if c.count(".") > 1 else c for c in re.findall(r"\d+(?:\.\d+)?", m.group(1))}
    assert not bare, f"citations without docs/: {bare}"
    assert cited and cited <= headings, cited - headings
