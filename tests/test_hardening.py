"""Issue 16 probes: every bad input is one clear line before any work, runs are never overwritten, checkpoints
and label/audio files are checked, the feature hash follows the code's constants."""
import ast
import configparser
import importlib.util
import json
import math
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from hkdsme.model import checkpoint as ckpt
from hkdsme.model.student import MSNet
from hkdsme.model.teacher import FTANet
from hkdsme.pipeline import audio, cfp, datasets, grid, labels
from hkdsme.pipeline.errors import InputError
from hkdsme.train import config
from hkdsme.train.cli import main

ROOT = Path(__file__).resolve().parents[1]
TODAYS_HASH = "3091971d26b84d43"      # recorded by hkdsme/weights/*.pt and every cache: must never change


# ------------------------------------------------------------------------------------ 1. config validation
BAD = [("batch", 0), ("batch", -4), ("teacher_batch", 0), ("val_batch", 0), ("hcr_batch", 0), ("lr", -1.0),
       ("lr", math.nan), ("lr", math.inf), ("seed", -1), ("workers", -1), ("epochs", 0), ("epochs", -1),
       ("max_steps_per_epoch", -2), ("unlabeled_max", -1), ("hcr_threshold", 1.5), ("hcr_threshold", -0.1),
       ("hcr_threshold", math.nan), ("hcr_tolerance", -1), ("precision", "fp8"), ("device", "tpu"),
       ("lr_schedule", "linear")]


@pytest.mark.parametrize("key,value", BAD)
def test_resolve_refuses_bad_value(key, value):
    with pytest.raises(InputError, match=key) as e:
        config.resolve("distill", overrides={key: value})
    assert "\n" not in str(e.value)


def test_resolve_reports_every_bad_field_and_fp16_on_cpu(tmp_path):
    with pytest.raises(InputError) as e:
        config.resolve("teacher", overrides={"batch": 0, "seed": -1, "precision": "fp16"})
    msg = str(e.value)
    assert "batch must be >= 1, got 0" in msg and "seed must be >= 0" in msg and "fp16 needs --device cuda" in msg
    assert "\n" not in msg
    f = tmp_path / "c.toml"
    f.write_text("[train]\nval_batch = 0\n")              # a config file is validated as flags are
    with pytest.raises(InputError, match="val_batch"):
        config.resolve("teacher", f)
    ok = config.resolve("distill", overrides={"precision": "fp16", "device": "cuda", "lr": 0.0, "hcr_threshold": 1})
    assert ok["precision"] == "fp16" and ok["hcr_threshold"] == 1.0


@pytest.mark.parametrize("args,needle", [
    (["run", "--batch", "0"], "batch must be >= 1, got 0"),
    (["run", "--teacher-batch", "0"], "teacher_batch must be >= 1"),
    (["teacher", "--lr", "nan"], "lr must be a finite number"),
    (["teacher", "--epochs", "-1"], "epochs must be >= 1"),
    (["teacher", "--workers", "-2"], "workers must be >= 0"),
    (["teacher", "--precision", "fp16"], "fp16 needs --device cuda"),
])
def test_cli_bad_option_is_one_line(tmp_path, args, needle):
    data = ["--data" if args[0] == "teacher" else "--labeled", str(tmp_path / "missing")]
    r = CliRunner().invoke(main, args + data + ["--out", str(tmp_path / "r")])
    assert r.exit_code != 0 and isinstance(r.exception, SystemExit)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], r.output
    assert "Traceback" not in r.output and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------ 2. Python versions
CI_PYTHON = (3, 11)     # what .ci/run tests: this machine's Python (the only torch wheel on disk is cp311)


