"""UltraStar notes as references: parsing (hand-computed times), bad files, offset/octave resolution on a
synthetic song with a known shift, note rendering, the short-gap exclusion mask and scoring with it, the OAc
metric, the dataset adapter and the report."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from hkdsme.evaluate.metrics import ALL_METRICS, METRICS, melody_scores
from hkdsme.evaluate.report import run_report
from hkdsme.pipeline import grid, ultrastar
from hkdsme.pipeline.datasets import list_tracks, track_list_name
from hkdsme.pipeline.errors import InputError
from hkdsme.pipeline.ultrastar import note_f0, note_gap_mask, parse_ultrastar, resolve_offset_octave, shift_notes

SR = grid.SR

# BPM 187,5 (decimal comma) → 15 / 187.5 = 0.08 s per beat; GAP 1500 ms → beat 0 at 1.5 s
SONG = """\ufeff#TITLE:Ça va
#ARTIST:Test
#BPM:187,5
#GAP:1500
: 0 4 0 la
* 10 2 -5  go
F 14 2 3 free
R 16 2 3 rap
G 18 2 3 grap
- 20
: 25 5 12  end
- 31 32
E
: 40 1 0 after the end
"""


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_parse_hand_computed(tmp_path):
    header, notes = parse_ultrastar(_write(tmp_path / "song.txt", SONG))
    assert header["TITLE"] == "Ça va" and header["BPM"] == "187,5" and header["GAP"] == "1500"
    # : 0 4 0 → 1.5 .. 1.5 + 4·0.08;  * 10 2 -5 → 1.5 + 0.8 .. + 0.16, MIDI 55;  : 25 5 12 → 3.5 .. 3.9, MIDI 72
    assert notes == pytest.approx(np.array([[1.5, 1.82, 60], [2.3, 2.46, 55], [3.5, 3.9, 72]]), abs=1e-12)


def test_parse_latin1_and_crlf(tmp_path):
    text = SONG.replace("\ufeff", "").replace("Ça", "Café").replace("\n", "\r\n")
    header, notes = parse_ultrastar(_write(tmp_path / "song.txt", text, "latin-1"))
    assert header["TITLE"] == "Café va" and notes.shape == (3, 3)


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.replace("#BPM:187,5\n", ""), "no #BPM"),
    (lambda s: s.replace("#GAP:1500", "#GAP:soon"), "#GAP"),
    (lambda s: s.replace("#BPM:187,5", "#BPM:0"), "#BPM must be positive"),
    (lambda s: s.replace("#GAP:1500", "#GAP:1500\n#RELATIVE:yes"), "RELATIVE"),
    (lambda s: s.replace("* 10 2 -5", "* 10 two -5"), "line 6: cannot parse"),
    (lambda s: s.replace("* 10 2 -5", "* 10 -2 -5"), "line 6: negative note length"),
    (lambda s: s.replace(": 25 5 12", ": 5 5 12"), "line 11: note at beat 5 starts before"),
    (lambda s: s.replace(": 25 5 12", ": 25 5 90"), "outside MIDI"),
    (lambda s: "#BPM:300\n#GAP:0\nF 1 2 3 x\nE\n", "no pitched note"),
])
def test_bad_file_names_it(tmp_path, edit, words):
    path = _write(tmp_path / "bad song.txt", edit(SONG))
    with pytest.raises(InputError) as e:
        parse_ultrastar(path)
    assert str(e.value).startswith(str(path) + ": ") and words in str(e.value) and "\n" not in str(e.value)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read UltraStar file"):
        parse_ultrastar(tmp_path / "absent.txt")


def test_note_f0_edges():
    notes = np.array([[0.015, 0.035, 69.0], [0.035, 0.05, 81.0], [0.07, 0.08, 57.0]])
    times = grid.frame_times(8)                           # 0.01 .. 0.08
    # start on a grid time is inside (0.07), end on a grid time is outside (0.05, 0.08)
    assert note_f0(notes, times) == pytest.approx([0, 440, 440, 880, 0, 0, 220, 0])
    moved = shift_notes(notes, offset_s=0.01, octave=-1)
    assert moved[:, :2] == pytest.approx(notes[:, :2] + 0.01) and moved[:, 2] == pytest.approx(notes[:, 2] - 12)
    assert note_f0(moved, times) == pytest.approx([0, 0, 220, 220, 440, 0, 0, 110])


# ---------------------------------------------------------------------------------------------- gap mask

def test_note_gap_mask_hand_case():
    # gaps: 0.60-0.80 (0.2 s: out), 1.00-1.50 (0.5 s: kept), 1.70-1.99 (0.29 s: out), 2.20-2.50 (0.30 s: kept)
    notes = np.array([[0.30, 0.60, 69], [0.80, 1.00, 57], [1.50, 1.70, 69], [1.99, 2.20, 64], [2.50, 2.60, 69]])
    times = grid.frame_times(300)                                   # 0.01 .. 3.00
    mask = note_gap_mask(times, note_f0(notes, times))
    assert mask.dtype == bool and mask.shape == times.shape
    i = lambda t: round(t * 100) - 1                                # noqa: E731  grid index of time t
    want = np.zeros(300, bool)
    want[i(0.60):i(0.80)] = True                                    # 20 frames: 0.60 .. 0.79
    want[i(1.70):i(1.99)] = True                                    # 29 frames: 1.70 .. 1.98
    assert np.array_equal(mask, want) and mask.sum() == 49
    assert not mask[:i(0.30)].any() and not mask[i(2.60):].any()    # before the first / after the last note: kept
    assert note_gap_mask(times, note_f0(notes, times), max_gap_s=0.6)[i(1.0):i(1.5)].all()   # 0.5 s < 0.6 s
    assert not note_gap_mask(times, np.zeros(300)).any()            # no note, no gap
    with pytest.raises(InputError, match="300 times but 299 f0"):
        note_gap_mask(times, np.zeros(299))
    with pytest.raises(ValueError, match="positive"):
        note_gap_mask(times, np.zeros(300), max_gap_s=0)


def test_scoring_excludes_short_gaps_only():
    # unvoiced 0-2 | voiced 3-12 | short gap 13-17 (0.05 s) | voiced 18-27 | long gap 28-67 (0.4 s) | voiced 68-69
    t = grid.frame_times(70)           # from 0.01: mir_eval adds a frame at t = 0 copying frame 0 (unvoiced, kept)
    ref = np.zeros(70)
    ref[3:13] = ref[18:28] = ref[68:] = 220.0
    mask = note_gap_mask(t, ref)
    assert np.flatnonzero(mask).tolist() == list(range(13, 18))
    short, long_ = ref.copy(), ref.copy()
    short[13:18] = 220.0                                            # voices the short gap
    long_[28:68] = 220.0                                            # voices the long gap
    score = lambda est, ex: melody_scores(t, ref, t, est, metrics=ALL_METRICS, cent_tolerance=100,  # noqa: E731
                                          exclude=mask if ex else None)
    perfect = dict.fromkeys(ALL_METRICS, 100.0) | {"VFA": 0.0}
    assert score(short, True) == pytest.approx(perfect)             # the short gap costs nothing
    assert score(ref, True) == pytest.approx(perfect)
    # 22 voiced + (3 + 1 inserted + 40) unvoiced frames scored; voicing the long gap: 40 false alarms
    assert score(long_, True) == pytest.approx(perfect | {"VFA": 100 * 40 / 44, "OA": 100 * 26 / 66,
                                                          "OAc": 100 * 26 / 66})
    # as written (no exclusion) the short gap is 5 false alarms out of 49 unvoiced frames
    assert score(short, False) == pytest.approx(perfect | {"VFA": 100 * 5 / 49, "OA": 100 * 66 / 71,
                                                           "OAc": 100 * 66 / 71})
    import mir_eval                                                 # = mir_eval on the grid without those frames

    me = mir_eval.melody.evaluate(t[~mask], ref[~mask], t[~mask], long_[~mask], cent_tolerance=100)
    got = score(long_, True)
    assert [got[m] for m in METRICS] == pytest.approx([100 * me[k] for k in (
        "Voicing Recall", "Voicing False Alarm", "Raw Pitch Accuracy", "Raw Chroma Accuracy", "Overall Accuracy")])
    with pytest.raises(ValueError, match="boolean array with one entry per reference frame"):
        melody_scores(t, ref, t, ref, exclude=mask[1:])
    with pytest.raises(ValueError, match="boolean array"):
        melody_scores(t, ref, t, ref, exclude=mask.astype(int))
    with pytest.raises(InputError, match="every reference frame is excluded"):
        melody_scores(t, ref, t, ref, exclude=np.ones(70, bool))


# ---------------------------------------------------------------------------------------------- resolution

TRUE_NOTES = np.array([[0.30, 0.70, 57], [0.95, 1.25, 64], [1.50, 2.00, 60], [2.30, 2.60, 67],
                       [2.90, 3.40, 62], [3.70, 4.00, 69], [4.30, 4.80, 59], [5.10, 5.50, 65]], dtype=float)


def _sing(notes, duration=6.0, seed=0) -> np.ndarray:
    """Harmonic tones (8 partials, amplitude 1/h) at the note pitches over faint noise, 8 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration * SR)) / SR
    y = 0.003 * rng.standard_normal(t.size)
    for start, end, midi in notes:
        on = (t >= start) & (t < end)
        f0 = ultrastar.midi_to_hz(midi)
        y[on] += sum(np.sin(2 * np.pi * h * f0 * t[on]) / h for h in range(1, 9)) * 0.2
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def sung():
    from hkdsme.pipeline.cfp import cfp

    audio = _sing(TRUE_NOTES)
    return audio, cfp(audio)


