"""Shard format (docs/contracts.md): write → read round-trip, padding mask, memory-mappable chunks, cache errors."""
import json

import h5py
import numpy as np
import pytest

from hkdsme.pipeline import grid, shards
from hkdsme.pipeline.errors import InputError


def _track(t, seed=0):
    rng = np.random.default_rng(seed)
    feats = rng.random((3, grid.N_FREQ, t), dtype=np.float32)
    f0 = np.where(rng.random(t) < 0.6, rng.uniform(80, 900, t), 0.0).astype(np.float32)
    return feats, grid.hz_to_bin(f0), f0


def _write(path, feats, bins, f0, **kw):
    return shards.write_shard(path, feats, bins, f0, track_id="a", dataset="d", audio_path="/x/a.wav", **kw)


@pytest.mark.parametrize("t,s", [(150, 3), (128, 2), (1, 1), (65, 2)])
def test_round_trip_and_padding(tmp_path, t, s):
    feats, bins, f0 = _track(t)
    p = tmp_path / "shards" / "a.h5"
    info = _write(p, feats, bins, f0)
    assert info == {"n_frames": t, "n_segments": s, "n_voiced": int(np.count_nonzero(bins)),
                    "checksum": shards.file_checksum(p)}
    assert not list(p.parent.glob("*.tmp-*"))

    got_f, got_b, got_f0 = shards.read_track(p)
    assert got_f.dtype == np.float32 and got_f.shape == (3, grid.N_FREQ, t)
    # float16 storage: exactly the float16 rounding of the input, within 2**-11 relative
    assert np.array_equal(got_f, feats.astype(np.float16).astype(np.float32))
    assert np.abs(got_f - feats).max() <= 2.0 ** -11
    assert np.array_equal(got_b, bins) and got_b.dtype == np.int16
    assert np.array_equal(got_f0, f0) and got_f0.dtype == np.float32

    with h5py.File(p, "r") as h:
        d = h["features"]
        assert d.shape == (s, 3, grid.N_FREQ, grid.SEG_LEN) and d.dtype == np.float16
        assert d.chunks == (1, 3, grid.N_FREQ, grid.SEG_LEN) and d.compression is None
        mask = h["mask"][()]
        assert mask.shape == (s, 64) and mask.sum() == t
        assert mask.reshape(-1)[:t].all() and not mask.reshape(-1)[t:].any()
        assert h["start"][()].tolist() == [64 * i for i in range(s)]
        pad = slice(t, s * 64)
        assert not h["bins"][()].reshape(-1)[pad].any() and not h["f0"][()].reshape(-1)[pad].any()
        assert not d[-1][..., (t - 1) % 64 + 1:].any()     # zero features on the padding
        assert dict(h.attrs) == {"track_id": "a", "dataset": "d", "n_frames": t, "labeled": True,
                                      "feature_hash": grid.feature_hash(), "audio_path": "/x/a.wav"}


def test_unlabeled_track_has_zero_labels(tmp_path):
    feats, _, _ = _track(70)
    p = tmp_path / "u.h5"
    shards.write_shard(p, feats, None, None, track_id="u", dataset="unlabeled")
    _, b, f0 = shards.read_track(p)
    assert b.shape == (70,) and not b.any() and not f0.any()
    with h5py.File(p, "r") as h:
        assert not h.attrs["labeled"]


def test_segments_match_track_slices(tmp_path):
    """Segment s of the shard is frames [64 s, 64 s + 64) of the track."""
    feats, bins, f0 = _track(200, seed=3)
    p = tmp_path / "a.h5"
    _write(p, feats, bins, f0)
    with h5py.File(p, "r") as h:
        seg2 = h["features"][2].astype(np.float32)
        assert np.array_equal(seg2, feats[:, :, 128:192].astype(np.float16).astype(np.float32))
        assert np.array_equal(h["bins"][1], bins[64:128])


