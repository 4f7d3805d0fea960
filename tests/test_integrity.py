"""Data integrity of caches (issue 16): checksums, non-finite data, the extract lock and journal, exit codes,
leftover temp files, and bounded open files. Every corruption must be one ``InputError`` naming the file."""
import json
import os
import subprocess
import sys
import textwrap
import types
import warnings

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hkdsme.pipeline import cli, datasets, extract as ex, grid, shards, synthetic
from hkdsme.pipeline.errors import InputError
from hkdsme.train import teacher_cache
from hkdsme.train.dataset import ShardDataset

from train_helpers import write_cache


class Interrupt(BaseException):
    """Stands for a kill: not an Exception, so the batch does not swallow it."""


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    synthetic.write_dataset(root, n=3, seed=4, duration=1.5)
    return root


def _tracks(root):
    return datasets.list_tracks("synthetic", root)


def _extract(root, out, **kw):
    return ex.extract(_tracks(root), out, jobs=1, progress=False, echo=lambda s: None, **kw)


def _flip_features(path, nbytes=4096):
    """Overwrite ``nbytes`` in the middle of segment 0's feature chunk with 0xFF (float16 NaN)."""
    with h5py.File(path, "r") as h:
        off = h["features"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:
        f.seek(off + 40_000)
        f.write(b"\xff" * nbytes)


# ---------------------------------------------------------------- 1. checksums

def test_flipped_shard_is_detected_everywhere_and_redone(songs, tmp_path):
    out = tmp_path / "cache"
    _extract(songs, out)
    c = shards.open_cache(out)
    for tid, path in c:
        assert c.tracks[tid].get("checksum", "").startswith("sha256:")
        assert c.tracks[tid]["checksum"] == shards.file_checksum(path)
    tid = sorted(c.tracks)[1]
    bad = c.shard_path(tid)
    good_bytes = bad.read_bytes()
    _flip_features(bad)

    with pytest.raises(InputError, match="checksum mismatch") as e:
        shards.read_track(bad)                                   # as hkd-eval report --cache reads it
    assert e.value.path == bad and str(bad) in str(e.value) and "\n" not in str(e.value)
    ds = ShardDataset([out])
    with pytest.raises(InputError, match="checksum mismatch") as e:
        for t in range(len(ds.paths)):
            ds.__getitems__(ds.track_segments(t))
    assert e.value.path == bad

    r = CliRunner().invoke(cli.main, ["info", str(out), "--verify"])
    assert r.exit_code == 1, r.output
    assert "verified      2 of 3 shards ok, 1 bad" in r.output
    assert f"  bad {bad}: checksum mismatch" in r.output

    s = _extract(songs, out)                                     # the bad shard is redone, the rest kept
    assert (s["done"], s["skipped"], s["failed"]) == (1, 2, 0)
    assert bad.read_bytes() == good_bytes
    assert CliRunner().invoke(cli.main, ["info", str(out), "--verify"]).exit_code == 0


def test_info_verify_reports_unreadable_shards(songs, tmp_path):
    out = tmp_path / "cache"
    _extract(songs, out)
    c = shards.open_cache(out)
    p = c.shard_path(sorted(c.tracks)[0])
    p.write_bytes(p.read_bytes()[:5000])                         # truncated
    r = CliRunner().invoke(cli.main, ["info", str(out), "--verify"])
    assert r.exit_code == 1 and "1 bad" in r.output and f"  bad {p}: " in r.output, r.output
    assert "failed        0" in r.output                          # extraction failures: a separate row


def test_verification_happens_once_per_process_and_file_version(tmp_path, monkeypatch):
    p = tmp_path / "shards" / "a.h5"
    info = shards.write_shard(p, np.random.default_rng(0).random((3, grid.N_FREQ, 100), np.float32),
                              track_id="a", dataset="d")
    calls = []
    real = shards.file_checksum
    monkeypatch.setattr(shards, "file_checksum", lambda q: calls.append(q) or real(q))
    assert shards.verify_shard(p, info["checksum"]) and shards.verify_shard(p, info["checksum"])
    assert len(calls) == 1
    shards.write_shard(p, np.zeros((3, grid.N_FREQ, 100), np.float32), track_id="a", dataset="d")
    with pytest.raises(InputError, match="checksum mismatch"):     # a new file version is checked again
        shards.verify_shard(p, info["checksum"])
    assert shards.verify_shard(p, None) is False                   # no recorded checksum: nothing checked


def test_old_cache_without_checksums_opens_with_one_note(tmp_path):
    root = write_cache(tmp_path / "old", n_tracks=2)
    with pytest.warns(UserWarning, match="no checksum"):
        ds = ShardDataset([root])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                             # the note is given once per cache
        ShardDataset([root])
    assert ds[0]["x"].shape == (3, grid.N_FREQ, grid.SEG_LEN)


# ---------------------------------------------------------------- 2. non-finite data, teacher cache

def test_nan_features_in_a_batch_name_the_shard(tmp_path):
    root = write_cache(tmp_path / "c", n_tracks=2, frames=(150, 100))  # pre-checksum cache: only NaN check
    p = root / "shards" / "trk01.h5"
    with h5py.File(p, "a") as h:
        f = h["features"][1]
        f[1, 17, 5] = np.nan
        h["features"][1] = f
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                            # the "no checksums" note
        ds = ShardDataset([root])
    ds.__getitems__([0, 1, 2])                                       # track 0 is fine
    with pytest.raises(InputError, match="segment 1: features contain NaN/inf") as e:
        ds.__getitems__([0, 4, 3])
    assert e.value.path == p


class _Teacher(torch.nn.Module):
    """Stand-in teacher: logits (B, 4, 321, 64) from the input; ``nan_at`` poisons one batch row."""

    def __init__(self, nan_at=None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.nan_at = nan_at

    def forward(self, x):
        lg = (x.mean(dim=(1, 2), keepdim=True) * self.w).expand(-1, 4, 321, -1).clone()
        if self.nan_at is not None and self.nan_at < len(x):
            lg[self.nan_at] = float("nan")
        return types.SimpleNamespace(logits=lg)


def _teacher_sets(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"labeled": ShardDataset([write_cache(tmp_path / "lab", n_tracks=2, frames=(150, 100))])}


def test_corrupt_teacher_cache_is_detected(tmp_path):
    sets = _teacher_sets(tmp_path)
    key = {"feature_hash": sets["labeled"].feature_hash, "teacher_hash": "t", "version": 1}
    path = tmp_path / "run" / teacher_cache.CACHE_NAME
    teacher_cache.build_teacher_cache(path, _Teacher(), sets, key, device="cpu", batch=2, progress=False)
    with h5py.File(path) as h:
        off = h["labeled"].id.get_chunk_info(3).byte_offset
    assert teacher_cache.cache_matches(path, key)
    with open(path, "r+b") as f:                                   # 4 KiB inside segment 3's logits
        f.seek(off + 10_000)
        f.write(os.urandom(4096))
    with pytest.warns(UserWarning, match="checksum mismatch in labeled"):
        assert not teacher_cache.cache_matches(path, key)                 # → the trainer rebuilds it
    teacher_cache.build_teacher_cache(path, _Teacher(), sets, key, device="cpu", batch=2, progress=False)
    with h5py.File(path) as h:
        assert h.attrs["checksum_labeled"] == teacher_cache.cache_checksums(h)["labeled"]
    assert teacher_cache.cache_matches(path, key)


def test_non_finite_teacher_logits_are_refused_naming_the_shard(tmp_path):
    sets = _teacher_sets(tmp_path)
    path = tmp_path / "run" / teacher_cache.CACHE_NAME
    (tmp_path / "run").mkdir()
    dead = tmp_path / "run" / f".{teacher_cache.CACHE_NAME}.tmp-999999999-abc"   # a killed build's leftover
    dead.write_bytes(b"x" * 100)
    with pytest.raises(InputError, match="segment 1: the teacher gives non-finite logits") as e:
        teacher_cache.build_teacher_cache(path, _Teacher(nan_at=1), sets, {"v": 1}, device="cpu", batch=2,
                                          progress=False)
    ds = sets["labeled"]
    assert e.value.path == ds.paths[0]                              # item 1 = track 0 (3 segments), segment 1
    assert not path.exists() and not dead.exists()
    assert not list(path.parent.glob("*.tmp-*"))



class _Counting(_Teacher):
    """_Teacher that counts forward passes and raises KeyboardInterrupt (a kill) on pass ``stop_at``."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.calls, self.stop_at = 0, stop_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().forward(x)


def test_killed_teacher_cache_build_continues_where_it_stopped(tmp_path):
    from hkdsme.train.teacher_cache import partial_path
    sets = _teacher_sets(tmp_path)                                # 5 segments: batches of 2 → 3 passes
    key = {"feature_hash": sets["labeled"].feature_hash, "teacher_hash": "t", "version": 1}
    ref = teacher_cache.build_teacher_cache(tmp_path / "ref.h5", _Teacher(), sets, key, device="cpu", batch=2,
                                            progress=False)
    path = tmp_path / "run" / teacher_cache.CACHE_NAME
    with pytest.raises(KeyboardInterrupt):                        # killed in pass 3, passes 1-2 flushed
        teacher_cache.build_teacher_cache(path, _Counting(stop_at=3), sets, key, device="cpu", batch=2,
                                          progress=False, flush_s=0)
    assert not path.exists() and partial_path(path).is_file()
    logs = []
    t = _Counting()
    teacher_cache.build_teacher_cache(path, t, sets, key, device="cpu", batch=2, progress=False, log=logs.append)
    assert t.calls == 1                                           # only the last batch (row 4) recomputed
    assert logs == [f"teacher logits: continuing {partial_path(path)} (labeled from row 4 of 5)"]
    assert not partial_path(path).exists() and teacher_cache.cache_matches(path, key)
    with h5py.File(ref) as a, h5py.File(path) as b:
        assert a.attrs["checksum_labeled"] == b.attrs["checksum_labeled"]
        np.testing.assert_array_equal(a["labeled"][()], b["labeled"][()])



_SLOW_BUILD = textwrap.dedent("""
    import sys, time, types, warnings
    import torch
    from hkdsme.train import teacher_cache
    from hkdsme.train.dataset import ShardDataset

    class T(torch.nn.Module):
        def forward(self, x):
            print("pass", flush=True)
            time.sleep(0.3)
            return types.SimpleNamespace(logits=x.mean(dim=(1, 2), keepdim=True).expand(-1, 4, 321, -1).clone())

    warnings.simplefilter("ignore")
    sets = {"labeled": ShardDataset([sys.argv[2]])}
    teacher_cache.build_teacher_cache(sys.argv[1], T(), sets, {"v": 1}, device="cpu", batch=1, progress=False,
                                      flush_s=0)
""")


def test_teacher_cache_build_killed_with_sigkill_continues(tmp_path):
    from hkdsme.train.teacher_cache import partial_path
    sets = _teacher_sets(tmp_path)
    path = tmp_path / "run" / teacher_cache.CACHE_NAME
    child = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(path), str(tmp_path / "lab")],
                             stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):                                        # rows 0-1 flushed, row 2 being computed
            assert child.stdout.readline().strip() == "pass"
    finally:
        child.kill()                                              # SIGKILL: the file is never closed
        child.wait()
    assert not path.exists() and partial_path(path).is_file()
    t = _Counting()
    teacher_cache.build_teacher_cache(path, t, sets, {"v": 1}, device="cpu", batch=1, progress=False)
    assert t.calls <= 3 and teacher_cache.cache_matches(path, {"v": 1})   # 5 rows, at least 2 kept
    ref = teacher_cache.build_teacher_cache(tmp_path / "ref.h5", _Teacher(), sets, {"v": 1}, device="cpu", batch=1,
                                            progress=False)
    with h5py.File(ref) as a, h5py.File(path) as b:
        np.testing.assert_array_equal(a["labeled"][()], b["labeled"][()])


def test_killed_build_keeps_a_set_copied_from_a_donor(tmp_path):
    from hkdsme.train.teacher_cache import data_key, partial_path
    sets = _teacher_sets(tmp_path)
    sets["unlabeled"] = sets["labeled"]
    key = {"feature_hash": sets["labeled"].feature_hash, "teacher_hash": "t", "version": 1,
           "labeled": data_key(sets["labeled"]), "unlabeled": "pool"}
    donor = teacher_cache.build_teacher_cache(tmp_path / "donor.h5", _Teacher(), {"labeled": sets["labeled"]}, key,
                                              device="cpu", batch=2, progress=False)
    path = tmp_path / "run" / teacher_cache.CACHE_NAME
    with pytest.raises(KeyboardInterrupt):                        # labeled copied, unlabeled killed in pass 2
        teacher_cache.build_teacher_cache(path, _Counting(stop_at=2), sets, key, device="cpu", batch=2,
                                          progress=False, flush_s=0, donors=[donor])
    logs, t = [], _Counting()
    teacher_cache.build_teacher_cache(path, t, sets, key, device="cpu", batch=2, progress=False, donors=[donor],
                                      log=logs.append)
    assert t.calls == 2 and logs == [f"teacher logits: continuing {partial_path(path)} (labeled from row 5 of 5, "
                                     "unlabeled from row 2 of 5)"]
    assert teacher_cache.cache_matches(path, key)

@pytest.mark.parametrize("spoil", ["other key", "corrupt rows"])
def test_unusable_partial_teacher_cache_is_rebuilt_from_scratch(tmp_path, spoil):
    from hkdsme.train.teacher_cache import partial_path
    sets = _teacher_sets(tmp_path)
    key = {"feature_hash": sets["labeled"].feature_hash, "teacher_hash": "t", "version": 1}
    path = tmp_path / "run" / teacher_cache.CACHE_NAME
    with pytest.raises(KeyboardInterrupt):
        teacher_cache.build_teacher_cache(path, _Counting(stop_at=3), sets, key, device="cpu", batch=2,
                                          progress=False, flush_s=0)
    if spoil == "other key":
        key = {**key, "teacher_hash": "another teacher"}
    else:                                                         # rows 0-3 no longer hash to the recorded value
        with h5py.File(partial_path(path), "a") as h:
            h["labeled"][1] = h["labeled"][1] + 1
    t = _Counting()
    teacher_cache.build_teacher_cache(path, t, sets, key, device="cpu", batch=2, progress=False)
    assert t.calls == 3 and teacher_cache.cache_matches(path, key)


def test_second_teacher_cache_builder_is_refused_naming_the_holder(tmp_path):
    sets = _teacher_sets(tmp_path)
    path = tmp_path / "run" / teacher_cache.CACHE_NAME
    path.parent.mkdir()
    lock = path.with_name(f".{path.name}.lock")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"being written by another process \\(pid {holder.pid}"):
            teacher_cache.build_teacher_cache(path, _Teacher(), sets, {"v": 1}, device="cpu", batch=2, progress=False)
    finally:
        holder.kill()
        holder.wait()
    teacher_cache.build_teacher_cache(path, _Teacher(), sets, {"v": 1}, device="cpu", batch=2, progress=False)
    assert teacher_cache.cache_matches(path, {"v": 1})

# ---------------------------------------------------------------- 3. lock, journal

_HOLD = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, str(os.getpid()).encode())
    print("held", flush=True)
    time.sleep(60)
""")


def test_second_extract_is_refused_while_one_holds_the_lock(songs, tmp_path):
    out = tmp_path / "cache"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out / ex.LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"another `hkd-prep extract` \\(pid {holder.pid}"):
            _extract(songs, out)
        r = CliRunner().invoke(cli.main, ["extract", "--dataset", "synthetic", "--root", str(songs), "--out",
                                          str(out), "--jobs", "1", "--no-progress"])
        assert r.exit_code == 1 and f"pid {holder.pid}" in r.output and len(r.output.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    assert (out / ex.LOCK).read_text().strip() == str(holder.pid)   # a dead holder's lock: taken over
    assert _extract(songs, out)["done"] == 3
    assert (out / ex.LOCK).read_text().strip() == str(os.getpid())


def test_manifest_not_rewritten_per_track_and_killed_journal_resumes(songs, tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    writes = []
    real_write = shards.write_manifest
    monkeypatch.setattr(shards, "write_manifest", lambda d, m: writes.append(d) or real_write(d, m))
    _extract(songs, ref)
    assert len(writes) == 2                      # start + compaction, not one per track (was 1 + 3)
    assert not (ref / shards.JOURNAL).exists()

    # a run killed after two tracks, before any compaction (kill -9): only the journal holds them
    out = tmp_path / "cache"
    tracks = _tracks(songs)
    real_proc = ex.process_track

    def dies_on_third(track, *a):
        if track.track_id == tracks[2].track_id:
            raise Interrupt
        return real_proc(track, *a)

    monkeypatch.setattr(ex, "process_track", dies_on_third)
    monkeypatch.setattr(shards, "compact_journal", lambda d: False)
    with pytest.raises(Interrupt):
        ex.extract(tracks, out, jobs=1, progress=False)
    monkeypatch.undo()
    recs = [json.loads(ln) for ln in (out / shards.JOURNAL).read_text().splitlines()]
    assert [r["track"] for r in recs] == [t.track_id for t in tracks[:2]]
    assert json.loads((out / shards.MANIFEST).read_text())["tracks"] == {}
    assert sorted(shards.open_cache(out).tracks) == [t.track_id for t in tracks[:2]]   # readers see them
    with open(out / shards.JOURNAL, "a") as f:
        f.write('{"track": "torn')                                 # a kill mid-append
    s = _extract(songs, out)
    assert (s["done"], s["skipped"]) == (1, 2)
    assert not (out / shards.JOURNAL).exists()
    a, b = shards.open_cache(ref), shards.open_cache(out)
    assert a.tracks == b.tracks
    for tid in a.tracks:
        assert a.shard_path(tid).read_bytes() == b.shard_path(tid).read_bytes()


# ---------------------------------------------------------------- 4. exit code, leftovers

def test_extract_exits_nonzero_when_every_track_failed(tmp_path):
    root = tmp_path / "junk"
    root.mkdir()
    for i in range(2):
        (root / f"j{i}.wav").write_bytes(b"RIFF\x00\x00junk" * 40)
    r = CliRunner().invoke(cli.main, ["extract", "--dataset", "unlabeled", "--root", str(root), "--out",
                                      str(tmp_path / "c"), "--jobs", "1", "--no-progress"])
    assert r.exit_code == 1 and "0 done, 0 skipped (already there), 2 failed" in r.output, r.output
    assert "every track failed" in r.output


def test_only_atomic_temp_leftovers_are_removed(songs, tmp_path):
    out = tmp_path / "cache"
    _extract(songs, out)
    junk = [out / "shards" / ".synth_000.h5.tmp-4242-k2j3h4", out / ".manifest.json.tmp-4242-abc_9",
            out / "shards" / "synth_001.h5.tmp-99999"]
    keep = [out / "notes.tmp-keep.txt", out / "shards" / "readme.tmp-x"]
    for f in junk + keep:
        f.write_bytes(b"partial")
    assert _extract(songs, out)["skipped"] == 3
    assert not any(f.exists() for f in junk) and all(f.exists() for f in keep)


# ---------------------------------------------------------------- 5. bounded open files

_READ_ALL = textwrap.dedent("""
    import resource, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    from hkdsme.train.dataset import ShardDataset
    ds = ShardDataset([sys.argv[1]])
    order = np.random.default_rng(0).permutation(len(ds))
    for _ in range(2):
        for i in range(0, len(order), 16):
            b = ds.__getitems__(order[i:i + 16])
            assert getattr(ds, "open_files", 0) <= getattr(ds, "max_open", 10**9)
    x = ds.__getitems__(order[:3])["x"].numpy()
    np.save(sys.argv[2], x)
    print(len(ds), getattr(ds, "max_open", -1), getattr(ds, "open_files", -1))
""")


def test_open_shards_bounded_under_low_ulimit(tmp_path):
    root = write_cache(tmp_path / "pool", n_tracks=200, frames=(64,))
    r = subprocess.run([sys.executable, "-c", _READ_ALL, str(root), str(tmp_path / "x.npy")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    n, max_open, open_files = map(int, r.stdout.split())
    assert n == 200 and max_open == 16 and open_files == 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = ShardDataset([root], max_open=3)
    order = np.random.default_rng(0).permutation(200)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), ds.__getitems__(order[:3])["x"].numpy())
    ds.__getitems__(order[:50])
    assert ds.open_files == 3
