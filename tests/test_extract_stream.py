"""`hkd-prep extract` streams long audio (two CFP passes over blocks, segments written into the shard as they
come): the shard is byte-identical to the one-pass path's, and memory stays bounded."""
import numpy as np
import pytest

from hkdsme.pipeline import datasets, extract as ex, grid, shards
from hkdsme.pipeline.synthetic import write_dataset


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    write_dataset(root, n=1, seed=11, duration=7.0)     # 700 frames: 3 blocks of 256 frames when streamed
    return datasets.list_tracks("synthetic", root)[0]


def test_streamed_shard_is_byte_identical(song, tmp_path, monkeypatch):
    one = ex.process_track(song, tmp_path / "a", "shards/s.h5", "synthetic")
    monkeypatch.setattr(ex, "_block_frames", lambda: 4 * grid.SEG_LEN)
    calls = []
    real = shards.write_shard_blocks
    monkeypatch.setattr(shards, "write_shard_blocks", lambda *a, **k: calls.append(1) or real(*a, **k))
    two = ex.process_track(song, tmp_path / "b", "shards/s.h5", "synthetic", stream_frames=100)
    assert calls == [1] and "failed" not in one and "failed" not in two
    assert one == two                                   # same entry, checksum included
    a = (tmp_path / "a" / "shards" / "s.h5").read_bytes()
    assert a == (tmp_path / "b" / "shards" / "s.h5").read_bytes()
    # the whole-track writer fed block by block gives the same bytes too (the dask client's path)
    feats = np.asarray(ex.compute_features(song.load_audio()), np.float32)
    _, t, _, bins, f0 = ex.compute_track(song)
    blocks = ((i, feats[:, :, i:i + 128]) for i in range(0, t, 128))
    shards.write_shard_blocks(tmp_path / "c.h5", t, blocks, bins, f0, track_id=song.track_id, dataset="synthetic",
                              audio_path=song.audio_path)
    assert (tmp_path / "c.h5").read_bytes() == a


def test_streamed_bad_audio_and_blocks(song, tmp_path, monkeypatch):
    x = song.load_audio().copy()
    x[3000] = np.nan
    monkeypatch.setattr(type(song), "load_audio", lambda self: x)
    res = ex.process_track(song, tmp_path, "shards/s.h5", "synthetic", stream_frames=100)
    assert res["failed"].startswith(f"{song.audio_path}: ") and not list(tmp_path.rglob("*.h5"))
    with pytest.raises(ValueError, match="does not continue"):
        shards.write_shard_blocks(tmp_path / "d.h5", 200, [(0, np.zeros((3, 320, 64))), (100, np.zeros((3, 320, 100)))],
                                  track_id="d", dataset="x")
    assert not list(tmp_path.glob("*d.h5*"))            # the temp file is gone too


def test_stream_threshold_is_predicts():
    from hkdsme.evaluate.inference import MAX_HELD_FRAMES

    assert ex.STREAM_FRAMES == MAX_HELD_FRAMES
