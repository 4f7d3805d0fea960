"""Weak labels from karaoke notes and a teacher posterior: the refinement rule on hand-built posteriors, a
vibrato voice whose sung pitch the labels recover from a note staircase, bad input, the ``--labels`` route of the
ultrastar adapter and the ``hkd-prep weak-labels`` command end to end."""
import numpy as np
import pytest
from click.testing import CliRunner

from hkdsme.pipeline import grid
from hkdsme.pipeline.weak_labels import posteriors, refine_notes
from test_ultrastar import _fake_dataset, _sing, TRUE_NOTES   # noqa: F401  (fixtures' helpers)


def _row(hz):
    return grid.BINS_PER_OCTAVE * np.log2(hz / grid.FMIN)


def _posterior(t, peaks, voicing):
    """(321, t) posterior: ``voicing[i]`` of the mass on row ``peaks[i]``, the rest on row 0."""
    p = np.zeros((grid.N_BINS, t))
    for i, (k, v) in enumerate(zip(peaks, voicing)):
        p[int(k), i] += v
        p[0, i] += 1.0 - v
    return p


def test_refine_hand_case():
    a4 = 440.0
    k = int(round(_row(a4)))                        # 440 Hz is row 191.7 → 192 (+6 cents)
    note = np.zeros(20)
    note[2:8] = a4                                  # note 1: frames 2..7
    note[10:14] = a4                                # note 2 after a 20 ms gap (frames 8, 9)
    note[16:18] = a4                                # note 3 after a 20 ms gap (frames 14, 15)
    peaks = [k] * 20
    peaks[3] = k + 4                                # +80 cents: inside the 100-cent window → the teacher's row
    peaks[4] = k + 6                                # +120 cents: outside → the written note
    peaks[5] = k + 60                               # an octave up → the written note
    peaks[8], peaks[9] = k + 2, k + 2               # gap 1: voiced teacher near the note → voiced at its row
    peaks[14], peaks[15] = k + 2, k + 30            # gap 2: frame 14 quiet teacher, frame 15 far from both notes
    voicing = np.full(20, 0.9)
    voicing[14] = 0.4
    voicing[0] = 0.99                               # before the first note: unvoiced whatever the teacher says
    p = _posterior(20, peaks, voicing)
    f0, conf = refine_notes(note, p)
    want = np.zeros(20)
    want[[2, 6, 7, 10, 11, 12, 13, 16, 17]] = grid.bin_to_hz(k)
    want[3] = grid.bin_to_hz(k + 4)
    want[[4, 5]] = a4
    want[[8, 9]] = grid.bin_to_hz(k + 2)
    assert f0 == pytest.approx(want)
    # confidence: the window's posterior mass on note frames, the teacher's voicing on gap frames, 0 elsewhere
    assert conf[[2, 3, 4, 5]] == pytest.approx([0.9, 0.9, 0.0, 0.0])
    assert conf[[8, 14, 15]] == pytest.approx([0.9, 0.4, 0.9]) and conf[0] == 0.0
    # a narrower window keeps the written note at +80 cents too; a wider gap limit changes nothing here
    f0_narrow, _ = refine_notes(note, p, window_cents=50)
    assert f0_narrow[3] == pytest.approx(a4)


def test_refine_long_gap_stays_unvoiced():
    note = np.zeros(60)
    note[:10] = 220.0
    note[50:] = 220.0                               # a 0.4 s rest: not a short gap
    k = int(round(_row(220.0)))
    f0, _ = refine_notes(note, _posterior(60, [k] * 60, np.full(60, 0.95)))
    assert (f0[10:50] == 0).all() and (f0[:10] > 0).all() and (f0[50:] > 0).all()


def test_refine_recovers_sung_pitch_from_a_staircase():
    """A voice with vibrato (±40 cents at 5.5 Hz) and a 30-cent sharp tuning, written as flat notes: an oracle
    teacher's posterior turns the staircase back into the sung pitch (within one 20-cent bin); the notes
    alone are 30–70 cents off."""
    t = grid.frame_times(300)
    written = np.where(t < 1.5, 220.0, 246.94)
    sung = written * 2 ** ((30 + 40 * np.sin(2 * np.pi * 5.5 * t)) / 1200)
    p = _posterior(300, np.rint(_row(sung)).astype(int), np.full(300, 0.8))
    f0, _ = refine_notes(written, p)
    cents = np.abs(1200 * np.log2(f0 / sung))
    assert cents.max() <= 10.0 + 1e-6                        # half a bin: the label is the sung pitch's bin
    assert np.abs(1200 * np.log2(written / sung)).mean() > 30


