"""ShardDataset (memory-mapped segment reads), cache checks and the seeded batch sampler."""
import json

import h5py
import numpy as np
import pytest
import torch

from hkdsme.pipeline.errors import InputError
from hkdsme.train.dataset import SegmentBatchSampler, ShardDataset, make_loader

from train_helpers import write_cache


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    a = write_cache(root / "a", n_tracks=3, frames=(150, 100, 64), seed=1)
    b = write_cache(root / "b", n_tracks=1, frames=(70,), seed=2)
    return a, b


def test_items_equal_stored_arrays(caches):
    a, b = caches
    ds = ShardDataset([a, b])
    assert len(ds) == 3 + 2 + 1 + 2
    assert ds._track(0)[0].mapped                       # uncompressed chunks are memory-mapped
    for i in range(len(ds)):
        item = ds[i]
        path, s = ds.paths[ds.track_of[i]], ds.seg_of[i]
        with h5py.File(path) as h:
            np.testing.assert_array_equal(item["x"].numpy(), h["features"][s].astype(np.float32))
            np.testing.assert_array_equal(item["bins"].numpy(), h["bins"][s])
            np.testing.assert_array_equal(item["mask"].numpy(), h["mask"][s])
        assert item["x"].dtype == torch.float32 and item["bins"].dtype == torch.int64
        assert item["mask"].dtype == torch.bool and item["idx"] == i
    # last segment of the 150-frame track: 150 - 128 = 22 real frames
    assert int(ds[2]["mask"].sum()) == 22
    n, f0 = ds.track_reference(0)
    assert n == 150 and f0.shape == (150,)


def test_compressed_shard_falls_back_to_h5py(tmp_path):
    root = write_cache(tmp_path / "c", n_tracks=1, frames=(130,))
    p = root / "shards" / "trk00.h5"
    with h5py.File(p, "a") as h:
        data = h["features"][()]
        del h["features"]
        h.create_dataset("features", data=data, chunks=(1, 3, 320, 64), compression="gzip")
    ds = ShardDataset([root])
    assert not ds._track(0)[0].mapped
    np.testing.assert_array_equal(ds[2]["x"].numpy(), data[2].astype(np.float32))


def test_batched_loader_matches_items_with_workers(caches):
    ds = ShardDataset([caches[0]])
    sampler = SegmentBatchSampler(len(ds), 2, seed=3)
    direct = [[ds[i]["x"] for i in b] for b in sampler]
    for workers in (0, 2):
        got = list(make_loader(ds, sampler, workers=workers))
        assert len(got) == len(direct) == 3
        for batch, ref in zip(got, direct):
            assert batch["x"].shape == (2, 3, 320, 64)
            torch.testing.assert_close(batch["x"], torch.stack(ref), rtol=0, atol=0)


def test_sampler_seeded_sharded_and_drop_last():
    s = SegmentBatchSampler(10, 3, seed=5)
    s.set_epoch(0)
    e0 = list(s)
    assert e0 == list(s) and len(e0) == 3                       # 10 // 3 batches, drop_last
    s.set_epoch(1)
    assert list(s) != e0
    flat = sorted(sum(e0, []))
    assert len(set(flat)) == 9 and set(flat) <= set(range(10))
    ranks = [SegmentBatchSampler(10, 2, seed=5, rank=r, world=2) for r in (0, 1)]
    r0, r1 = list(ranks[0]), list(ranks[1])
    assert len(r0) == len(r1) == 2
    assert not set(sum(r0, [])) & set(sum(r1, []))              # ranks see disjoint segments
    assert len(SegmentBatchSampler(10, 2, seed=5, max_batches=1)) == 1


def test_bad_caches(tmp_path, caches):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty folder"):
        ShardDataset([tmp_path / "empty"])
    other = write_cache(tmp_path / "other", n_tracks=1, feature_hash="0123456789abcdef")
    with pytest.raises(InputError) as e:
        ShardDataset([caches[0], other])
    assert str(caches[0]) in str(e.value) and str(other) in str(e.value) and "0123456789abcdef" in str(e.value)
    unl = write_cache(tmp_path / "unl", n_tracks=1, labeled=False)
    with pytest.raises(InputError, match="no labels"):
        ShardDataset([unl], labeled=True)
    assert len(ShardDataset([unl], labeled=False)) == 3
    m = json.loads((unl / "manifest.json").read_text())
    m["tracks"] = {}
    (unl / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="no segments"):
        ShardDataset([unl], labeled=False)
