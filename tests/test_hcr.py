"""HCR pseudo-label selection: constructed outputs in both modes, threshold edges, masks, official reference."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hkdsme.train.hcr import consistent_frames, select_segments

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "hkdsme"
ASSETS = Path(__file__).resolve().parent / "assets"      # committed slice of REF (tests/assets/README.md)


def peaks(rows):
    """Logits (N, 4, 321, T) with one peak per (segment, channel, frame); ``rows`` (N, T, 3) = (mel, harm, sub)."""
    rows = np.asarray(rows)
    n, t_len, _ = rows.shape
    g = np.random.default_rng(0)
    x = g.normal(size=(n, 4, 321, t_len)).astype(np.float32)
    for i in range(n):
        for t in range(t_len):
            for c in range(3):
                x[i, c, rows[i, t, c], t] = 10.0
    return x


# (melody, harmonic, sub) argmax rows and whether the frame is consistent (faithful, default)
FRAMES = [
    ((100, 160, 40), True, True),     # ordinary consistent frame
    ((100, 161, 40), False, False),   # harmonic off by one
    ((100, 160, 41), False, False),   # sub-harmonic off by one
    ((0, 60, 0), False, False),       # unvoiced melody: never consistent
    ((0, 0, 0), False, False),        # unvoiced, "none" everywhere: still never consistent
    ((60, 120, 0), True, True),       # k = 60: no sub-harmonic row, row 0 accepted by both
    ((260, 320, 200), True, True),    # highest k with a harmonic row
    ((280, 0, 220), False, True),     # k + 60 > 320: default wants harmonic row 0; official can never accept
    ((30, 90, 0), False, True),       # k - 60 < 1: default wants sub row 0; official needs sub + 60 == 30
    ((160, 160, 100), False, False),  # octave error
]


@pytest.mark.parametrize("faithful", [True, False])
def test_consistent_frames_constructed(faithful):
    x = peaks([[f[0] for f in FRAMES]])
    want = np.array([[f[1] if faithful else f[2] for f in FRAMES]])
    got = consistent_frames(x, faithful=faithful)
    assert isinstance(got, np.ndarray) and got.dtype == bool
    assert np.array_equal(got, want)
    got_t = consistent_frames(torch.from_numpy(x), faithful=faithful)      # torch in -> torch out
    assert isinstance(got_t, torch.Tensor) and np.array_equal(got_t.numpy(), want)
    # probs give the same answer as logits
    probs = torch.softmax(torch.from_numpy(x), dim=2)
    assert np.array_equal(consistent_frames(probs, faithful=faithful).numpy(), want)


@pytest.mark.parametrize("faithful", [True, False])
def test_tolerance_accepts_near_octaves_only(faithful):
    frames = [(100, 160, 40), (100, 162, 40), (100, 160, 38), (100, 163, 40), (100, 160, 37),
              (0, 62, 0), (160, 162, 100)]
    x = peaks([frames])
    want_2 = [True, True, True, False, False, False, False]        # off by ≤ 2 bins in each channel
    assert consistent_frames(x, faithful=faithful, tolerance=2)[0].tolist() == want_2
    assert consistent_frames(x, faithful=faithful, tolerance=0)[0].tolist() == [True] + [False] * 6
    assert select_segments(x, threshold=3 / 7, faithful=False, tolerance=2).tolist() == [True]
    assert select_segments(x, threshold=3 / 7, faithful=False, tolerance=0).tolist() == [False]
    with pytest.raises(ValueError, match="tolerance"):
        consistent_frames(x, tolerance=-1)


def segments_with(counts, t_len=64):
    """One segment per count: ``count`` consistent frames first, the rest inconsistent (harmonic off by one)."""
    rows = [[(100, 160, 40) if t < c else (100, 161, 40) for t in range(t_len)] for c in counts]
    return peaks(rows)


def test_threshold_edge_both_modes():
    x = segments_with([48, 49, 64, 0])
    assert consistent_frames(x).sum(1).tolist() == [48, 49, 64, 0]
    assert select_segments(x, faithful=True).tolist() == [False, True, True, False]    # official: > 48
    assert select_segments(x).tolist() == [True, True, True, False]                    # default: >= 48
    assert select_segments(x, threshold=0.0).tolist() == [True] * 4
    assert select_segments(x, threshold=1.0).tolist() == [False, False, True, False]


def test_all_unvoiced_never_kept():
    x = peaks([[(0, 60, 0)] * 64, [(0, 0, 0)] * 64])
    for faithful in (True, False):
        assert consistent_frames(x, faithful=faithful).sum() == 0
        assert not select_segments(x, faithful=faithful).any()


def test_mask_excludes_padding():
    # 40 valid frames; padded tail of 24 frames is consistent but must not count
    rows30 = [(100, 160, 40)] * 30 + [(100, 161, 40)] * 10 + [(100, 160, 40)] * 24
    rows29 = [(100, 160, 40)] * 29 + [(100, 161, 40)] * 11 + [(100, 160, 40)] * 24
    x = peaks([rows30, rows29, rows30])
    mask = np.zeros((3, 64), bool)
    mask[:, :40] = True
    mask[2] = False                                                   # a segment with no valid frame
    assert select_segments(x).tolist() == [True, True, True]         # without a mask the padding counts
    keep = select_segments(x, mask=mask)                              # 30/40 = 0.75 kept, 29/40 not
    assert keep.tolist() == [True, False, False]
    keep_t = select_segments(torch.from_numpy(x), mask=torch.from_numpy(mask))
    assert keep_t.tolist() == [True, False, False]
    # faithful counts only valid frames but keeps the official 0.75·T = 48 bar
    assert select_segments(x, mask=mask, faithful=True).tolist() == [False, False, False]


def test_bad_input():
    x = segments_with([10])
    with pytest.raises(ValueError):
        consistent_frames(x[:, :, :320])
    with pytest.raises(ValueError):
        consistent_frames(x[0])
    with pytest.raises(ValueError):
        select_segments(x, threshold=1.5)
    with pytest.raises(ValueError):
        select_segments(x, mask=np.ones((1, 63), bool))


def test_official_selection_of_the_reference_plan():
    """The reference's per-frame plan (committed): peaks at its rows give the official counts and kept segments."""
    ref = json.loads((ASSETS / "hcr_selection.json").read_text())
    plan = ref["per_frame_plan_rows_melody_harm_sub_kind"]
    x = peaks([[row[:3] for row in seg] for seg in plan])
    assert consistent_frames(x, faithful=True).sum(1).tolist() == ref["measured_consistent_counts"] == [64, 48, 49]
    assert np.flatnonzero(select_segments(x, faithful=True)).tolist() == ref["official_block_kept_segments"] == [0, 2]
    kinds = np.array([[kind == "consistent" for *_, kind in seg] for seg in plan])
    assert np.array_equal(consistent_frames(x, faithful=True), kinds)