# The frames of a note [s, e) on the 10 ms grid are centred 5 ms before (s + e) / 2, so the score is symmetric
# about the true offset + 5 ms: +0.10 and +0.11 s score alike (0.8951 vs 0.8950 here). One frame of tolerance.
FRAME = grid.FRAME_PERIOD + 1e-9


def test_resolver_recovers_known_shift(sung):
    audio, feats = sung
    written = shift_notes(TRUE_NOTES, offset_s=-0.10, octave=-1)    # early by 0.1 s, an octave low
    r = resolve_offset_octave(written, audio)
    assert r.octave == 1 and r.offset_s == pytest.approx(0.10, abs=FRAME)
    assert -2 not in r.octave_scores                                # 55 Hz / 2 would leave the CFP's range
    assert r.score > max(v for k, v in r.octave_scores.items() if k != 1) + 0.2
    same = resolve_offset_octave(written, feats)                    # CFP input gives the same answer
    assert (same.offset_s, same.octave, same.score) == (r.offset_s, r.octave, pytest.approx(r.score))
    exact = resolve_offset_octave(TRUE_NOTES, feats)                # correct notes: no change
    assert exact.octave == 0 and exact.offset_s == pytest.approx(0.0, abs=FRAME)


def test_resolver_ties_go_to_octave_zero(sung):
    _, feats = sung
    silent = np.zeros_like(feats)                                   # every score 0: nothing to prefer
    r = resolve_offset_octave(TRUE_NOTES, silent)
    assert (r.offset_s, r.octave) == (0.0, 0)