def test_chunks_can_be_memory_mapped(tmp_path):
    """The loader may read segment i straight from the file at its chunk's byte offset."""
    feats, bins, f0 = _track(300, seed=1)
    p = tmp_path / "a.h5"
    _write(p, feats, bins, f0)
    with h5py.File(p, "r") as h:
        d = h["features"]
        infos = [d.id.get_chunk_info(i) for i in range(d.shape[0])]
        ref = d[()]
    seg_shape = (3, grid.N_FREQ, grid.SEG_LEN)
    for i, ci in enumerate(infos):
        assert ci.size == np.prod(seg_shape) * 2
        mm = np.memmap(p, dtype=np.float16, mode="r", offset=ci.byte_offset, shape=seg_shape)
        assert np.array_equal(mm, ref[i])


def test_rewrite_replaces_atomically(tmp_path):
    p = tmp_path / "a.h5"
    _write(p, *_track(100, seed=1))
    feats, bins, f0 = _track(40, seed=2)
    _write(p, feats, bins, f0)
    assert shards.read_track(p)[0].shape[2] == 40
    assert [q.name for q in tmp_path.iterdir()] == ["a.h5"]


def test_bad_shapes_rejected(tmp_path):
    feats, bins, f0 = _track(10)
    with pytest.raises(ValueError, match="features must be"):
        _write(tmp_path / "a.h5", feats[:, :100], bins, f0)
    with pytest.raises(ValueError, match="label length"):
        _write(tmp_path / "a.h5", feats, bins[:5], f0)
    assert not list(tmp_path.iterdir())


def test_read_track_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(InputError, match="nope.h5: shard not found"):
        shards.read_track(missing)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file" * 10)
    with pytest.raises(InputError, match="junk.h5: corrupt shard"):
        shards.read_track(junk)
    good = tmp_path / "good.h5"
    _write(good, *_track(100))
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(InputError, match="trunc.h5: corrupt shard"):
        shards.read_track(trunc)
    with h5py.File(good, "a") as h:
        del h["mask"]
    with pytest.raises(InputError, match=r"missing datasets \['mask'\]"):
        shards.read_track(good)
    assert not shards.shard_ok(good) and not shards.shard_ok(junk) and not shards.shard_ok(missing)


def test_shard_relpath():
    assert shards.shard_relpath("amy_1_01") == "shards/amy_1_01.h5"
    assert shards.shard_relpath("Artist/Song") == "shards/Artist__Song.h5"
    with pytest.raises(ValueError):
        shards.shard_relpath("..")


def test_open_cache(tmp_path):
    with pytest.raises(InputError, match="cache folder does not exist"):
        shards.open_cache(tmp_path / "absent")
    with pytest.raises(InputError, match="empty folder"):
        shards.open_cache(tmp_path)
    (tmp_path / "shards").mkdir()
    with pytest.raises(InputError, match="no manifest.json"):
        shards.open_cache(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(InputError, match="manifest.json: unreadable manifest"):
        shards.open_cache(tmp_path)

    m = shards.new_manifest("d")
    for tid in ("b", "a"):
        rel = shards.shard_relpath(tid)
        info = shards.write_shard(tmp_path / rel, *_track(70), track_id=tid, dataset="d")
        m["tracks"][tid] = {"shard": rel, "duration_s": 0.71, "labeled": True, **info}
    shards.write_manifest(tmp_path, m)
    assert json.loads((tmp_path / "manifest.json").read_text())["feature_hash"] == grid.feature_hash()
    c = shards.open_cache(tmp_path, expected_hash=grid.feature_hash())
    assert c.feature_hash == grid.feature_hash() and c.dataset == "d" and len(c) == 2
    assert c.shard_paths() == [tmp_path / "shards/a.h5", tmp_path / "shards/b.h5"]
    assert [tid for tid, _ in c] == ["a", "b"]
    assert c.manifest["feature_params"] == json.loads(json.dumps(grid.FEATURE_PARAMS))
    with pytest.raises(InputError, match="expected 0123"):
        shards.open_cache(tmp_path, expected_hash="0123")
