"""`hkd-train demo` (README, "Train your own") runs end to end; here with token budgets to stay fast."""
import csv
import re

from click.testing import CliRunner

from hkdsme import demo
from hkdsme.train.cli import main


def test_demo_runs_end_to_end_and_writes_every_output(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "SONGS", {"train": 2, "unlabeled": 1, "validation": 1, "test": 1})
    monkeypatch.setattr(demo, "TEACHER", dict(epochs=1, batch=2, max_steps_per_epoch=1, lr=1e-3))
    monkeypatch.setattr(demo, "STUDENT", dict(epochs=1, batch=2, max_steps_per_epoch=2, lr=1e-3))
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "demo"
    for rel in ["teacher/best.pt", "student/best.pt", "student/teacher_cache.h5", "report/report.md",
                "report/report.json", "report/per_track.csv", "report/summary.png"]:
        assert (out / rel).is_file(), rel
    assert "| student/best | student |" in (out / "report" / "report.md").read_text()
    rows = list(csv.reader((out / "predict" / "synth_000.f0.csv").open()))
    assert rows[0] == ["time", "f0"] and len(rows) == 1 + 799          # 8 s song → 799 frames of 10 ms
    assert re.search(r"epoch 0: kept \d+ of \d+ unlabeled segments", r.output)   # HCR ran on the unlabeled song
    assert re.search(r"demo done in \d+ s: report .*report\.md", r.output)

    # a second demo into the same folder starts fresh (no mixed epochs); a foreign folder is refused
    r2 = CliRunner().invoke(main, ["demo", "--out", str(out), "--jobs", "1"])
    assert r2.exit_code == 0, r2.output
    assert len((out / "student" / "metrics.jsonl").read_text().splitlines()) == 1
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("user data")
    r3 = CliRunner().invoke(main, ["demo", "--out", str(other)])
    assert r3.exit_code != 0 and "not made by `hkd-train demo`" in r3.output
    assert (other / "keep.txt").read_text() == "user data"
