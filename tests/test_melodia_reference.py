"""experiments/mir1k/melodia_reference.py: the plain / robust table on hand-made contours."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "experiments" / "mir1k" / "melodia_reference.py"
_spec = importlib.util.spec_from_file_location("melodia_reference", _PATH)
mr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mr)

T = np.arange(100) * 0.01
VOICED_HALF = np.where(T < 0.5, 220.0, 0.0)          # 50 voiced frames, then 50 unvoiced


def test_table_scores_each_system_on_each_set_and_the_drop():
    clips = [("plain", "a", None, (T, VOICED_HALF)), ("robust", "a__aug0", None, (T, VOICED_HALF)),
             ("robust", "a__aug1", None, (T, VOICED_HALF))]
    perfect = {tid: (T, VOICED_HALF) for _, tid, _, _ in clips}
    # silent on the robust variants only: every voiced frame missed, every unvoiced one right -> OA 50
    mixed = dict(perfect, **{tid: (T, np.zeros_like(T)) for s, tid, _, _ in clips if s == "robust"})
    md, res = mr.table(clips, {"oracle": perfect, "deaf on robust": mixed})
    assert res["oracle/plain"]["OA"] == pytest.approx(100) and res["oracle/robust"]["OA"] == pytest.approx(100)
    assert res["deaf on robust/plain"]["OA"] == pytest.approx(100)
    assert res["deaf on robust/robust"]["OA"] == pytest.approx(50)
    assert res["deaf on robust/robust"]["VR"] == pytest.approx(0) and res["deaf on robust/robust"]["VFA"] == 0
    assert "| deaf on robust | 100.00 | 50.00 | 50.00 |" in md
    assert "| oracle | 100.00 | 100.00 | 0.00 |" in md


def test_an_octave_error_counts_against_pitch_not_voicing():
    clips = [("plain", "a", None, (T, VOICED_HALF)), ("robust", "b", None, (T, VOICED_HALF))]
    octave = {tid: (T, VOICED_HALF * 2) for _, tid, _, _ in clips}
    _, res = mr.table(clips, {"octave": octave})
    m = res["octave/plain"]
    assert m["VR"] == pytest.approx(100) and m["RPA"] == pytest.approx(0) and m["RCA"] == pytest.approx(100)
    assert m["OA"] == pytest.approx(50)             # unvoiced half right, voiced half wrong pitch