def test_python_requires_is_the_python_ci_runs():
    """The oldest Python claimed is the one CI runs, and no dependency is kept for an older one."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    cp = configparser.ConfigParser()
    cp.read(ROOT / "setup.cfg")
    spec = SpecifierSet(cp["options"]["python_requires"])
    minimum = [tuple(int(p) for p in s.version.split(".")[:2]) for s in spec if s.operator == ">="]
    assert minimum == [CI_PYTHON], f"python_requires {spec} must start at the Python CI runs, {CI_PYTHON}"
    assert sys.version_info[:2] >= minimum[0]
    assert spec.contains(".".join(map(str, sys.version_info[:3])))
    reqs = [Requirement(r.strip()) for r in cp["options"]["install_requires"].splitlines() if r.strip()]
    for extra in cp["options.extras_require"].values():
        reqs += [Requirement(r.strip()) for r in extra.splitlines() if r.strip()]
    old = [str(r) for r in reqs if r.marker is not None
           and any(v in str(r.marker) for v in ("python_version", "python_full_version"))]
    assert not old, f"dependencies for Pythons older than claimed: {old}"


@pytest.mark.parametrize("rel", ["train/config.py", "pipeline/augment.py"])
def test_toml_from_the_standard_library(monkeypatch, rel):
    """On every Python claimed, `tomllib` is the standard library's: the tomli fallback is never needed."""
    monkeypatch.setitem(sys.modules, "tomli", None)             # `import tomli` fails: not a dependency
    name = "no_tomli_" + rel.replace("/", "_")[:-3]
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    assert mod.tomllib is tomllib
    if rel == "train/config.py":
        assert mod.defaults("teacher")["epochs"] == config.defaults("teacher")["epochs"]


# ------------------------------------------------------------------------------------ 3. existing runs
@pytest.fixture
def calls(monkeypatch):
    """Record calls of the train functions instead of training (the checks under test come before them)."""
    from hkdsme.train import distill, teacher

    seen = []

    def fake(cfg, resume=False):
        seen.append((cfg, resume))
        return {}

    monkeypatch.setattr(teacher, "train_teacher", fake)
    monkeypatch.setattr(distill, "train_student", fake)
    return seen


def _old_run(run):
    (run / "tb").mkdir(parents=True)
    (run / "tb" / "events").write_text("x")
    for name in ("last.pt", "best.pt", "metrics.jsonl", "train.log"):
        (run / name).write_text("old")
    (run / "teacher_cache.h5").write_text("cache")


@pytest.mark.parametrize("cmd", ["teacher", "run"])
def test_existing_run_refused_unless_resume_or_force(tmp_path, calls, cmd):
    run = tmp_path / "run"
    _old_run(run)
    args = [cmd, "--data" if cmd == "teacher" else "--labeled", str(tmp_path / "d"), "--out", str(run)]
    args += ["--no-kd"] if cmd == "run" else []
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    assert "--resume" in r.output and "--force" in r.output and str(run) in r.output
    assert calls == [] and (run / "best.pt").read_text() == "old"
    r = CliRunner().invoke(main, args + ["--resume", "--force"])
    assert r.exit_code != 0 and calls == []
    r = CliRunner().invoke(main, args + ["--resume"])
    assert r.exit_code == 0, r.output
    assert calls[-1][1] is True and (run / "last.pt").exists()
    r = CliRunner().invoke(main, args + ["--force"])
    assert r.exit_code == 0, r.output
    assert calls[-1][1] is False
    assert not any((run / n).exists() for n in ("last.pt", "best.pt", "metrics.jsonl", "train.log", "tb"))
    assert (run / "teacher_cache.h5").exists()                  # keyed by teacher and data: kept
    (run / "x.txt").write_text("not a run")
    assert CliRunner().invoke(main, args).exit_code == 0      # a folder without a run is fine


# ------------------------------------------------------------------------------------ 4. checkpoints
@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    fh = grid.feature_hash()
    torch.manual_seed(0)
    return {"student": ckpt.save_checkpoint(d / "student.pt", MSNet(), kind="student", config={}, feature_hash=fh),
            "teacher": ckpt.save_checkpoint(d / "teacher.pt", FTANet(), kind="teacher", config={}, feature_hash=fh),
            "melody": ckpt.save_checkpoint(d / "melody.pt", FTANet(n_classes=1), kind="teacher", config={},
                                           feature_hash=fh)}


def _tampered(src, dst, **changes):
    p = torch.load(src, weights_only=True)
    p.update(changes)
    torch.save(p, dst)
    return dst