def test_resolver_refuses_bad_input(sung):
    _, feats = sung
    with pytest.raises(ValueError, match="no note covers"):
        resolve_offset_octave(TRUE_NOTES + [100.0, 100.0, 0.0], feats)
    with pytest.raises(ValueError, match="outside 31"):
        resolve_offset_octave(np.array([[0.3, 0.7, 20.0]]), feats, octaves=(0, -1))
    with pytest.raises(ValueError, match="shape"):
        resolve_offset_octave(TRUE_NOTES, feats[:2])


# ---------------------------------------------------------------------------------------------- OAc metric

def test_oac_hand_case():
    t = 0.01 * np.arange(10)      # from 0: mir_eval adds an unvoiced frame at t = 0 to series that start later
    ref = np.array([0, 0, 220, 220, 220, 220, 220, 220, 0, 0], float)
    # 0 ok unvoiced | 1 false alarm | 2-3 right | 4-5 octave error | 6 +150.6 cents | 7 missed | 8-9 ok unvoiced
    est = np.array([0, 300, 220, 220, 440, 440, 240, 0, 0, 0], float)
    s = melody_scores(t, ref, t, est, metrics=ALL_METRICS)
    assert list(s) == list(ALL_METRICS)
    assert s == pytest.approx({"VR": 100 * 5 / 6, "VFA": 100 * 1 / 4, "RPA": 100 * 2 / 6, "RCA": 100 * 4 / 6,
                               "OA": 100 * 5 / 10, "OAc": 100 * 7 / 10})   # octave error: right in OAc only
    wide = melody_scores(t, ref, t, est, metrics=ALL_METRICS, cent_tolerance=200)  # frame 6 now counts
    assert (wide["RPA"], wide["OA"], wide["OAc"]) == pytest.approx((100 * 3 / 6, 60.0, 80.0))
    import mir_eval

    me = mir_eval.melody.evaluate(t, ref, t, est, cent_tolerance=200)
    assert wide["OA"] == pytest.approx(100 * me["Overall Accuracy"])
    assert list(melody_scores(t, ref, t, est)) == list(METRICS)      # default: the literature's five
    with pytest.raises(ValueError, match="unknown metric"):
        melody_scores(t, ref, t, est, metrics=("OAx",))
    with pytest.raises(ValueError, match="positive"):
        melody_scores(t, ref, t, est, cent_tolerance=0)


