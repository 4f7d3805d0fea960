"""Per-frame confidence 1 − p(unvoiced row): through the Predictor on hand-made posterior maps, the ladder, the
melody formats, `hkd-eval predict --confidence`, and a voicing threshold applied afterwards."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from torch import nn

import hkdsme
from hkdsme.evaluate import inference as I
from hkdsme.evaluate.cli import main
from hkdsme.evaluate.formats import read_melody, write_melody
from hkdsme.model import decode as D
from hkdsme.model.checkpoint import save_checkpoint
from hkdsme.model.output import NetOutput
from hkdsme.model.student import MSNet
from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError

P0 = np.linspace(0.02, 0.98, grid.SEG_LEN)       # p(unvoiced row) of frame j of every segment


def hand_made_map() -> np.ndarray:
    """(321, 64) posterior: frame j has p(row 0) = P0[j]; its voiced mass sits on a pitch row that moves with j,
    0.6 of it on row 40 + 3j and 0.4 on the row above, the rest (1e-3 of it) spread over every pitch row."""
    p = np.zeros((grid.N_BINS, grid.SEG_LEN))
    for j in range(grid.SEG_LEN):
        voiced = 1.0 - P0[j]
        p[1:, j] = 1e-3 * voiced / grid.N_FREQ
        p[40 + 3 * j, j] += 0.6 * 0.999 * voiced
        p[41 + 3 * j, j] += 0.4 * 0.999 * voiced
        p[0, j] = P0[j]
    return p


class MapNet(nn.Module):
    """Returns the log of the hand-made map for every segment (and every channel), whatever the input."""

    def __init__(self):
        super().__init__()
        self.register_buffer("logp", torch.from_numpy(np.log(hand_made_map())).float())

    def forward(self, x):
        logits = self.logp.expand(x.shape[0], 4, -1, -1).clone()
        return NetOutput(torch.softmax(logits, dim=2), logits, ())


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    return save_checkpoint(path, MSNet(), kind="student", config={}, feature_hash=grid.feature_hash(),
                           extra={"voicing_threshold": 0.55})


def _map_predictor(ckpt, **kw):
    pred = I.Predictor(ckpt, precision="fp32", channels_last=False, **kw)
    pred.model = MapNet()
    return pred


def _song(seconds=1.5, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    f = 220 * 2 ** (0.3 * np.sin(2 * np.pi * 0.5 * t))
    ph = 2 * np.pi * np.cumsum(f) / sr
    return (0.3 * np.sin(ph) + 0.1 * np.sin(2 * ph) + 0.01 * np.sin(7 * t)).astype(np.float32)


# ------------------------------------------------------------------------------ hand-made posterior map

@pytest.mark.parametrize("decode", ["voicing", "argmax"])
def test_confidence_is_one_minus_p_row0_of_a_hand_made_map(ckpt, decode):
    pred = _map_predictor(ckpt, decode=decode, batch_size=2)
    n = 150                                                          # 3 segments, the last one padded
    feats = np.zeros((3, grid.N_FREQ, n), np.float32)
    t, f0, conf = pred.predict_features(feats, return_confidence=True)
    want = 1.0 - np.tile(P0, 3)[:n]
    assert conf.dtype == np.float32 and conf.shape == f0.shape == t.shape == (n,)
    np.testing.assert_allclose(conf, want, atol=5e-5)        # torch's float32 softmax over rows: ~2e-5
    # the f0 is the one asked for without confidence
    np.testing.assert_array_equal(pred.predict_features(feats)[1], f0)
    j = np.arange(n) % grid.SEG_LEN
    if decode == "voicing":                  # voiced iff 1 − p0 ≥ θ = 0.55; pitch = weighted mean of the two rows
        voiced = conf >= 0.55
        assert voiced.any() and (~voiced).any()
        np.testing.assert_array_equal(f0 > 0, voiced)
        row = 40 + 3 * j + 0.4
        np.testing.assert_allclose(f0[voiced], grid.FMIN * 2 ** (row[voiced] / 60), rtol=2e-5)
    else:                                    # argmax: row 0 wins where p0 > 0.6·0.999·(1 − p0)
        np.testing.assert_array_equal(f0 > 0, np.tile(P0, 3)[:n] < 0.6 * 0.999 * (1 - np.tile(P0, 3)[:n]))


def test_f0_is_the_same_as_the_plain_decoders(ckpt):
    """The one-pass decoder with confidence gives exactly the f0 of the voicing / argmax decoders it replaced."""
    rng = np.random.default_rng(0)
    feats = rng.random((3, grid.N_FREQ, 200)).astype(np.float32)
    pred = I.Predictor(ckpt, precision="fp32", batch_size=2)
    f0, conf = pred.f0_from_features(feats, return_confidence=True)
    v, h = pred.voicing_from_features(feats)
    np.testing.assert_array_equal(f0, D.f0_from_voicing(v, h, pred.voicing_threshold))
    np.testing.assert_array_equal(conf, v)
    arg = I.Predictor(ckpt, precision="fp32", batch_size=2, decode="argmax")
    f0a, confa = arg.f0_from_features(feats, return_confidence=True)
    np.testing.assert_array_equal(f0a, D.bins_to_hz(arg.bins_from_features(feats)))
    np.testing.assert_array_equal(confa, v)                         # the same quantity under either decoder


def test_decode_voicing_probability_on_probs():
    p = hand_made_map()[None, None]                                  # (1, 1, 321, 64) probabilities
    np.testing.assert_allclose(D.voicing_probability(p, logits=False)[0], 1 - P0, atol=1e-7)
    np.testing.assert_allclose(D.voicing_probability(torch.from_numpy(np.log(p)))[0].numpy(), 1 - P0, atol=5e-5)
    with pytest.raises(ValueError, match="expected"):
        D.voicing_probability(np.zeros((1, 4, 320, 8)))


# ----------------------------------------------------------------------------------- θ applied afterwards

def test_threshold_afterwards_equals_threshold_at_prediction(ckpt):
    feats = np.zeros((3, grid.N_FREQ, 128), np.float32)
    _, every, conf = _map_predictor(ckpt, voicing_threshold=0.0).predict_features(feats, return_confidence=True)
    assert (every > 0).all()                                         # θ = 0: the pitch candidate of every frame
    for theta in (0.1, 0.3, 0.55, 0.8, 0.95):
        direct = _map_predictor(ckpt, voicing_threshold=theta).predict_features(feats)[1]
        np.testing.assert_array_equal(hkdsme.apply_voicing_threshold(every, conf, theta), direct)
    # from the calibrated θ₀ = 0.55, raising θ works; lowering it cannot bring dropped frames back
    _, f055, c055 = _map_predictor(ckpt).predict_features(feats, return_confidence=True)
    np.testing.assert_array_equal(hkdsme.apply_voicing_threshold(f055, c055, 0.8),
                                  _map_predictor(ckpt, voicing_threshold=0.8).predict_features(feats)[1])
    with pytest.raises(ValueError, match=r"frame\(s\) have confidence >= 0.3 but no pitch.*voicing_threshold=0"):
        hkdsme.apply_voicing_threshold(f055, c055, 0.3)
    with pytest.raises(ValueError, match="differ in shape"):
        hkdsme.apply_voicing_threshold(f055, c055[:-1], 0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        hkdsme.apply_voicing_threshold(f055, c055, 1.0)


# ------------------------------------------------------------------------------------- ladder and files

def test_ladder_returns_confidence_and_the_same_f0(ckpt, tmp_path):
    x = _song()
    path = tmp_path / "a.wav"
    sf.write(path, x, 16000)
    t, f0 = hkdsme.predict_from_file(path, checkpoint=ckpt)
    f0_array = hkdsme.predict(x, 16000, checkpoint=ckpt)[1]         # the float audio, not the 16-bit file
    for res, want in ((hkdsme.predict_from_file(path, checkpoint=ckpt, return_confidence=True), f0),
                      (hkdsme.extract_melody(path, checkpoint=ckpt, return_confidence=True), f0),
                      (hkdsme.predict(x, 16000, checkpoint=ckpt, return_confidence=True), f0_array)):
        assert len(res) == 3
        np.testing.assert_array_equal(res[1], want)
        assert res[2].shape == f0.shape and res[2].dtype == np.float32
        assert ((res[2] >= 0) & (res[2] <= 1)).all()
    np.testing.assert_array_equal(f0_array > 0, res[2] >= 0.55)   # voiced iff confidence ≥ the stored θ


@pytest.mark.parametrize("held", [True, False], ids=["one-pass", "two-pass"])
def test_streamed_confidence_equals_whole_file(ckpt, held):
    x = _song(4.0, sr=grid.SR)
    pred = I.Predictor(ckpt, precision="fp32", block_s=1.0, max_held_frames=10**9 if held else 0)
    t, f0, conf, spec = pred.predict_audio(x, return_confidence=True, return_spectrum=True)
    f_ref, c_ref = pred.f0_from_features(I.streamed_cfp(x), return_confidence=True)
    np.testing.assert_array_equal(f0, f_ref)
    np.testing.assert_array_equal(conf, c_ref)
    assert spec.shape == (grid.N_FREQ, t.size)


def test_files_to_files_writes_confidence_in_csv_and_jams(ckpt, tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _song(), 16000)
    _, f0, conf = hkdsme.predict_from_file(path, checkpoint=ckpt, return_confidence=True)
    outs = [tmp_path / "o" / "a.f0.csv", tmp_path / "o" / "a.jams"]
    for out in outs:
        written, failed = hkdsme.predict_from_files_to_files([path], [out], checkpoint=ckpt, confidence=True)
        assert failed == {}
        t2, f2, c2 = read_melody(out, return_confidence=True)
        np.testing.assert_allclose(f2, f0, atol=1e-6)
        np.testing.assert_allclose(c2, conf, atol=5e-7 if out.suffix == ".csv" else 1e-7)
    with pytest.raises(ValueError, match="mirex format has no confidence"):
        hkdsme.predict_from_files_to_files([path], [tmp_path / "a.f0.txt"], checkpoint=ckpt, confidence=True)


def test_formats_with_confidence(tmp_path):
    t, f0, c = np.array([0.01, 0.02]), np.array([0.0, 220.0]), np.array([0.25, 0.875])
    text = write_melody(tmp_path / "a.csv", t, f0, "csv", confidence=c).read_text()
    assert text == "time,f0,confidence\n0.010000,0.000000,0.250000\n0.020000,220.000000,0.875000\n"
    doc = json.loads(write_melody(tmp_path / "a.jams", t, f0, "jams", confidence=c).read_text())
    assert doc["annotations"][0]["data"]["confidence"] == [0.25, 0.875]
    with pytest.raises(ValueError, match="mirex format has no confidence"):
        write_melody(tmp_path / "a.txt", t, f0, "mirex", confidence=c)
    with pytest.raises(ValueError, match="differ in length"):
        write_melody(tmp_path / "b.csv", t, f0, "csv", confidence=c[:1])
    for name, fmt in (("n.csv", "csv"), ("n.jams", "jams"), ("n.txt", "mirex")):   # written without confidence
        write_melody(tmp_path / name, t, f0, fmt)
        assert len(read_melody(tmp_path / name)) == 2
        with pytest.raises(InputError, match=f"{name}: no confidence"):
            read_melody(tmp_path / name, return_confidence=True)
    (tmp_path / "bad.csv").write_text("time,f0,confidence\n0.01,0\n")
    with pytest.raises(InputError, match="bad.csv: expected 3 columns"):
        read_melody(tmp_path / "bad.csv")


def test_cli_confidence_column_plot_and_mirex_refusal(ckpt, tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _song(), 16000)
    base = ["predict", str(path), "--checkpoint", str(ckpt), "--out"]
    r = CliRunner().invoke(main, base + [str(tmp_path / "plain")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, base + [str(tmp_path / "conf"), "--confidence", "--plot"])
    assert r.exit_code == 0, r.output
    t, f0 = read_melody(tmp_path / "plain" / "a.f0.csv")
    t2, f2, c2 = read_melody(tmp_path / "conf" / "a.f0.csv", return_confidence=True)
    np.testing.assert_array_equal(f2, f0)
    assert (tmp_path / "conf" / "a.f0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(main, base + [str(tmp_path / "m"), "--confidence", "--format", "mirex"])
    assert r.exit_code == 1 and "mirex format has no confidence" in r.output
    assert not (tmp_path / "m" / "a.f0.txt").exists()
    r = CliRunner().invoke(main, base + [str(tmp_path / "zero"), "--confidence", "--voicing-threshold", "0"])
    assert r.exit_code == 0, r.output
    t3, f3, c3 = read_melody(tmp_path / "zero" / "a.f0.csv", return_confidence=True)
    assert (f3 > 0).all()                                          # θ = 0: every frame's pitch candidate
    np.testing.assert_array_equal(f3[f0 > 0], f0[f0 > 0])


# ----------------------------------------------------------------------------- settings travel one way

def test_a_predictor_or_the_settings_never_both(ckpt, tmp_path):
    from hkdsme.evaluate.predict import predict_files

    path = tmp_path / "a.wav"
    sf.write(path, _song(), 16000)
    pred = I.Predictor(ckpt)
    with pytest.raises(ValueError, match="not both .*voicing_threshold"):
        hkdsme.predict_from_files_to_files([path], [tmp_path / "a.csv"], voicing_threshold=0.3, predictor=pred)
    with pytest.raises(ValueError, match="not both .*checkpoint"):
        predict_files([path], ckpt, predictor=pred, progress=False)
    written, failed = predict_files([path], predictor=pred, out_dir=tmp_path / "o", progress=False)
    assert failed == {} and written[path].is_file()


def test_worker_processes_write_the_same_confidence(ckpt, tmp_path):
    paths = []
    for i, sec in enumerate((1.5, 1.0)):
        paths.append(tmp_path / f"s{i}.wav")
        sf.write(paths[-1], _song(sec), 16000)
    outs = {j: [tmp_path / f"j{j}" / f"s{i}.f0.csv" for i in range(2)] for j in (1, 2)}
    for jobs, out in outs.items():
        written, failed = hkdsme.predict_from_files_to_files(paths, out, checkpoint=ckpt, precision="fp32",
                                                             confidence=True, jobs=jobs)
        assert failed == {} and len(written) == 2
    for a, b in zip(outs[1], outs[2]):
        assert a.read_bytes() == b.read_bytes() and a.read_text().startswith("time,f0,confidence\n")