def test_reference_selection():
    if not (REF / "hcr_selection.json").exists():
        pytest.skip("shared reference vectors absent")
    ref = json.loads((REF / "hcr_selection.json").read_text())
    x = np.load(REF / "hcr_student_output.npy")
    counts = consistent_frames(x, faithful=True).sum(1)
    assert counts.tolist() == ref["measured_consistent_counts"] == [64, 48, 49]
    assert np.flatnonzero(select_segments(x, faithful=True)).tolist() == ref["official_block_kept_segments"]
    # the default rule agrees frame by frame here (no k > 260 or k < 60 in the plan) but keeps 48/64
    assert np.array_equal(consistent_frames(x), consistent_frames(x, faithful=True))
    assert select_segments(x).tolist() == [True, True, True]
    # per-frame plan of the reference: "consistent" frames are exactly ours
    plan = np.array([[kind == "consistent" for *_, kind in seg] for seg in ref["per_frame_plan_rows_melody_harm_sub_kind"]])
    assert np.array_equal(consistent_frames(x, faithful=True), plan)


def test_pseudo_label_quality_hand_computed():
    """Two labeled segments and one without labels, T = 4; melody rows by construction, scores by hand."""
    from hkdsme.train.hcr import PseudoLabelQuality

    T = 4
    m_rows = np.array([[10, 20, 0, 30], [50, 0, 0, 70], [5, 5, 5, 5]])
    probs = torch.zeros(3, 4, 321, T)
    probs[torch.arange(3)[:, None], 0, torch.from_numpy(m_rows), torch.arange(T)] = 1.0
    gt = torch.tensor([[11, 25, 0, 30], [50, 40, 0, 0], [0, 0, 0, 0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True], [True] * 4])
    q = PseudoLabelQuality()
    q.add(probs, np.array([True, False, True]), np.array([True, True, False]), gt, mask)
    s = PseudoLabelQuality.summary([q.c])
    # kept labeled = segment 0 only: valid voiced truth frames 0, 1 (frame 3 padded); right: frame 0 (|10-11| <= 2)
    assert s["hcr_melody_acc_kept"] == pytest.approx(50.0)
    # voicing on its 3 valid frames: voiced/voiced, voiced/voiced, unvoiced/unvoiced -> all agree
    assert s["hcr_voicing_agree_kept"] == pytest.approx(100.0)
    # all labeled: voiced frames 0,1 (seg 0) + 0,1 (seg 1); right: seg0 f0, seg1 f0 -> 2 of 4
    assert s["hcr_melody_acc_all"] == pytest.approx(50.0)
    assert (s["hcr_kept_withheld_part"], s["hcr_total_withheld_part"]) == (1, 2)
    assert (s["hcr_kept_unlabeled_part"], s["hcr_total_unlabeled_part"]) == (1, 1)
    # two ranks' counts add up; nothing labeled -> accuracies undefined (None, JSON null)
    s2 = PseudoLabelQuality.summary([q.c, q.c])
    assert s2["hcr_total_withheld_part"] == 4 and s2["hcr_melody_acc_kept"] == pytest.approx(50.0)
    empty = PseudoLabelQuality.summary([PseudoLabelQuality().c])
    assert empty["hcr_melody_acc_kept"] is None and "n/a" not in PseudoLabelQuality.describe(empty)