# ---------------------------------------------------------------------------------------------- adapter

def _fake_dataset(root: Path, songs: dict[str, np.ndarray | None], splits: dict) -> Path:
    """``songs/<name>/{audio.ogg,song.txt}``; ``None`` audio = a song without a mix (instrumental only)."""
    for name, audio in songs.items():
        d = root / "songs" / name
        d.mkdir(parents=True)
        # notes written 0.1 s early and an octave low: BPM 300 → 0.05 s per beat, GAP 200 ms (all exact)
        beats = [(round((s - 0.1 - 0.2) / 0.05), round((e - s) / 0.05), int(m) - 12 - 60) for s, e, m in TRUE_NOTES]
        _write(d / "song.txt", "#TITLE:x\n#BPM:300\n#GAP:200\n"
               + "".join(f": {b} {n} {p} la\n" for b, n, p in beats) + "E\n")
        if audio is not None:
            sf.write(d / "audio.ogg", audio, SR, format="OGG", subtype="VORBIS")
    (root / "splits.json").write_text(json.dumps(splits))
    return root


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory, sung):
    audio, _ = sung
    root = tmp_path_factory.mktemp("ultrastar-cc")
    return _fake_dataset(root, {"A - dev": audio, "B - train": audio[::-1].copy(), "C - train": audio,
                                "D - instrumental": None},
                         {"dev": ["A - dev"], "train": ["B - train", "C - train"],
                          "instrumental_only": ["D - instrumental"]})


def test_adapter_split_mapping(fake_root):
    ids = lambda split: [t.track_id for t in list_tracks("ultrastar", fake_root, split=split)]  # noqa: E731
    assert ids("validation") == ["A - dev"]                       # splits.json "dev"
    assert ids("train") == ["B - train", "C - train"]
    assert ids(None) == ["A - dev", "B - train", "C - train"]     # every song with a mix and notes
    tr = list_tracks("ultrastar", fake_root, split="validation")[0]
    assert tr.dataset == "ultrastar" and tr.audio_path == fake_root / "songs" / "A - dev" / "audio.ogg"
    assert tr.label_path == fake_root / "songs" / "A - dev" / "song.txt"
    assert track_list_name("ultrastar", "validation") == "split 'validation' (splits.json 'dev')"
    with pytest.raises(ValueError, match="no 'test' split"):
        list_tracks("ultrastar", fake_root, split="test")


def test_adapter_bad_splits(tmp_path, sung):
    root = _fake_dataset(tmp_path / "r", {"A": sung[0]}, {"dev": ["A", "Zed"], "train": []})
    with pytest.raises(InputError, match=r"splits\.json: split 'validation' lists song\(s\) without .*Zed"):
        list_tracks("ultrastar", root, split="validation")
    (root / "splits.json").unlink()
    with pytest.raises(InputError, match=r"splits\.json: cannot read"):
        list_tracks("ultrastar", root, split="train")
    with pytest.raises(InputError, match="no <song>/audio.ogg"):
        list_tracks("ultrastar", tmp_path / "r" / "songs")


def test_adapter_load_f0_resolved_once(fake_root, monkeypatch):
    ultrastar._RESOLVED.clear()
    calls = []
    real = ultrastar.resolve_offset_octave
    monkeypatch.setattr(ultrastar, "resolve_offset_octave", lambda *a, **k: calls.append(1) or real(*a, **k))
    tr = list_tracks("ultrastar", fake_root, split="validation")[0]
    times, f0 = tr.load_f0()
    n = grid.n_frames(len(tr.load_audio()))
    assert times == pytest.approx(grid.frame_times(n))              # the whole audio's 10 ms grid
    res = ultrastar.resolve_track(tr)
    assert res.octave == 1 and res.offset_s == pytest.approx(0.10, abs=FRAME)
    written = parse_ultrastar(tr.label_path)[1]
    assert written == pytest.approx(shift_notes(TRUE_NOTES, -0.1, -1))
    assert f0 == pytest.approx(note_f0(shift_notes(written, res.offset_s, 1), times))   # offset and octave applied
    assert np.mean(f0 == note_f0(TRUE_NOTES, times)) > 0.97          # = the true notes up to one frame per edge
    tr.load_f0()
    assert len(calls) == 1                                          # resolved once per process


