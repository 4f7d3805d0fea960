"""`hkd-prep extract --backend dask` on a real `distributed` cluster (2 worker processes): shards byte-identical
to loky's, resume skips finished tracks, a bad file is skipped and reported as with loky."""
import pytest
from click.testing import CliRunner

distributed = pytest.importorskip("distributed")   # the `test` extra installs it: CI runs this

from hkdsme.pipeline import cli, datasets, extract as ex, shards  # noqa: E402
from hkdsme.pipeline.synthetic import write_dataset  # noqa: E402


def _shard_bytes(out):
    c = shards.open_cache(out)
    return {tid: path.read_bytes() for tid, path in c}


def test_dask_cluster_matches_loky_resumes_and_skips_bad(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    write_dataset(root, n=3, seed=5, duration=2.0)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00not audio" * 40)
    tracks = datasets.list_tracks("synthetic", root)
    loky = ex.extract(tracks, tmp_path / "loky", jobs=2, backend="loky", progress=False, echo=lambda m: None)
    assert (loky["done"], loky["failed"]) == (3, 1)

    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    out = tmp_path / "dask"
    args = ["extract", "--dataset", "synthetic", "--root", str(root), "--out", str(out), "--backend", "dask",
            "--jobs", "2", "--no-progress"]
    r = CliRunner().invoke(cli.main, args + ["--limit", "3"])       # a LocalCluster of 2 worker processes
    assert r.exit_code == 0, r.output                                # broken.wav, synth_000, synth_001
    assert "2 done, 0 skipped (already there), 1 failed" in r.output, r.output
    (out / "shards" / "synth_000.h5").write_bytes(b"corrupted")      # a damaged shard is redone on resume

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        r = CliRunner().invoke(cli.main, args + ["--scheduler", lc.scheduler_address])
        assert r.exit_code == 0, r.output
        assert "2 done, 1 skipped (already there), 1 failed" in r.output, r.output
        skips = [ln for ln in r.output.splitlines() if ln.startswith("skip ")]
        assert len(skips) == 1 and skips[0].startswith(f"skip {root / 'broken.wav'}: ")
        assert skips[0] == f"skip {loky['failures'][0]}"             # the same line as with loky
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", lc.scheduler_address)
        again = ex.extract(tracks[1:], out, backend="dask", progress=False)   # the 3 songs
        assert (again["done"], again["skipped"]) == (0, 3)
    assert _shard_bytes(out) == _shard_bytes(tmp_path / "loky")
    m = shards.load_manifest(out)
    assert m["tracks"] == shards.load_manifest(tmp_path / "loky")["tracks"]
    assert list(m["failed"]) == ["broken"]


def test_unreachable_scheduler_is_one_line(tmp_path):
    import dask

    write_dataset(tmp_path / "ds", n=1, seed=1, duration=1.0)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        r = CliRunner().invoke(cli.main, ["extract", "--dataset", "synthetic", "--root", str(tmp_path / "ds"),
                                          "--out", str(tmp_path / "c"), "--backend", "dask", "--no-progress",
                                          "--scheduler", "tcp://127.0.0.1:9"])
    assert r.exit_code == 1 and "cannot reach the dask scheduler at tcp://127.0.0.1:9" in r.output
    assert "Traceback" not in r.output