@pytest.mark.parametrize("field,value", [("n_classes", 1_000_000), ("n_classes", "4"), ("n_classes", True),
                                         ("n_classes", 0), ("heads", "yes"), ("feature_hash", 5),
                                         ("config", None), ("metrics", [1]), ("state_dict", [1, 2])])
def test_bad_metadata_refused_before_building(tmp_path, ckpts, monkeypatch, field, value):
    bad = _tampered(ckpts["student"], tmp_path / "bad.pt", **{field: value})

    def no_build(*a, **k):
        raise AssertionError("a network was built from unchecked metadata")

    monkeypatch.setattr(ckpt, "build_model", no_build)
    for read in (ckpt.load_checkpoint, ckpt.read_meta):
        with pytest.raises(InputError, match=field) as e:
            read(bad)
        assert e.value.path == bad and "\n" not in str(e.value)


def test_nan_weights_refused(tmp_path, ckpts):
    p = torch.load(ckpts["student"], weights_only=True)
    name = next(k for k, v in p["state_dict"].items() if v.is_floating_point())
    p["state_dict"][name] = p["state_dict"][name].clone().fill_(float("nan"))
    torch.save(p, tmp_path / "nan.pt")
    with pytest.raises(InputError, match="NaN") as e:
        ckpt.load_checkpoint(tmp_path / "nan.pt")
    assert e.value.path == tmp_path / "nan.pt"
    assert ckpt.read_meta(ckpts["student"])["kind"] == "student"          # the good one still reads
    ckpt.load_checkpoint(ckpts["student"], expected_kind="student")


@pytest.mark.parametrize("extra,needle,which", [
    (["--teacher", "{student}"], "holds a student network, expected a teacher", "student"),
    (["--no-kd", "--init", "{teacher}"], "holds a teacher network, expected a student", "teacher"),
])
def test_run_checks_checkpoint_kinds_before_work(tmp_path, ckpts, calls, extra, needle, which):
    args = ["run", "--labeled", str(tmp_path / "d"), "--out", str(tmp_path / "r")]
    r = CliRunner().invoke(main, args + [a.format(**ckpts) for a in extra])
    assert r.exit_code != 0 and needle in r.output and str(ckpts[which]) in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and calls == []