# ---------------------------------------------------------------------------------------------- report

@pytest.fixture(scope="module")
def student(tmp_path_factory):
    import torch

    from hkdsme.model.checkpoint import save_checkpoint
    from hkdsme.model.student import MSNet

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "s.pt", MSNet(), kind="student", config={},
                           feature_hash=grid.feature_hash())


def test_report_scores_oac_at_100_cents(fake_root, student, tmp_path):
    from hkdsme.evaluate.cli import main
    from hkdsme.evaluate.inference import Predictor

    out = tmp_path / "rep"
    args = ["report", "--checkpoint", str(student), "--dataset", "ultrastar", "--root", str(fake_root),
            "--split", "validation", "--out", str(out), "--no-plots"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["cent_tolerance"] == 100.0 and rep["metrics"] == list(ALL_METRICS)
    align = rep["alignment"]["A - dev"]
    assert align["octave"] == 1 and align["offset_s"] == pytest.approx(0.1, abs=FRAME)
    tr = list_tracks("ultrastar", fake_root, split="validation")[0]
    ref, est = tr.load_f0(), Predictor(student).predict_audio(tr.load_audio())
    mask = note_gap_mask(*ref)
    assert mask.sum() == 50                        # TRUE_NOTES' gaps 0.70-0.95 and 1.25-1.50; the 0.30 s ones stay
    want = melody_scores(*ref, *est, cent_tolerance=100, metrics=ALL_METRICS, exclude=mask)
    assert rep["checkpoints"]["s"]["per_track"]["A - dev"] == pytest.approx(want, abs=1e-9)
    assert rep["excluded"] == {"A - dev": pytest.approx(50 / len(mask))}
    md = (out / "report.md").read_text()
    assert "- cent tolerance: 100 cents" in md and "| checkpoint | kind | VR | VFA | RPA | RCA | OA | OAc |" in md
    assert "- note gaps: frames in gaps shorter than 0.3 s between consecutive notes excluded" in md
    assert "real-mix dev score = mean OAc" in md and "shorter than 0.3 s excluded: the OAc column below" in md
    runner_up = max(v for k, v in align["octave_scores"].items() if k != "1")
    assert (f"| A - dev | {align['offset_s']:+.2f} | +1 | {align['score']:.2f} ({runner_up:.2f}) | "
            f"{100 * 50 / len(mask):.2f} |") in md

    r = CliRunner().invoke(main, args + ["--keep-note-gaps", "--out", str(tmp_path / "keep")])
    assert r.exit_code == 0, r.output
    keep = json.loads((tmp_path / "keep" / "report.json").read_text())
    assert keep["checkpoints"]["s"]["per_track"]["A - dev"] == pytest.approx(
        melody_scores(*ref, *est, cent_tolerance=100, metrics=ALL_METRICS), abs=1e-9)
    assert keep["excluded"] == {} and keep["note_gaps"] == "scored as unvoiced"
    assert "(--keep-note-gaps), so its OAc is NOT that score" in (tmp_path / "keep" / "report.md").read_text()

    r = CliRunner().invoke(main, args + ["--cent-tolerance", "50", "--out", str(tmp_path / "rep50")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep50" / "report.md").read_text()
    assert "- cent tolerance: 50 cents" in md and "is NOT that score" in md


def test_report_dev_score_needs_every_dev_song(tmp_path, sung, student):
    root = _fake_dataset(tmp_path / "r", {"A": sung[0], "B": sung[0]}, {"dev": ["A", "B"], "train": []})
    bad = root / "songs" / "B" / "song.txt"
    bad.write_text("#BPM:300\n: 0 4 x la\n")
    rep = run_report([student], "ultrastar", root, split="validation", out_dir=tmp_path / "out", plots=False,
                     progress=False)
    assert rep["n_scored"] == 1 and rep["failed"] == {"B": f"{bad}: line 2: cannot parse note line ': 0 4 x la' "
                                                               "(expected ': beat length pitch syllable')"}
    assert "a dev song failed" in rep["dev_score"] and "NOT that score" in rep["dev_score"]