@pytest.mark.parametrize("bad, match", [
    (dict(probs=np.ones((320, 5))), r"expected a \(321, 5\) posterior"),
    (dict(probs=np.full((321, 5), np.nan)), "finite"),
    (dict(probs=-np.ones((321, 5))), "non-negative"),
    (dict(window_cents=0.0), "window_cents"),
])
def test_refine_refuses_bad_input(bad, match):
    args = dict(note_f0=np.full(5, 220.0), probs=np.full((321, 5), 1 / 321))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        refine_notes(**args)


def test_posteriors_match_the_network_per_segment():
    import torch

    from hkdsme.model.student import MSNet

    torch.manual_seed(0)
    net = MSNet(heads=False).eval()
    feats = np.random.default_rng(0).random((3, grid.N_FREQ, 100), dtype=np.float32)
    p = posteriors(net, feats, batch=1)
    assert p.shape == (grid.N_BINS, 100) and np.allclose(p.sum(0), 1, atol=1e-5)
    x = np.zeros((1, 3, grid.N_FREQ, 64), np.float32)
    x[0, :, :, :36] = feats[:, :, 64:]
    with torch.inference_mode():
        want = torch.softmax(net(torch.from_numpy(x)).logits[0, 0], 0).numpy()
    assert p[:, 64:] == pytest.approx(want[:, :36], abs=1e-6)     # the zero-padded tail segment


def test_weak_labels_command_and_adapter(tmp_path):
    import torch

    from hkdsme.model.checkpoint import save_checkpoint
    from hkdsme.model.student import MSNet
    from hkdsme.pipeline.cli import main
    from hkdsme.pipeline.datasets import list_tracks
    from hkdsme.pipeline.errors import InputError
    from hkdsme.pipeline.f0_tracker import read_f0_csv

    audio = _sing(TRUE_NOTES)
    root = _fake_dataset(tmp_path / "us", {"A": audio, "B": audio}, {"dev": ["A"], "train": ["B"]})
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "t.pt", MSNet(), kind="student", config={}, feature_hash=grid.feature_hash())
    out = tmp_path / "weak"
    r = CliRunner().invoke(main, ["weak-labels", "--root", str(root), "--teacher", f"{ck}*0.5+{ck}*0.5",
                                  "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "1 songs labeled, 0 failed" in r.output and "B: offset +0.10 s, octave +1" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["B.f0.csv"]          # the train split only
    t, f, _ = read_f0_csv(out / "B.f0.csv")
    notes = list_tracks("ultrastar", root, split="train")[0].load_f0()[1]
    assert t == pytest.approx(grid.frame_times(t.size))
    # an untrained teacher hears nothing: every note frame keeps a label within the window of its note
    on = notes > 0
    assert (f[on] > 0).all() and np.abs(1200 * np.log2(f[on] / notes[on])).max() <= 100 + 1e-6
    tr = list_tracks("ultrastar", root, split="train", labels=out)[0]
    assert tr.label_path == out / "B.f0.csv"
    assert tr.load_f0()[1] == pytest.approx(f)                             # the adapter reads the weak labels
    with pytest.raises(InputError, match="weak-label folder"):
        list_tracks("ultrastar", root, split="train", labels=tmp_path / "nowhere")
    r = CliRunner().invoke(main, ["weak-labels", "--root", str(root), "--split", "validation", "--teacher", str(ck),
                                  "--out", str(out)])
    assert r.exit_code != 0 and "'validation' is not" in r.output                     # dev songs: selection only
    r = CliRunner().invoke(main, ["weak-labels", "--root", str(root), "--teacher", str(tmp_path / "none.pt"),
                                  "--out", str(out)])
    assert r.exit_code == 1 and "none.pt" in r.output