def test_student_teacher_flag_lets_a_4_class_student_teach(tmp_path, ckpts, calls):
    args = ["run", "--labeled", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--student-teacher", "--teacher"]
    r = CliRunner().invoke(main, args + [str(ckpts["student"])])
    assert r.exit_code == 0 and len(calls) == 1 and calls[0][0]["student_teacher"] is True, r.output
    r = CliRunner().invoke(main, args + [str(ckpts["melody"])])
    assert r.exit_code != 0 and "4-class harmonic output" in r.output and len(calls) == 1


def test_teacher_init_kind_and_classes_checked(tmp_path, ckpts, calls):
    args = ["teacher", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--init"]
    r = CliRunner().invoke(main, args + [str(ckpts["student"])])
    assert r.exit_code != 0 and "expected a teacher" in r.output and calls == []
    r = CliRunner().invoke(main, args + [str(ckpts["melody"])])
    assert r.exit_code != 0 and "1 output classes" in r.output and calls == []
    r = CliRunner().invoke(main, args + [str(ckpts["teacher"])])
    assert r.exit_code == 0 and len(calls) == 1, r.output


# ------------------------------------------------------------------------------------ 5. labels and audio
def _pv(tmp_path, text, name="a.pv"):
    p = tmp_path / name
    p.write_text(text)
    return datasets.Track("a", "mir1k", tmp_path / "a.wav", p)


@pytest.mark.parametrize("text,line,what", [
    ("0\n60.5\nnan\n61\n", 3, "NaN"),
    ("0\n-3\n60\n", 2, "MIDI value -3"),
    ("60\n\n61\n200\n", 4, "MIDI value 200"),
])
def test_pv_bad_rows_named(tmp_path, text, line, what):
    tr = _pv(tmp_path, text)
    with pytest.raises(InputError, match=f"line {line}: .*{what}") as e:
        tr.load_f0()
    assert e.value.path == tr.label_path


def test_pv_zero_is_unvoiced(tmp_path):
    times, f0 = _pv(tmp_path, "0\n69\n0\n127\n").load_f0()
    assert f0[0] == 0 and f0[1] == pytest.approx(440.0) and f0[2] == 0 and np.isfinite(f0).all()
    assert np.allclose(times, [0.02, 0.04, 0.06, 0.08])


def test_table_nan_row_named(tmp_path):
    ref = tmp_path / "songREF.txt"
    ref.write_text("0.01 100\n\n0.02 nan\n0.03 110\n")
    with pytest.raises(InputError, match="line 3: NaN") as e:
        datasets.Track("song", "adc2004", tmp_path / "song.wav", ref).load_f0()
    assert e.value.path == ref
    mel = tmp_path / "x_MELODY2.csv"
    mel.write_text("time,f0\n0.1,100\n0.2,100\ninf,0\n")
    tr = datasets.Track("x", "medleydb", tmp_path / "x.wav", mel, {"vocal_only": False})
    with pytest.raises(InputError, match="line 4: NaN or inf"):
        tr.load_f0()
    with pytest.raises(InputError, match="f0 value nan at row 2"):
        labels.check_contour([0.0, 0.01], [100.0, np.nan])


def test_truncated_wav_reported(tmp_path):
    p = tmp_path / "cut.wav"
    sf.write(p, np.zeros(3 * 8000, np.float32), 8000, subtype="PCM_16")
    p.write_bytes(p.read_bytes()[:44 + 480 * 2])               # header says 3 s, 0.06 s of data left
    with pytest.raises(InputError, match=r"truncated.*3\.00 s.*0\.06 s") as e:
        audio.load_audio(p)
    assert e.value.path == p
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.zeros(480, np.float32), 8000, subtype="PCM_16")
    assert audio.load_audio(whole).shape == (480,)


def test_random_bytes_mp3_cannot_be_decoded(tmp_path):
    p = tmp_path / "noise.mp3"
    p.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(InputError, match="cannot decode") as e:
        audio.load_audio(p)
    assert "does not exist" not in str(e.value) and e.value.path == p


# ------------------------------------------------------------------------------------ 6. feature hash
def test_feature_hash_is_todays_and_follows_the_code(monkeypatch):
    assert grid.feature_hash() == TODAYS_HASH
    assert grid.feature_hash(dict(grid.FEATURE_PARAMS)) == TODAYS_HASH
    assert torch.load(ROOT / "hkdsme" / "weights" / "hkdsme.pt", weights_only=True)["feature_hash"] == TODAYS_HASH
    for mod, name, value in [(cfp, "WIN", 1024), (cfp, "N_FFT", 4096), (cfp, "GAMMAS", (0.2, 0.6, 1.0)),
                             (cfp, "FMAX", 2000.0), (audio, "RESAMPLE_QUALITY", "VHQ")]:
        with monkeypatch.context() as m:
            m.setattr(mod, name, value)
            assert grid.feature_hash() != TODAYS_HASH, name
    assert grid.feature_hash() == TODAYS_HASH


# ------------------------------------------------------------------------------------ 7. test hygiene
def test_no_import_fallbacks_and_no_unused_markers():
    tree = ast.parse((ROOT / "tests" / "test_prep_cli.py").read_text())
    caught = [ast.unparse(h.type) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.type]
    assert not [c for c in caught if "ImportError" in c]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    markers = pyproject["tool"]["pytest"]["ini_options"].get("markers", [])
    text = "".join(p.read_text() for p in (ROOT / "tests").glob("*.py"))
    for m in markers:
        assert f"mark.{m.split(':')[0]}" in text, f"marker {m!r} declared but never used"
    helpers = ast.parse((ROOT / "tests" / "train_helpers.py").read_text())
    for node in helpers.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assert node.name in text.replace((ROOT / "tests" / "train_helpers.py").read_text(), ""), node.name
