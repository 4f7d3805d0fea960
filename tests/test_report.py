"""`hkd-eval report`: files produced and parseable, scores equal an independent mir_eval run, failures listed,
feature cache used only when its hash matches. Real MIR-1K check when /work/shared is present."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from hkdsme.evaluate.cli import main
from hkdsme.evaluate.metrics import METRICS, melody_scores
from hkdsme.evaluate.inference import Predictor
from hkdsme.evaluate.report import checkpoint_names, run_report
from hkdsme.model.checkpoint import save_checkpoint
from hkdsme.model.student import MSNet
from hkdsme.pipeline import grid, shards
from hkdsme.pipeline.datasets import list_tracks
from hkdsme.pipeline.synthetic import write_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    ds = base / "ds"
    wavs = write_dataset(ds, n=2, seed=3, duration=2.0)
    (ds / "garbage.wav").write_bytes(b"definitely not audio" * 50)
    shutil.copy(ds / f"{wavs[0].stem}REF.txt", ds / "garbageREF.txt")
    sf.write(ds / "nolabel.wav", np.sin(np.arange(16000) * 0.1).astype(np.float32), 8000)
    ckpts = []
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        ckpts.append(save_checkpoint(base / f"{name}.pt", MSNet(), kind="student", config={"seed": seed},
                                     feature_hash=grid.feature_hash()))
    return base, ds, wavs, ckpts


def test_cli_report_files(setup):
    base, ds, wavs, ckpts = setup
    out = base / "out_cli"
    r = CliRunner().invoke(main, ["report", "--checkpoint", str(ckpts[0]), "--checkpoint", str(ckpts[1]),
                                  "--dataset", "synthetic", "--root", str(ds), "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    ok = sorted(w.stem for w in wavs)
    assert rep["n_tracks"] == 4 and rep["n_scored"] == 2
    assert set(rep["failed"]) == {"garbage", "nolabel"}
    assert "cannot decode audio" in rep["failed"]["garbage"]
    assert "label file not found" in rep["failed"]["nolabel"]
    assert rep["feature_source"] == {t: "computed" for t in ok}
    assert list(rep["checkpoints"]) == ["a", "b"]

    # every score equals an independent run: predictor on the audio + mir_eval against the native REF file
    for name, ck in zip("ab", ckpts):
        c = rep["checkpoints"][name]
        assert c["kind"] == "student" and sorted(c["per_track"]) == ok
        pred = Predictor(ck)
        for w in wavs[: 2 if name == "a" else 1]:
            tr = [t for t in list_tracks("synthetic", ds) if t.track_id == w.stem][0]
            ref = np.loadtxt(ds / f"{w.stem}REF.txt")
            est = pred.predict_audio(tr.load_audio())
            want = melody_scores(ref[:, 0], ref[:, 1], *est)
            assert c["per_track"][w.stem] == pytest.approx(want, abs=1e-9)
        for m in METRICS:
            assert c["mean"][m] == pytest.approx(np.mean([c["per_track"][t][m] for t in ok]))

    rows = list(csv.DictReader((out / "per_track.csv").open()))
    assert len(rows) == 4 and {r["checkpoint"] for r in rows} == {"a", "b"}
    for row in rows:
        want = rep["checkpoints"][row["checkpoint"]]["per_track"][row["track_id"]]
        assert [float(row[m]) for m in METRICS] == pytest.approx([want[m] for m in METRICS], abs=1e-4)

    md = (out / "report.md").read_text()
    assert "| checkpoint | kind | VR | VFA | RPA | RCA | OA |" in md
    for name in "ab":
        assert f"| {name} | student | " + " | ".join(f"{rep['checkpoints'][name]['mean'][m]:.2f}"
                                                     for m in METRICS) + " |" in md
    assert "## Failed tracks" in md and "`garbage`" in md and "`nolabel`" in md
    assert md in r.output
    for t in ok:
        assert (out / "plots" / f"{t}.png").read_bytes()[:8] == PNG
    assert (out / "summary.png").read_bytes()[:8] == PNG


def _write_cache(cache, tracks, hash_):
    m = shards.new_manifest("synthetic")
    m["feature_hash"] = hash_
    from hkdsme.pipeline.cfp import cfp

    for tr in tracks:
        rel = shards.shard_relpath(tr.track_id)
        info = shards.write_shard(cache / rel, cfp(tr.load_audio()), track_id=tr.track_id, dataset="synthetic")
        m["tracks"][tr.track_id] = {"shard": rel, "n_frames": info["n_frames"], "n_segments": info["n_segments"],
                                    "duration_s": 2.0, "labeled": False}
    shards.write_manifest(cache, m)


def test_cache_used_only_when_hash_matches(setup):
    base, ds, wavs, ckpts = setup
    tracks = [t for t in list_tracks("synthetic", ds) if t.track_id in {w.stem for w in wavs}]
    cache = base / "cache"
    _write_cache(cache, tracks[:1], grid.feature_hash())          # first track only: the other is computed
    rep = run_report([ckpts[0]], "synthetic", ds, out_dir=base / "out_cache", cache_dir=cache, plots=False,
                     progress=False, log=lambda s: None)
    assert rep["feature_source"] == {tracks[0].track_id: "cache", tracks[1].track_id: "computed"}
    # the cached (float16) features are what the network saw
    feats, _, _ = shards.read_track(cache / shards.shard_relpath(tracks[0].track_id))
    ref = tracks[0].load_f0()
    want = melody_scores(*ref, *Predictor(ckpts[0]).predict_features(feats))
    assert rep["checkpoints"]["a"]["per_track"][tracks[0].track_id] == pytest.approx(want, abs=1e-9)
    assert not (base / "out_cache" / "plots").exists()

    other = base / "cache_other"
    _write_cache(other, tracks[:1], "f" * 16)
    notes = []
    rep = run_report([ckpts[0]], "synthetic", ds, out_dir=base / "out_other", cache_dir=other, plots=False,
                     progress=False, log=notes.append)
    assert set(rep["feature_source"].values()) == {"computed"}
    assert any("computing features from audio instead" in n for n in notes)


def test_bad_checkpoint_stops_before_work(setup, tmp_path):
    base, ds, wavs, ckpts = setup
    teacher_kind = tmp_path / "bad.pt"
    teacher_kind.write_bytes(b"\x00" * 100)
    r = CliRunner().invoke(main, ["report", "--checkpoint", str(ckpts[0]), "--checkpoint", str(teacher_kind),
                                  "--dataset", "synthetic", "--root", str(ds), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "bad.pt: not a readable checkpoint" in r.output
    assert not (tmp_path / "o" / "report.json").exists()


def test_checkpoint_names_are_unique():
    assert checkpoint_names(["r/a.pt", "r/b.pt"]) == ["a", "b"]
    assert checkpoint_names(["x/best.pt", "y/best.pt"]) == ["x/best", "y/best"]
    assert checkpoint_names(["p/x/best.pt", "q/x/best.pt"]) == ["p/x/best.pt", "q/x/best.pt"]


@pytest.mark.skipif(not (SHARED / "data" / "MIR-1K").is_dir(), reason="shared MIR-1K copy not present")
def test_mir1k_native_reference(setup, tmp_path):
    """Real MIR-1K clip: native 20 ms .pv reference in Hz, scored against our 10 ms estimate."""
    base, ds, wavs, ckpts = setup
    root = SHARED / "data" / "MIR-1K"
    rep = run_report([ckpts[0]], "mir1k", root, split="test", limit=1, out_dir=tmp_path, plots=False,
                     progress=False)
    assert rep["n_scored"] == 1, rep["failed"]
    (tid, s), = rep["checkpoints"]["a"]["per_track"].items()
    tr = list_tracks("mir1k", root, split="test", limit=1)[0]
    t, f = tr.load_f0()
    assert np.allclose(np.diff(t), 0.02)                    # native grid, not resampled to 10 ms
    assert all(0 <= s[m] <= 100 for m in METRICS) and s["RPA"] <= s["VR"] + 1e-9
