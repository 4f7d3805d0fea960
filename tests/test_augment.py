"""Augmentation (pipeline/augment.py) and `hkd-prep extract --augment`: labels, lengths, determinism, hashing."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from hkdsme.pipeline import augment as A
from hkdsme.pipeline import shards
from hkdsme.pipeline.cli import main as prep

SR = 8000
OFF = {f.name: 0.0 for f in dataclasses.fields(A.AugmentSpec) if f.name.endswith("_prob")}


def spec(**kw):
    return A.AugmentSpec(**{**OFF, **kw})


def tone(hz, dur=1.0, sr=SR, amp=0.3):
    t = np.arange(int(dur * sr)) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def noise(n, seed=0, amp=0.05):
    return (amp * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def pitch_of(x, sr=SR):
    """Fundamental of a clean tone: the peak of a zero-padded spectrum, refined parabolically."""
    seg = x[len(x) // 4: 3 * len(x) // 4]
    x = seg * np.hanning(len(seg))
    n = 1 << 16
    mag = np.abs(np.fft.rfft(x, n))
    k = int(np.argmax(mag[1:])) + 1
    a, b, c = np.log(mag[k - 1: k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / n


def labels(n_s, hz):
    times = 0.02 * (np.arange(int(n_s / 0.02)) + 1)
    return times, np.where((times > 0.1) & (times < n_s - 0.1), hz, 0.0)


def test_plus_three_semitones_label_and_measured_pitch():
    v, acc = tone(440.0), np.zeros(SR, np.float32)
    times, f0 = labels(1.0, 440.0)
    s = spec(pitch_prob=1.0, pitch_range=(3.0, 3.0))
    mix, t2, f2 = A.render_variant(v, acc, SR, times, f0, s, seed=1)
    assert np.array_equal(t2, times)
    assert np.allclose(f2[f0 > 0], 523.2511, atol=0.01) and np.all(f2[f0 == 0] == 0)
    assert abs(1200 * np.log2(pitch_of(mix) / 523.2511)) < 15     # the audio really moved +3 st


def test_shift_outside_grid_is_redrawn_or_dropped():
    times, f0 = labels(1.0, 1000.0)      # +7 st would leave the 31-1250 Hz grid
    s = spec(pitch_prob=1.0, pitch_range=(7.0, 7.0))
    plan = A.plan_variant(s, 0)
    assert A.choose_shift(plan, f0, s) == 0.0
    s2 = spec(pitch_prob=1.0, pitch_range=(-7.0, 7.0), pitch_min_abs=4.0, pitch_tries=20)
    sh = A.choose_shift(A.plan_variant(s2, 3), f0, s2)
    assert sh <= -4.0 and (f0[f0 > 0] * 2 ** (sh / 12)).max() <= 1250


def test_accompaniment_only_is_unvoiced():
    v, acc = tone(300.0), noise(SR)
    times, f0 = labels(1.0, 300.0)
    mix, _, f2 = A.render_variant(v, acc, SR, times, f0, spec(accomp_only_prob=1.0, pitch_prob=1.0), seed=5)
    assert f2.shape == f0.shape and np.all(f2 == 0)
    assert np.allclose(mix, 0.5 * acc, atol=1e-6)


@pytest.mark.parametrize("which", ["highpass", "lowpass", "peak", "reverb", "compress", "noise", "codec", "all"])
def test_every_transform_keeps_the_length(which):
    n = SR + 37                                         # not a multiple of any block size
    v, acc = tone(250.0, n / SR)[:n], noise(n)
    times, f0 = labels(n / SR, 250.0)
    probs = {f"{e}_prob": 1.0 for e in ("highpass", "lowpass", "peak", "reverb", "compress", "noise", "codec")}
    kw = dict(probs) if which == "all" else {f"{which}_prob": 1.0}
    if which == "all":
        kw.update(pitch_prob=1.0, crossmix_prob=1.0)
    mix, _, f2, plan = A.render_variant(v, acc, SR, times, f0, spec(**kw), seed=2, other_accomp=noise(3000, 9),
                                        return_plan=True)
    assert mix.shape == (n,) and mix.dtype == np.float32 and np.isfinite(mix).all()
    assert f2.shape == f0.shape
    assert set(plan["effects"]) == ({which} if which != "all" else {k[:-5] for k in probs})


def test_pitch_shifters_keep_the_length():
    x = tone(220.0, 0.7)[: 5603]
    for sh in A.SHIFTERS:
        assert A.pitch_shift(x, SR, -5.0, sh).shape == x.shape


def test_crossmix_loops_other_accompaniment():
    n = 2 * SR
    other = noise(SR // 2, 4)
    assert np.array_equal(A.loop_to(other, n, 100)[:SR // 2 - 100], other[100:])
    mix, _, _, plan = A.render_variant(np.zeros(n, np.float32), noise(n), SR, *labels(2.0, 0.0),
                                       spec(crossmix_prob=1.0), seed=0, other_accomp=other, return_plan=True)
    assert plan["crossmixed"] and mix.shape == (n,)


def test_voice_to_accompaniment_ratio():
    v, acc = tone(200.0, 1.0), noise(SR, 1, 0.1)
    s = spec(var_prob=1.0, var_db_range=(6.0, 6.0))
    mix, _, _, plan = A.render_variant(v, acc, SR, *labels(1.0, 200.0), s, seed=0, return_plan=True)
    voice_part = mix - 0.5 * acc
    ratio = 20 * np.log10(np.sqrt(np.mean(voice_part ** 2)) / np.sqrt(np.mean((0.5 * acc) ** 2)))
    assert abs(ratio - 6.0) < 0.01


def test_deterministic_per_seed():
    n = SR
    v, acc = tone(330.0), noise(n)
    times, f0 = labels(1.0, 330.0)
    s = A.load_spec("train")
    s = dataclasses.replace(s, **{k: 1.0 for k in ("pitch_prob", "reverb_prob", "noise_prob", "codec_prob")})
    a = A.render_variant(v, acc, SR, times, f0, s, seed=A.variant_seed("clip_1_01", 0, s.seed))
    b = A.render_variant(v, acc, SR, times, f0, s, seed=A.variant_seed("clip_1_01", 0, s.seed))
    c = A.render_variant(v, acc, SR, times, f0, s, seed=A.variant_seed("clip_1_01", 1, s.seed))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])
    assert A.variant_seed("clip_1_01", 0, 0) == A.variant_seed("clip_1_01", 0, 0) > 0   # crc32: no salt
    assert A.variant_seed("clip_1_01", 0, 0) != A.variant_seed("clip_1_01", 0, 1)


def test_presets_load_and_differ(tmp_path):
    tr, rb = A.load_spec("train"), A.load_spec("robust")
    assert tr.seed != rb.seed and rb.pitch_min_abs >= 4 and tr.name == "train"
    p = tmp_path / "mine.toml"
    p.write_text('seed = 3\n[effects]\ncodec_prob = 1.0\n')
    m = A.load_spec(p)
    assert m.seed == 3 and m.codec_prob == 1.0 and m.name == "mine"
    p.write_text("bogus = 1\n")
    with pytest.raises(Exception, match="unknown key"):
        A.load_spec(p)
    with pytest.raises(Exception, match="preset"):
        A.load_spec("no-such-preset")


def test_spec_is_part_of_the_manifest_hash():
    fh = "0123456789abcdef"
    tr, rb = A.load_spec("train").to_dict(), A.load_spec("robust").to_dict()
    assert shards.cache_hash(fh, tr) != shards.cache_hash(fh, rb)
    assert shards.cache_hash(fh, tr) == shards.cache_hash(fh, A.load_spec("train").to_dict())
    assert shards.cache_hash(fh, tr) != shards.cache_hash(fh)
    assert shards.new_manifest("mir1k", tr)["cache_hash"] == shards.cache_hash(shards.new_manifest("x")["feature_hash"], tr)
    assert json.loads(A.load_spec("train").canonical_json()) == tr


def _mir1k_tree(root, n=3, dur=1.6):
    (root / "Wavfile").mkdir(parents=True)
    (root / "PitchLabel").mkdir()
    for i in range(n):
        name = f"singer_{i + 1}_01"
        midi = 57 + 3 * i
        hz = 440 * 2 ** ((midi - 69) / 12)
        x = np.stack([noise(int(dur * SR), i, 0.05), tone(hz, dur)], axis=1)   # ch0 accomp, ch1 voice
        sf.write(root / "Wavfile" / f"{name}.wav", x, SR)
        k = int(dur / 0.02) - 1
        pv = np.where((np.arange(k) > 3) & (np.arange(k) < k - 3), midi, 0)
        (root / "PitchLabel" / f"{name}.pv").write_text("\n".join(f"{m:.6f}" for m in pv) + "\n")


def test_cli_extract_augment_writes_variants_and_resumes(tmp_path):
    root, out = tmp_path / "MIR-1K", tmp_path / "cache"
    _mir1k_tree(root)
    args = ["extract", "--dataset", "mir1k", "--root", str(root), "--out", str(out), "--augment", "train",
            "--variants", "2", "--jobs", "1", "--backend", "threading", "--no-progress"]
    r = CliRunner().invoke(prep, args)
    assert r.exit_code == 0, r.output
    assert "6 done" in r.output and "x realtime" in r.output
    m = shards.load_manifest(out)
    assert sorted(m["tracks"]) == [f"singer_{i}_01__aug{k}" for i in (1, 2, 3) for k in (0, 1)]
    assert m["augment"]["name"] == "train" and m["cache_hash"] == shards.cache_hash(m["feature_hash"], m["augment"])
    first = {p.name: p.read_bytes() for p in (out / "shards").glob("*.h5")}
    (out / "shards" / "singer_2_01__aug1.h5").unlink()
    r = CliRunner().invoke(prep, args)
    assert r.exit_code == 0 and "1 done, 5 skipped" in r.output, r.output
    assert {p.name: p.read_bytes() for p in (out / "shards").glob("*.h5")} == first
    # another spec never mixes into this cache
    r = CliRunner().invoke(prep, [*args[:-7], "--augment", "robust", "--variants", "2", "--jobs", "1",
                                  "--backend", "threading", "--no-progress"])
    assert r.exit_code != 0 and "augmentation" in r.output
    # the labels of the shards are the variants' (shifted or unvoiced), on the usual grid
    _, bins, f0 = shards.read_track(out / "shards" / "singer_1_01__aug0.h5")
    assert bins.shape == f0.shape and (f0 >= 0).all()


def test_augment_refuses_mono_datasets(tmp_path):
    sf.write(tmp_path / "a.wav", tone(300.0), SR)
    r = CliRunner().invoke(prep, ["extract", "--dataset", "unlabeled", "--root", str(tmp_path), "--augment", "train"])
    assert r.exit_code != 0 and "separate channels" in r.output
