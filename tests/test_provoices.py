"""The provoices adapter (pipeline/provoices.py): voices + tracker labels over a drawn accompaniment pool."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from hkdsme.pipeline import augment as A
from hkdsme.pipeline import f0_tracker as ft
from hkdsme.pipeline import grid, provoices, shards
from hkdsme.pipeline.cli import main as prep
from hkdsme.pipeline.datasets import list_tracks
from hkdsme.pipeline.errors import InputError

SR = 16000
OFF = {f.name: 0.0 for f in dataclasses.fields(A.AugmentSpec) if f.name.endswith("_prob")}


def tone(hz, dur, sr=SR, amp=0.3):
    t = np.arange(int(dur * sr)) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def make_tree(tmp_path):
    """voices/ (2 clips, labels written by hand), labels/, acc/ (2 mono files), MIR-1K/ (3 singers, stereo)."""
    voices, labels, acc, mir = (tmp_path / n for n in ("voices", "labels", "acc", "MIR-1K"))
    (voices / "set").mkdir(parents=True)
    clips = {"a": (220.0, 1.5), "set__b": (330.0, 2.0)}
    for tid, (hz, dur) in clips.items():
        sf.write(voices / (tid.replace("__", "/") + ".wav"), tone(hz, dur), SR)
        t = 0.01 * np.arange(int(dur * 100) + 1)
        f = np.where((t > 0.2) & (t < dur - 0.2), hz, 0.0)
        ft.write_f0_csv(ft.label_path(labels, tid), t, f, np.where(f > 0, 0.9, 0.1))
    acc.mkdir()
    for i in range(2):
        sf.write(acc / f"acc{i}.wav", (0.05 * np.random.default_rng(i).standard_normal(3 * SR)).astype(np.float32), SR)
    (mir / "Wavfile").mkdir(parents=True)
    for name in ("amy_1_01", "abjones_1_01", "Kenshin_1_01"):      # train, test, validation singers
        x = np.stack([0.1 * np.ones(8000, np.float32), tone(200.0, 1.0, 8000)], axis=1)
        sf.write(mir / "Wavfile" / f"{name}.wav", x, 8000)
    return voices, labels, acc, mir, clips


def test_lists_voices_with_their_labels(tmp_path):
    voices, labels, acc, mir, clips = make_tree(tmp_path)
    tracks = list_tracks("provoices", voices, labels=labels)
    assert [t.track_id for t in tracks] == ["a", "set__b"]
    t, f = tracks[1].load_f0()
    assert f.max() == 330.0 and t[0] == 0.0
    ft.label_path(labels, "a").unlink()
    with pytest.raises(InputError, match="no label file"):
        list_tracks("provoices", voices, labels=labels)
    with pytest.raises(ValueError, match="--labels"):
        list_tracks("provoices", voices)


def test_pool_groups_and_mir1k_train_channel_only(tmp_path):
    voices, labels, acc, mir, _ = make_tree(tmp_path)
    pool = provoices.resolve_pool([f"mir1k:{mir}", str(acc), str(acc / "acc1.wav"), str(acc / "*.wav")])
    assert pool[0] == [(str((mir / "Wavfile" / "amy_1_01.wav").absolute()), 0)]     # not the test/val singers
    assert [p for p, _ in pool[1]] == [str((acc / f"acc{i}.wav").absolute()) for i in (0, 1)]
    assert pool[2] == [(str((acc / "acc1.wav").absolute()), None)] and pool[3] == pool[1]
    with pytest.raises(InputError, match="not found"):
        provoices.resolve_pool([str(tmp_path / "missing.wav")])
    with pytest.raises(InputError, match="no accompaniment"):
        provoices.resolve_pool([str(tmp_path / "*.flac")])


def test_draw_is_deterministic_and_groups_equally_likely():
    pool = [[("one.wav", None)], [(f"many{i:02d}.wav", None) for i in range(50)]]
    draws = [provoices.draw_accompaniment(pool, s) for s in range(2000)]
    assert draws == [provoices.draw_accompaniment(pool, s) for s in range(2000)]
    share = np.mean([p == "one.wav" for p, _, _ in draws])
    assert 0.45 < share < 0.55                 # the one-file group is drawn half the time, not 1/51
    assert all(0.0 <= u < 1.0 for _, _, u in draws)


def test_same_seed_same_pairing_other_seed_other_pairing(tmp_path):
    voices, labels, acc, mir, _ = make_tree(tmp_path)
    tracks = list_tracks("provoices", voices, labels=labels, accomp=[f"mir1k:{mir}", str(acc)])

    def pairing(seed):
        aug = A.augment_tracks(tracks, A.AugmentSpec(seed=seed), 8)
        return [(t.track_id, t.extra["accomp_path"], t.extra["accomp_channel"], t.extra["accomp_start"])
                for t in aug]

    first = pairing(0)
    assert first == pairing(0)
    assert [x[0] for x in first[:2]] == ["a__aug0", "a__aug1"] and len(first) == 16
    assert first != pairing(1)
    assert {x[1].rsplit("/", 1)[1] for x in first} == {"amy_1_01.wav", "acc0.wav", "acc1.wav"}
    assert all((ch == 0) == x.endswith("amy_1_01.wav") for _, x, ch, _ in first)


def test_labels_follow_the_pitch_shift_and_audio_is_mixed(tmp_path):
    voices, labels, acc, mir, clips = make_tree(tmp_path)
    tracks = list_tracks("provoices", voices, labels=labels, accomp=[str(acc)])
    spec = A.AugmentSpec(**{**OFF, "pitch_prob": 1.0, "pitch_range": (3.0, 3.0)})
    aug = A.augment_tracks(tracks, spec, 1)
    t0, f0 = tracks[1].load_f0()
    t1, f1 = aug[1].load_f0()
    assert np.array_equal(t0, t1)
    assert np.allclose(f1[f0 > 0], 330.0 * 2 ** (3 / 12)) and (f1[f0 == 0] == 0).all()
    mix = aug[1].load_audio()
    assert mix.dtype == np.float32 and mix.size == int(2.0 * grid.SR)
    x, _ = A.render_variant(A.audio_io.load_audio(tracks[1].audio_path), np.zeros(mix.size, np.float32), grid.SR,
                            t0, f0, spec, aug[1].extra["seed"])[:2]
    acc_part = 2 * mix - 2 * x          # mix = 0.5 (acc + voice): the drawn accompaniment, looped from its start
    want = provoices.load_accompaniment(aug[1].extra["accomp_path"], None, mix.size, aug[1].extra["accomp_start"])
    assert np.allclose(acc_part, want, atol=1e-5)


def test_augment_without_pool_is_refused(tmp_path):
    voices, labels, *_ = make_tree(tmp_path)
    with pytest.raises(ValueError, match="--accomp"):
        A.augment_tracks(list_tracks("provoices", voices, labels=labels), A.AugmentSpec(), 1)


def test_cli_extract_provoices_augment(tmp_path):
    voices, labels, acc, mir, _ = make_tree(tmp_path)
    out = tmp_path / "cache"
    args = ["extract", "--dataset", "provoices", "--root", str(voices), "--labels", str(labels),
            "--accomp", f"mir1k:{mir}", "--accomp", str(acc / "*.wav"), "--augment", "train", "--variants", "2",
            "--out", str(out), "--jobs", "1", "--backend", "threading", "--no-progress"]
    r = CliRunner().invoke(prep, args)
    assert r.exit_code == 0, r.output
    assert "4 done" in r.output
    m = shards.load_manifest(out)
    assert m["dataset"] == "provoices" and sorted(m["tracks"]) == ["a__aug0", "a__aug1", "set__b__aug0", "set__b__aug1"]
    assert all(e["labeled"] for e in m["tracks"].values())
    r = CliRunner().invoke(prep, args)
    assert r.exit_code == 0 and "0 done, 4 skipped" in r.output, r.output
    r = CliRunner().invoke(prep, ["extract", "--dataset", "mir1k", "--root", str(mir), "--labels", str(labels)])
    assert r.exit_code != 0 and "--dataset provoices" in r.output


def test_cli_extract_provoices_without_augment_is_the_voice_alone(tmp_path):
    voices, labels, *_ = make_tree(tmp_path)
    out = tmp_path / "plain"
    r = CliRunner().invoke(prep, ["extract", "--dataset", "provoices", "--root", str(voices), "--labels", str(labels),
                                  "--out", str(out), "--jobs", "1", "--backend", "threading", "--no-progress"])
    assert r.exit_code == 0 and "2 done" in r.output, r.output
    _, bins, f0 = shards.read_track(out / "shards" / "a.h5")
    assert set(np.unique(f0[f0 > 0])) == {220.0}               # the tracker labels, on the 10 ms grid
    r = CliRunner().invoke(prep, ["extract", "--dataset", "provoices", "--root", str(voices), "--out", str(out)])
    assert r.exit_code != 0 and "--labels" in r.output
