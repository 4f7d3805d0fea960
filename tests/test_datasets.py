import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hkdsme.pipeline import audio as audio_io
from hkdsme.pipeline import datasets as D
from hkdsme.pipeline.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared"
MIR1K = SHARED / "data" / "MIR-1K"
MEDLEYDB = SHARED / "data" / "MedleyDB-annotations"


def _sine(f, sr, n, amp):
    return amp * np.sin(2 * np.pi * f * np.arange(n) / sr)


def _stereo(path, sr=16000, n=3200, acc=(300, 0.4), voice=(500, 0.1)):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.stack([_sine(*acc[:1], sr, n, acc[1]), _sine(voice[0], sr, n, voice[1])], axis=1)
    sf.write(path, x, sr, subtype="FLOAT")
    return x


def _write(path, text, newline="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode())


# ------------------------------------------------------------------------------------------------ mir1k

@pytest.fixture
def mir1k(tmp_path):
    root = tmp_path / "MIR-1K"
    for clip in ["amy_1_01", "Ani_2_03", "abjones_1_01", "Kenshin_3_02"]:
        _stereo(root / "Wavfile" / f"{clip}.wav")
        _write(root / "PitchLabel" / f"{clip}.pv", "0 \n69 \n57.0 \n0 \n")   # the real files end lines with " \n"
    return root


def test_mir1k_listing_and_singer_split(mir1k):
    ids = [t.track_id for t in D.list_tracks("mir1k", mir1k)]
    assert ids == ["Ani_2_03", "Kenshin_3_02", "abjones_1_01", "amy_1_01"]
    assert [t.track_id for t in D.list_tracks("mir1k", mir1k, split="train")] == ["Ani_2_03", "amy_1_01"]
    assert [t.track_id for t in D.list_tracks("mir1k", mir1k, split="validation")] == ["Kenshin_3_02"]
    assert [t.track_id for t in D.list_tracks("mir1k", mir1k, split="test")] == ["abjones_1_01"]
    assert len(D.list_tracks("mir1k", mir1k, limit=3)) == 3


def test_mir1k_splits_json_wins(mir1k):
    splits = {"splits": {"train": {"clips": ["abjones_1_01"]}, "validation": {"clips": []},
                         "test": {"clips": ["amy_1_01", "Ani_2_03"]}}}
    (mir1k / "splits.json").write_text(json.dumps(splits))
    assert [t.track_id for t in D.list_tracks("mir1k", mir1k, split="train")] == ["abjones_1_01"]
    assert [t.track_id for t in D.list_tracks("mir1k", mir1k, split="test")] == ["Ani_2_03", "amy_1_01"]


def test_mir1k_f0_and_audio(mir1k):
    tr = D.list_tracks("mir1k", mir1k)[0]
    times, f0 = tr.load_f0()
    np.testing.assert_allclose(times, [0.02, 0.04, 0.06, 0.08])
    np.testing.assert_allclose(f0, [0.0, 440.0, 220.0, 0.0], rtol=1e-12)
    y = tr.load_audio()
    assert y.dtype == np.float32 and y.shape == (1600,)
    x, _ = sf.read(tr.audio_path)
    ref = audio_io.resample(x.mean(axis=1).astype(np.float32), 16000, 8000)
    np.testing.assert_allclose(y, ref, atol=1e-6)


def test_mir1k_voice_remix(mir1k):
    for db, suffix in [(-5.0, "_v-5dB"), (5, "_v+5dB")]:
        tr = D.list_tracks("mir1k", mir1k, voice_db=db, tracks_file=None)[0]
        assert tr.track_id == "Ani_2_03" + suffix and tr.extra["voice_db"] == db
        y = tr.load_audio().astype(np.float64)
        # least-squares amplitudes of the two sines at 8 kHz (away from resampler edges)
        n = np.arange(y.size)
        basis = np.stack([np.sin(2 * np.pi * f * n / 8000) for f in (300, 500)], axis=1)
        mid = slice(100, y.size - 100)
        a_acc, a_voice = np.linalg.lstsq(basis[mid], y[mid], rcond=None)[0]
        assert np.isclose(20 * np.log10(a_voice / a_acc), db, atol=0.05)
        assert np.isclose(a_acc, 0.5 * 0.4, rtol=1e-2)    # accompaniment keeps the default-mix level


def test_mir1k_tracks_file_and_errors(mir1k, tmp_path):
    lst = tmp_path / "ids.txt"
    lst.write_text("# my pick\namy_1_01\r\n\nabjones_1_01.wav\n")
    assert [t.track_id for t in D.list_tracks("mir1k", mir1k, tracks_file=lst)] == ["amy_1_01", "abjones_1_01"]
    remixed = D.list_tracks("mir1k", mir1k, tracks_file=lst, voice_db=-5)
    assert [t.track_id for t in remixed] == ["amy_1_01_v-5dB", "abjones_1_01_v-5dB"]
    lst.write_text("amy_1_01\nnobody_9_99\n")
    with pytest.raises(InputError, match="nobody_9_99") as e:
        D.list_tracks("mir1k", mir1k, tracks_file=lst)
    assert e.value.path == lst

    tr = D.list_tracks("mir1k", mir1k, tracks_file=None)[0]
    tr.label_path.write_text("0\n69\nabc\n")
    with pytest.raises(InputError, match="line 3") as e:
        tr.load_f0()
    assert e.value.path == tr.label_path
    tr.label_path.unlink()
    with pytest.raises(InputError, match="not found"):
        tr.load_f0()


def test_list_tracks_argument_errors(mir1k, tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        D.list_tracks("nope", mir1k)
    with pytest.raises(ValueError, match="unknown split"):
        D.list_tracks("mir1k", mir1k, split="dev")
    with pytest.raises(ValueError, match="no option"):
        D.list_tracks("adc2004", mir1k, voice_db=3)
    with pytest.raises(InputError, match="not a directory"):
        D.list_tracks("mir1k", tmp_path / "absent")
    with pytest.raises(InputError, match="no .wav/.flac"):
        D.list_tracks("mir1k", tmp_path)


# ------------------------------------------------------------------------------------------------ ikala

def test_ikala(tmp_path):
    root = tmp_path / "iKala"
    _stereo(root / "Wavfile" / "10161_chorus.wav", sr=44100, n=4410)
    _write(root / "PitchLabel" / "10161_chorus.pv", "0\n81\n45\n", newline="\r\n")
    (tr,) = D.list_tracks("ikala", root)
    times, f0 = tr.load_f0()
    np.testing.assert_allclose(times, [0.016, 0.048, 0.080])
    np.testing.assert_allclose(f0, [0.0, 880.0, 110.0])
    assert tr.load_audio().shape == (800,)
    (rm,) = D.list_tracks("ikala", root, voice_db=0)
    assert rm.track_id == "10161_chorus_v+0dB"
    with pytest.raises(ValueError, match="no official split"):
        D.list_tracks("ikala", root, split="test")


# ------------------------------------------------------------------------------------------------ medleydb

def test_medleydb_vocal_only(tmp_path):
    root = tmp_path / "MedleyDB"
    t = "AimeeNorwich_Child"                       # in the default 35-track train list
    hop = 256 / 44100
    times = np.arange(120) * hop                   # first row at t = 0, like the real files
    f0 = np.full(times.shape, 200.0)
    f0[100:] = 0.0
    _write(root / "Annotations/Melody_Annotations/MELODY2" / f"{t}_MELODY2.csv",
           "".join(f"{a:.17g},{b:.17g}\n" for a, b in zip(times, f0)), newline="\r\n")
    _write(root / "Annotations/Instrument_Activations/SOURCEID" / f"{t}_SOURCEID.lab",
           "start_time,end_time,instrument_label\n"
           f"0.0,{times[20]:.17g},female singer\n"        # strict: rows 1..19 kept, row 0 and row 20 not
           "0.15,0.3,vocalists\n"                      # not a "singer" label
           f"{times[50]:.17g},{times[90]:.17g},male singer\n"
           "0.0,1.0,drum set\n")
    tracks = D.list_tracks("medleydb", root)
    assert len(tracks) == 35 and tracks[0].track_id == t
    tr = tracks[0]
    assert tr.audio_path == root / "Audio" / t / f"{t}_MIX.wav"
    tt, ff = tr.load_f0()
    np.testing.assert_allclose(tt, times)
    keep = np.zeros(120, bool)
    keep[1:20] = True
    keep[51:90] = True
    np.testing.assert_array_equal(ff, np.where(keep, 200.0, 0.0))
    raw = dataclasses.replace(tr, extra={**tr.extra, "vocal_only": False}).load_f0()[1]
    np.testing.assert_array_equal(raw, f0)
    no_vocal = D.list_tracks("medleydb", root, vocal_only=False)[0].load_f0()[1]
    np.testing.assert_array_equal(no_vocal, f0)

    with pytest.raises(InputError, match="not found") as e:     # audio absent, as in the shared copy
        tr.load_audio()
    assert e.value.path == tr.audio_path
    tr.audio_path.parent.mkdir(parents=True)
    sf.write(tr.audio_path, np.zeros((44100, 2)), 44100)        # stand-in MIX covering the annotation
    assert tr.load_audio().shape == (8000,)

    lst = tmp_path / "l.txt"
    lst.write_text(f"{t}_MIX.npy\nMusicDelta_Zeppelin\n")      # the file is the list (Zeppelin is in no default)
    assert [x.track_id for x in D.list_tracks("medleydb", root, tracks_file=lst)] == [t, "MusicDelta_Zeppelin"]
    with pytest.raises(InputError, match="MusicDelta_Zeppelin"):  # with a split, it selects from the split
        D.list_tracks("medleydb", root, split="train", tracks_file=lst)
    assert len(D.list_tracks("medleydb", root, split="test")) == 12
    assert len(D.list_tracks("medleydb", root, split="validation")) == 13
    # a missing SOURCEID file is an error for vocal-only labels
    D.list_tracks("medleydb", root)[0].extra["sourceid_path"].unlink()
    with pytest.raises(InputError, match="SOURCEID"):
        D.list_tracks("medleydb", root)[0].load_f0()


# ------------------------------------------------------------------------------------------------ adc2004 / mirex05

@pytest.mark.parametrize("name", ["adc2004", "mirex05"])
def test_ref_layout(tmp_path, name):
    root = tmp_path / name
    root.mkdir()
    sf.write(root / "daisy1.wav", _sine(220, 44100, 4410, 0.3), 44100)
    sf.write(root / "pop1.wav", _sine(220, 44100, 4410, 0.3), 44100)
    _write(root / "daisy1REF.txt", "0.000000\t0.000000\n0.005805\t220.500000\n", newline="\r\n")
    _write(root / "pop1REF.txt", "0.0   0.0\n 0.01    330.0 \n\n")
    tracks = D.list_tracks(name, root, all_tracks=True)
    assert [t.track_id for t in tracks] == ["daisy1", "pop1"]
    t0, f0 = tracks[0].load_f0()
    np.testing.assert_allclose(t0, [0.0, 0.005805])
    np.testing.assert_allclose(f0, [0.0, 220.5])
    np.testing.assert_allclose(tracks[1].load_f0()[1], [0.0, 330.0])
    assert tracks[0].load_audio().shape == (800,)
    for split in (None, "test"):       # the default = the literature's vocal test list, which is not all there
        with pytest.raises(InputError, match="missing.*--all-tracks"):
            D.list_tracks(name, root, split=split)
    _write(root / "pop1REF.txt", "0.0 0.0\n0.01\n")
    with pytest.raises(InputError, match="line 2"):
        tracks[1].load_f0()
    _write(root / "pop1REF.txt", "0.0 0.0\n0.02 1\n0.01 1\n")
    with pytest.raises(InputError, match="increasing"):
        tracks[1].load_f0()


def test_adc2004_test_split(tmp_path):
    names = ["daisy1", "daisy2", "daisy3", "daisy4", "opera_fem2", "opera_fem4", "opera_male3", "opera_male5",
             "pop1", "pop2", "pop3", "pop4", "jazz1"]
    for n in names:
        sf.write(tmp_path / f"{n}.wav", np.zeros(100), 8000)
    assert len(D.list_tracks("adc2004", tmp_path, all_tracks=True)) == 13
    assert [t.track_id for t in D.list_tracks("adc2004", tmp_path, split="test")] == names[:12]


ADC_VOCAL = ["daisy1", "daisy2", "daisy3", "daisy4", "opera_fem2", "opera_fem4", "opera_male3", "opera_male5",
             "pop1", "pop2", "pop3", "pop4"]
MIREX05_VOCAL = [f"train{i:02d}" for i in range(1, 10)]


def _ref_layout(root, names, refs=None, dur=1.0):
    """``<name>.wav`` (a synthetic song, 8 kHz) + its ``REF.txt`` (named by ``refs[name]`` when given)."""
    from hkdsme.pipeline.synthetic import write_dataset

    src = write_dataset(root / "_src", n=1, seed=7, duration=dur)[0]
    refs = refs or {}
    for n in names:
        (root / f"{n}.wav").write_bytes(src.read_bytes())
        (root / refs.get(n, f"{n}REF.txt")).write_bytes(src.with_name(src.stem + "REF.txt").read_bytes())
    return root


def test_literature_lists_are_the_default(tmp_path):
    """adc2004: 12 vocal tracks of 20; mirex05: train01-09, not the instrumental train10-12 nor train13MIDI."""
    adc = tmp_path / "adc"
    adc.mkdir()
    _ref_layout(adc, ADC_VOCAL + ["jazz1", "jazz2", "midi1", "midi2", "opera_fem1", "opera_male1"])
    assert [t.track_id for t in D.list_tracks("adc2004", adc)] == ADC_VOCAL
    assert len(D.list_tracks("adc2004", adc, all_tracks=True)) == 18
    mx = tmp_path / "mx"
    mx.mkdir()
    _ref_layout(mx, MIREX05_VOCAL + ["train10", "train11", "train12", "train13MIDI"],
                refs={"train13MIDI": "train13REF.txt"})
    assert [t.track_id for t in D.list_tracks("mirex05", mx)] == MIREX05_VOCAL
    assert [t.track_id for t in D.list_tracks("mirex05", mx, split="test")] == MIREX05_VOCAL
    every = D.list_tracks("mirex05", mx, all_tracks=True)
    assert [t.track_id for t in every][-4:] == ["train10", "train11", "train12", "train13MIDI"]
    for t in every:                   # every reference is found, train13MIDI's as it ships (train13REF.txt)
        assert t.load_f0()[0].size > 0
    assert every[-1].label_path == mx / "train13REF.txt"
    # --tracks chooses among ALL tracks (ids with or without .npy, as the lineage lists write them)
    (tmp_path / "l.txt").write_text("train13MIDI.npy\ntrain10\n")
    assert [t.track_id for t in D.list_tracks("mirex05", mx, tracks_file=tmp_path / "l.txt")] == \
        ["train13MIDI", "train10"]
    with pytest.raises(ValueError, match="all-tracks"):
        D.list_tracks("mirex05", mx, all_tracks=True, tracks_file=tmp_path / "l.txt")
    # the lists are package data, the same as the lineage's own files
    shared = SHARED / "docs" / "lists"
    for name, fn in D.REF_TEST_LISTS.items():
        assert len(D.read_id_list(D.LISTS_DIR / fn)) == {"adc2004": 12, "mirex05": 9}[name]
        if shared.is_dir():
            assert (D.LISTS_DIR / fn).read_bytes() == (shared / fn).read_bytes()
    assert D.track_list_name("mirex05") == "built-in hkdsme_test_05_npy.txt (MIREX05's 9 vocal tracks)"
    assert D.track_list_name("mirex05", all_tracks=True) == "all tracks (--all-tracks)"


def test_report_and_extract_say_which_list(tmp_path):
    """hkd-eval report: default list, --tracks (train13MIDI scored against train13REF.txt), --all-tracks;
    report.md / report.json name the list. hkd-prep extract: default list, then --all-tracks adds the rest."""
    import torch
    from click.testing import CliRunner

    from hkdsme.evaluate.cli import main as eval_main
    from hkdsme.model.checkpoint import save_checkpoint
    from hkdsme.model.student import MSNet
    from hkdsme.pipeline import grid
    from hkdsme.pipeline.cli import main as prep_main

    mx = tmp_path / "mx"
    mx.mkdir()
    _ref_layout(mx, MIREX05_VOCAL + ["train10", "train13MIDI"], refs={"train13MIDI": "train13REF.txt"})
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "s.pt", MSNet(), kind="student", config={}, feature_hash=grid.feature_hash())
    base = ["report", "--checkpoint", str(ck), "--dataset", "mirex05", "--root", str(mx), "--no-plots"]
    r = CliRunner().invoke(eval_main, base + ["--limit", "1", "--out", str(tmp_path / "r1")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert rep["track_list"] == "built-in hkdsme_test_05_npy.txt (MIREX05's 9 vocal tracks), first 1"
    assert list(rep["checkpoints"]["s"]["per_track"]) == ["train01"]
    assert "- track list: built-in hkdsme_test_05_npy.txt (MIREX05's 9 vocal tracks), first 1" in \
        (tmp_path / "r1" / "report.md").read_text()
    (tmp_path / "l.txt").write_text("train13MIDI\n")
    r = CliRunner().invoke(eval_main, base + ["--tracks", str(tmp_path / "l.txt"), "--out", str(tmp_path / "r2")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert list(rep["checkpoints"]["s"]["per_track"]) == ["train13MIDI"] and rep["failed"] == {}
    assert rep["track_list"] == f"--tracks {tmp_path / 'l.txt'}"
    r = CliRunner().invoke(eval_main, base + ["--all-tracks", "--tracks", str(tmp_path / "l.txt"),
                                              "--out", str(tmp_path / "r3")])
    assert r.exit_code != 0 and "cannot be combined" in r.output and "Traceback" not in r.output

    out = tmp_path / "cache"
    args = ["extract", "--dataset", "mirex05", "--root", str(mx), "--out", str(out), "--jobs", "1",
            "--backend", "threading", "--no-progress"]
    r = CliRunner().invoke(prep_main, args)
    assert r.exit_code == 0 and "9 done, 0 skipped (already there), 0 failed" in r.output, r.output
    r = CliRunner().invoke(prep_main, args + ["--all-tracks"])
    assert r.exit_code == 0 and "2 done, 9 skipped (already there), 0 failed" in r.output, r.output


# ------------------------------------------------------------------------------------------------ unlabeled

def test_unlabeled_tree(tmp_path):
    (tmp_path / "sub").mkdir()
    for rel, fmt in [("a.wav", "WAV"), ("sub/b.flac", "FLAC"), ("sub/c.ogg", "OGG"), ("a.mp3", "MP3")]:
        sf.write(tmp_path / rel, _sine(440, 16000, 1600, 0.2), 16000, format=fmt)
    (tmp_path / "notes.txt").write_text("not audio")
    tracks = D.list_tracks("unlabeled", tmp_path)
    assert [t.track_id for t in tracks] == ["a_mp3", "a_wav", "sub__b", "sub__c"]
    for t in tracks:
        assert t.load_f0() is None and t.label_path is None
        y = t.load_audio()
        assert y.dtype == np.float32
        if t.audio_path.suffix == ".mp3":       # the decoder adds encoder delay/padding
            assert 800 <= y.size <= 2000
        else:
            assert y.size == 800


# ------------------------------------------------------------------------------------------------ real data

@pytest.mark.skipif(not MIR1K.is_dir(), reason="shared MIR-1K not available")
def test_real_mir1k():
    tracks = D.list_tracks("mir1k", MIR1K)
    assert len(tracks) == 1000
    meta = json.loads((MIR1K / "splits.json").read_text())["splits"]
    for split in D.SPLITS:
        assert len(D.list_tracks("mir1k", MIR1K, split=split)) == meta[split]["n_clips"]
    tr = tracks[0]
    times, f0 = tr.load_f0()
    n_lines = len((tr.label_path).read_text().splitlines())
    assert times.size == n_lines and np.isclose(times[0], 0.02)
    voiced = f0[f0 > 0]
    assert voiced.size and voiced.min() >= 67 and voiced.max() <= 667
    y = tr.load_audio()
    assert y.size == sf.info(tr.audio_path).frames and y.dtype == np.float32


@pytest.mark.skipif(not MEDLEYDB.is_dir(), reason="shared MedleyDB annotations not available")
def test_real_medleydb_annotations():
    train = D.list_tracks("medleydb", MEDLEYDB)
    assert len(train) == 35 and all(t.label_path.is_file() for t in train)
    test = D.list_tracks("medleydb", MEDLEYDB, split="test")
    assert len(test) == 12 and all(t.label_path.is_file() for t in test)
    tr = next(t for t in test if t.track_id == "AClassicEducation_NightOwl")
    times, f0 = tr.load_f0()
    np.testing.assert_allclose(np.diff(times[:100]), 256 / 44100, rtol=1e-6)
    raw = D.list_tracks("medleydb", MEDLEYDB, split="test", vocal_only=False)[0].load_f0()[1]
    assert np.all((f0 == raw) | (f0 == 0))                  # vocal-only only removes values
    assert (f0 > 0).sum() < (raw > 0).sum()                # and here it does remove some
    with pytest.raises(InputError, match="not found"):
        tr.load_audio()


def test_unlabeled_duplicate_ids_refused_naming_both_files(tmp_path):
    """``a/b.wav`` and ``a__b.wav`` both map to track id (and shard) ``a__b``: refused, one line, both files named."""
    (tmp_path / "a").mkdir()
    for rel in ("a/b.wav", "a__b.wav"):
        sf.write(tmp_path / rel, _sine(440, 16000, 1600, 0.2), 16000)
    with pytest.raises(InputError) as e:
        D.list_tracks("unlabeled", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "duplicate track id 'a__b'" in msg and "a/b.wav" in msg and "a__b.wav" in msg
    (tmp_path / "a__b.wav").rename(tmp_path / "c.wav")
    assert [t.track_id for t in D.list_tracks("unlabeled", tmp_path)] == ["a__b", "c"]


def test_label_table_reader(tmp_path):
    """core.read_table (mir_eval.io.load_delimited): mixed separators, blank lines, a header, extra columns
    ignored, each row's line number; bad rows named by line."""
    from hkdsme.pipeline.datasets.core import read_table

    p = tmp_path / "t.csv"
    p.write_text("time,f0,conf\r\n\r\n0.01\t100, 0.5 extra\r\n ,0.02  , 110,1,\r\n\n0.03 0 0\r\n")
    tab, lines = read_table(p, 2, header=True)
    assert tab.tolist() == [[0.01, 100.0], [0.02, 110.0], [0.03, 0.0]] and lines == [3, 4, 6]
    assert read_table(p, 3, header=True)[0][:, 2].tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(InputError, match="line 1: cannot parse 'time,f0,conf'") as e:
        read_table(p, 2)                                      # no header expected: the names are a bad row
    assert e.value.path == p
    p.write_text("60 1\n\n61\n")                              # one column: a row's further fields are ignored
    tab, lines = read_table(p, 1)
    assert tab.tolist() == [[60.0], [61.0]] and lines == [1, 3]
    with pytest.raises(InputError, match=r"line 3: cannot parse '61' \(expected 2 columns, got 1\)"):
        read_table(p, 2)
    p.write_text("0 1\n0.5 x\n")
    with pytest.raises(InputError, match=r"line 2: .*\(not a number\)"):
        read_table(p, 2)
    p.write_text("time f0\n")
    assert read_table(p, 2, header=True)[0].shape == (0, 2)
