"""The README's quick start, run as written: `hkd-eval predict song` on a synthetic song with the embedded default
model, the csv it shows (columns, 10 ms rows, 0 = unvoiced), `--confidence` (the same f0 plus a confidence column)
and `--plot`, and the Python one-liner. Also: the user-facing docs keep to the house rules."""
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import hkdsme
from hkdsme.evaluate.cli import main
from hkdsme.evaluate.inference import Predictor
from hkdsme.pipeline import grid, synthetic

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _csv(path):
    lines = path.read_text().splitlines()
    return lines[0].split(","), np.loadtxt(lines[1:], delimiter=",", ndmin=2)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    x, ref_t, ref_f0 = synthetic.make_song(seed=7, duration=6.0)
    path = tmp_path_factory.mktemp("quickstart") / "song.wav"
    sf.write(path, x, grid.SR, subtype="FLOAT")
    return path, x


def test_readme_quick_start_commands_are_the_ones_tested():
    assert "\n    hkd-eval predict song.mp3\n" in README
    assert "\n    hkd-eval predict song.mp3 --confidence --plot\n" in README
    assert 'times, f0 = hkdsme.extract_melody("song.mp3")' in README
    assert "\n    python -m pytest -q\n" in README                     # the CI runs exactly this line
    # the csv excerpts shown: the right headers, 10 ms rows from 0.01 s, 6 decimals
    for header, width in (("time,f0", 2), ("time,f0,confidence", 3)):
        block = re.search(rf"```\n{header}\n(.*?)```", README, re.S).group(1)
        rows = [r.split(",") for r in block.splitlines() if r != "..."]
        assert all(len(r) == width and all(re.fullmatch(r"\d+\.\d{6}", v) for v in r) for r in rows), rows
        times = [float(r[0]) for r in rows]
        assert times[0] == 0.01 and all(b > a for a, b in zip(times, times[1:]))
        assert all(abs(round(t * 100) - t * 100) < 1e-9 for t in times)
        assert [float(r[1]) for r in rows][0] == 0.0


def test_quick_start_csv_confidence_and_plot(song):
    path, x = song
    r = CliRunner().invoke(main, ["predict", str(path)])
    assert r.exit_code == 0, r.output
    out = path.with_name("song.f0.csv")
    assert f"{path} -> {out}" in r.output
    header, data = _csv(out)
    n = grid.n_frames(x.size)
    assert header == ["time", "f0"] and data.shape == (n, 2)
    np.testing.assert_allclose(data[:, 0], 0.01 * np.arange(1, n + 1), atol=1e-9)      # 10 ms rows from 0.01 s
    f0 = data[:, 1]
    assert (f0 == 0).sum() > 20 and (f0 > 0).sum() > n // 3                               # gaps and singing
    assert ((f0 == 0) | ((f0 > 31) & (f0 < 1250))).all()

    r = CliRunner().invoke(main, ["predict", str(path), "--confidence", "--plot", "--overwrite"])
    assert r.exit_code == 0, r.output
    header2, data2 = _csv(out)
    assert header2 == ["time", "f0", "confidence"]
    np.testing.assert_array_equal(data2[:, :2], data)                                    # the same f0
    conf = data2[:, 2]
    assert ((conf >= 0) & (conf <= 1)).all()
    theta = Predictor().voicing_threshold                                                 # the default model's θ
    near = np.abs(conf - theta) <= 1e-6                                                  # csv rounding at θ
    np.testing.assert_array_equal((f0 > 0)[~near], (conf >= theta)[~near])              # voiced iff conf ≥ θ
    assert path.with_name("song.f0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    t, f = hkdsme.extract_melody(str(path))                                              # the Python one-liner
    assert t.dtype == f.dtype == np.float64 and t.shape == f.shape == (n,)
    np.testing.assert_allclose(f, f0, atol=1e-6)


def test_user_facing_text_names_no_work_periods_or_issue_numbers():
    from hkdsme.evaluate.cli import main as eval_main
    from hkdsme.pipeline.cli import main as prep_main
    from hkdsme.train.cli import main as train_main

    bad = re.compile(r"\bsession[- ]?\d|\bsessions? \d|\bissue \d|\bissues \d", re.I)
    texts = {p: p.read_text(encoding="utf-8") for p in
             [ROOT / "README.md", *(ROOT / "docs").glob("*.md")] if p.name != "results.md"}   # results.md is the log
    for folder in ("hkdsme", "pipeline", "model", "train", "evaluate"):
        texts.update({p: p.read_text(encoding="utf-8") for p in (ROOT / folder).rglob("*.py")})
    for cli in (eval_main, prep_main, train_main):
        for name, cmd in cli.commands.items():
            texts[f"{cli.name} {name} --help"] = CliRunner().invoke(cli, [name, "--help"]).output
    found = {str(k): m.group(0) for k, v in texts.items() if (m := bad.search(v))}
    assert not found, found
