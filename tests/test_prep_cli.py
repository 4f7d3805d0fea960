"""Batch extraction (resume, bad inputs, hash refusal) and the `hkd-prep` CLI on tiny generated audio.

Tracks are real `datasets.Track`s over the adc2004 / synthetic layout (`<name>.wav` + `<name>REF.txt`); the
real `audio` / `cfp` / `labels` / `datasets` modules are used (no stand-ins: a broken import must fail here).
"""
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from hkdsme.pipeline import cli, datasets, extract as ex, grid, shards, synthetic
from hkdsme.pipeline.audio import load_audio
from hkdsme.pipeline.errors import InputError

SR = grid.SR


class Interrupt(BaseException):
    """Stands for a kill (Ctrl-C / OOM): not an Exception, so the batch does not swallow it."""


def _track(name, wav, ref, dataset="synthetic"):
    return datasets.Track(name, dataset, wav, ref)


@dataclass
class Killed:
    """A track whose worker gets killed while loading it."""

    track_id: str
    dataset: str = "synthetic"
    audio_path: str = "killed.wav"

    def load_audio(self):
        raise Interrupt


def _song(seed, dur=2.0):
    """A sung-ish tone: f0 gliding around 220-330 Hz with an unvoiced gap; annotation on a 10 ms grid."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(dur * SR)) / SR
    f = 220 + 110 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t + seed))
    voiced = (t % 1.0) < 0.8
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR) * voiced + 0.01 * rng.standard_normal(t.size)
    times = np.arange(0.0, dur, 0.01)
    f0 = np.interp(times, t, f) * ((times % 1.0) < 0.8)
    return x.astype(np.float32), times, f0


def _write_track(root, name, seed, dur=2.0, label=True):
    x, times, f0 = _song(seed, dur)
    wav = root / f"{name}.wav"
    sf.write(wav, x, SR, subtype="FLOAT")
    ref = root / f"{name}REF.txt"
    if label:
        np.savetxt(ref, np.c_[times, f0], fmt="%.4f", delimiter="\t")
    return _track(name, wav, ref if label else None)


@pytest.fixture
def good(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    return [_write_track(root, f"song{i}", i, dur=1.5 + 0.5 * i, label=i != 2) for i in range(4)]


def _bad_tracks(root):
    """One track per bad-input kind, each with the file that must be named."""
    out = {}
    corrupt = root / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 50)
    out["corrupt"] = (_track("corrupt", corrupt, None), corrupt)
    empty = root / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    out["empty"] = (_track("empty", empty, None), empty)
    t = _write_track(root, "nolabel", 10)
    t.label_path.unlink()
    out["nolabel"] = (t, t.label_path)
    t = _write_track(root, "short_label", 11, dur=5.0)
    a = np.loadtxt(t.label_path)
    np.savetxt(t.label_path, a[a[:, 0] < 2.0], fmt="%.4f")    # 2.0 s of labels for 5.0 s audio
    out["span"] = (t, t.label_path)
    x, _, _ = _song(12)
    x[1000:1010] = np.nan
    nan = root / "nan.wav"
    sf.write(nan, x, SR, subtype="FLOAT")
    out["nan"] = (_track("nan", nan, None), nan)
    return out


def _arrays(path):
    with h5py.File(path, "r") as h:
        return {k: h[k][()] for k in h} | {"attrs": dict(h.attrs)}


def _same_shards(a, b):
    ma, mb = shards.open_cache(a), shards.open_cache(b)
    assert ma.tracks == mb.tracks
    for tid in ma.tracks:
        x, y = _arrays(ma.shard_path(tid)), _arrays(mb.shard_path(tid))
        assert x.keys() == y.keys()
        for k in x:
            if k == "attrs":
                assert x[k] == y[k]
            else:
                assert np.array_equal(x[k], y[k]), (tid, k)
        assert ma.shard_path(tid).read_bytes() == mb.shard_path(tid).read_bytes()


# ---------------------------------------------------------------- extract()

def test_extract_writes_contract_layout(tmp_path, good):
    out = tmp_path / "cache"
    s = ex.extract(good, out, jobs=1, progress=False)
    assert (s["done"], s["skipped"], s["failed"], s["tracks"]) == (4, 0, 0, 4) and s["ok"]
    c = shards.open_cache(out, expected_hash=grid.feature_hash())
    assert c.dataset == "synthetic" and c.failed == {}
    assert s["segments"] == sum(e["n_segments"] for e in c.tracks.values())
    for tr in good:
        e = c.tracks[tr.track_id]
        n = len(load_audio(tr.audio_path))
        assert e["shard"] == f"shards/{tr.track_id}.h5"
        assert e["n_frames"] == grid.n_frames(n) and e["n_segments"] == -(-e["n_frames"] // 64)
        assert e["duration_s"] == pytest.approx(n / SR, abs=1e-4)
        assert e["labeled"] == (tr.label_path is not None)
        feats, bins, f0 = shards.read_track(c.shard_path(tr.track_id))
        assert feats.shape == (3, 320, e["n_frames"]) and np.isfinite(feats).all()
        if e["labeled"]:
            # voicing follows the annotation: 80 % voiced (± edge frames), bins = hz_to_bin(f0)
            assert np.array_equal(bins, grid.hz_to_bin(f0))
            assert 0.7 < np.count_nonzero(bins) / bins.size < 0.9 and e["n_voiced"] == np.count_nonzero(bins)
            k = grid.hz_to_bin(f0[bins > 0])
            assert grid.bin_to_hz(k).min() > 200 and grid.bin_to_hz(k).max() < 350
        else:
            assert not bins.any() and e["n_voiced"] == 0
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"song{i}.h5" for i in range(4)]


def test_bad_inputs_are_skipped_and_named(tmp_path, good):
    bad = _bad_tracks(tmp_path / "audio")
    lines = []
    s = ex.extract(good + [t for t, _ in bad.values()], tmp_path / "cache", jobs=1, progress=False,
                   echo=lines.append)
    assert (s["done"], s["failed"]) == (4, 5) and s["ok"]          # not strict
    assert not ex.extract([bad["nan"][0]], tmp_path / "cache", jobs=1, progress=False, strict=True,
                          echo=lambda m: None)["ok"]
    assert len(lines) == 5
    for kind, (track, path) in bad.items():
        line = next(ln for ln in lines if ln.startswith(f"skip {path}: "))
        assert "\n" not in line
    by_file = {ln.split(": ", 1)[0][5:]: ln for ln in lines}
    assert "empty" in by_file[str(bad["empty"][1])]
    assert "label span 2.0 s does not match audio 5.0 s" in by_file[str(bad["span"][1])]
    assert "NaN" in by_file[str(bad["nan"][1])]
    c = shards.open_cache(tmp_path / "cache")
    assert sorted(c.tracks) == [t.track_id for t in good]
    assert sorted(c.failed) == sorted(t.track_id for t, _ in bad.values())
    assert sorted(p.stem for p in (tmp_path / "cache/shards").iterdir()) == sorted(c.tracks)


def test_label_span_rule():
    ex.check_label_span("a", np.arange(1, 300) * 0.01, 3.0)          # ends 0.01 s early: fine
    with pytest.raises(InputError, match="a: label span 12.3 s does not match audio 30.0 s"):
        ex.check_label_span("a", np.linspace(0, 12.3, 100), 30.0)
    with pytest.raises(InputError, match="label span 1.6 s"):        # ends right, covers 25 %
        ex.check_label_span("a", np.linspace(1.2, 1.6, 10), 1.6)
    with pytest.raises(InputError, match="no frames"):
        ex.check_label_span("a", np.zeros(0), 1.0)


def test_resume_after_kill_gives_identical_shards(tmp_path, good):
    ref = tmp_path / "ref"
    ex.extract(good, ref, jobs=1, progress=False)

    out = tmp_path / "cache"
    killed = [Killed(t.track_id) if i == 2 else t for i, t in enumerate(good)]
    with pytest.raises(Interrupt):
        ex.extract(killed, out, jobs=1, progress=False)
    assert sorted(shards.open_cache(out).tracks) == ["song0", "song1"]      # what finished is kept
    # debris of the kill: a stale temp file, and a half-written shard not in the manifest
    (out / "shards" / "song2.h5.tmp-99999").write_bytes(b"partial")
    (out / "shards" / "song3.h5").write_bytes(b"partial")
    (out / "manifest.json.tmp-99999").write_text("{")
    lines = []
    s = ex.extract(good, out, jobs=1, progress=False, echo=lines.append)
    assert (s["done"], s["skipped"], s["failed"]) == (2, 2, 0) and lines == []
    assert not list(out.rglob("*.tmp-*"))
    _same_shards(ref, out)

    # a listed shard that no longer opens is redone; force redoes everything
    (out / "shards" / "song1.h5").write_bytes(b"\0" * 100)
    s = ex.extract(good, out, jobs=1, progress=False)
    assert (s["done"], s["skipped"]) == (1, 3)
    assert ex.extract(good, out, jobs=1, progress=False, force=True)["done"] == 4
    _same_shards(ref, out)


def test_parallel_backends_match_serial(tmp_path, good):
    ex.extract(good, tmp_path / "serial", jobs=1, progress=False)
    ex.extract(good, tmp_path / "threads", jobs=2, backend="threading", progress=True)
    _same_shards(tmp_path / "serial", tmp_path / "threads")
    ex.extract(good, tmp_path / "loky", jobs=2, backend="loky", progress=False)
    _same_shards(tmp_path / "serial", tmp_path / "loky")


def test_hash_mismatch_refused_unless_force(tmp_path, good):
    out = tmp_path / "cache"
    ex.extract(good[:2], out, jobs=1, progress=False)
    m = shards.load_manifest(out)
    m["feature_hash"] = "0123456789abcdef"
    shards.write_manifest(out, m)
    (out / "shards" / "stale.h5").write_bytes(b"old")
    with pytest.raises(InputError, match="feature hash 0123456789abcdef.*--force"):
        ex.extract(good, out, jobs=1, progress=False)
    assert shards.load_manifest(out)["feature_hash"] == "0123456789abcdef"   # untouched
    s = ex.extract(good, out, jobs=1, progress=False, force=True)
    assert s["done"] == 4 and shards.open_cache(out).feature_hash == grid.feature_hash()
    assert not (out / "shards" / "stale.h5").exists()
    with pytest.raises(InputError, match="holds dataset 'synthetic'"):
        ex.extract(good, out, jobs=1, progress=False, dataset="mir1k")


def test_duplicate_ids_refused(tmp_path, good):
    with pytest.raises(ValueError, match="duplicate track ids"):
        ex.extract(good + good[:1], tmp_path / "c", jobs=1, progress=False)


# ---------------------------------------------------------------- CLI

def test_cli_extract_strict_and_info(tmp_path, good):
    root = tmp_path / "audio"
    good[2].audio_path.with_name("song2REF.txt").unlink(missing_ok=True)
    (root / "corrupt.wav").write_bytes(b"junk" * 100)
    out = tmp_path / "cache"
    args = ["extract", "--dataset", "synthetic", "--root", str(root), "--out", str(out), "--jobs", "1",
            "--no-progress"]
    r = CliRunner().invoke(cli.main, args + ["--limit", "5"])
    assert r.exit_code == 0, r.output
    skips = [ln for ln in r.output.splitlines() if ln.startswith("skip ")]
    # corrupt audio and song2 (label file missing) are skipped, each named on one line
    assert len(skips) == 2
    assert any(ln.startswith(f"skip {root / 'corrupt.wav'}: ") for ln in skips)
    assert any(ln.startswith(f"skip {root / 'song2REF.txt'}: ") for ln in skips)
    assert "3 done, 0 skipped (already there), 2 failed" in r.output

    r = CliRunner().invoke(cli.main, args + ["--strict"])
    assert r.exit_code == 1 and "0 done, 3 skipped (already there), 2 failed" in r.output
    (root / "corrupt.wav").unlink()
    x, times, f0 = _song(5, 1.0)          # song2 gets its labels: only it is redone
    sf.write(root / "song2.wav", x, SR, subtype="FLOAT")
    np.savetxt(root / "song2REF.txt", np.c_[times, f0], fmt="%.4f")
    r = CliRunner().invoke(cli.main, args + ["--strict"])
    assert r.exit_code == 0 and "1 done, 3 skipped" in r.output, r.output

    r = CliRunner().invoke(cli.main, ["info", str(out)])
    assert r.exit_code == 0, r.output
    c = shards.open_cache(out)
    e = c.tracks
    dur = sum(v["duration_s"] for v in e.values())
    voiced = sum(v["n_voiced"] for v in e.values()) / sum(v["n_frames"] for v in e.values())
    assert "dataset       synthetic" in r.output
    assert f"feature hash  {grid.feature_hash()}" in r.output
    assert "tracks        4 (4 labeled, 0 unlabeled)" in r.output
    assert "failed        1" in r.output       # corrupt.wav stays listed until re-extracted
    s = int(round(dur))
    assert f"duration      0:00:{s:02d}" in r.output
    assert f"segments      {sum(v['n_segments'] for v in e.values())}" in r.output
    assert f"voiced        {voiced:.1%} of labeled frames" in r.output
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert f"size on disk  {size / 2**20:.1f} MiB" in r.output and size > 2**20


def test_cli_info_and_extract_errors(tmp_path, good):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(cli.main, ["info", str(tmp_path / "empty")])
    assert r.exit_code != 0 and "empty folder" in r.output
    out = tmp_path / "cache"
    args = ["extract", "--dataset", "synthetic", "--root", str(tmp_path / "audio"), "--out", str(out),
            "--jobs", "1", "--no-progress"]
    assert CliRunner().invoke(cli.main, args).exit_code == 0
    m = shards.load_manifest(out)
    m["feature_hash"] = "ffffffffffffffff"
    shards.write_manifest(out, m)
    r = CliRunner().invoke(cli.main, args)
    assert r.exit_code == 1 and "use --force" in r.output
    r = CliRunner().invoke(cli.main, args + ["--force"])
    assert r.exit_code == 0 and "3 done, 0 skipped (already there), 1 failed" in r.output


def test_cli_synthetic_dataset_default_out(tmp_path, monkeypatch):
    synthetic.write_dataset(tmp_path / "synth", n=3, seed=1, duration=3.0)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli.main, ["extract", "--dataset", "synthetic", "--root", "synth", "--limit", "2",
                                      "--jobs", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    c = shards.open_cache(tmp_path / "data_cache" / "synthetic")
    assert sorted(c.tracks) == ["synth_000", "synth_001"] and c.failed == {}
    for tid, path in c:
        _, bins, f0 = shards.read_track(path)
        # the REF file lies on our 10 ms grid, so the stored bins are exactly hz_to_bin of its f0 column
        ref = np.loadtxt(tmp_path / "synth" / f"{tid}REF.txt")
        assert len(ref) == bins.size and np.array_equal(bins, grid.hz_to_bin(ref[:, 1]))


def test_cli_cfp_writes_features(tmp_path, good):
    out = tmp_path / "x" / "song1.npy"
    r = CliRunner().invoke(cli.main, ["cfp", str(good[1].audio_path), "-o", str(out)])
    assert r.exit_code == 0, r.output
    a = np.load(out)
    n = len(load_audio(good[1].audio_path))
    assert a.dtype == np.float32 and a.shape == (3, 320, grid.n_frames(n)) and np.isfinite(a).all()
    assert [p.name for p in out.parent.iterdir()] == ["song1.npy"]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope")
    r = CliRunner().invoke(cli.main, ["cfp", str(bad), "-o", str(tmp_path / "b.npy")])
    assert r.exit_code == 1 and str(bad) in r.output and not (tmp_path / "b.npy").exists()


def test_dask_backend_without_dask_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dask(name, *a, **k):
        if name.startswith("dask"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    root = tmp_path / "songs"
    from hkdsme.pipeline import synthetic

    synthetic.write_dataset(root, n=1, duration=1.0)
    r = CliRunner().invoke(cli.main, ["extract", "--dataset", "synthetic", "--root", str(root), "--out",
                                  str(tmp_path / "c"), "--backend", "dask", "--no-progress"])
    assert r.exit_code != 0 and "dask[distributed]" in r.output
