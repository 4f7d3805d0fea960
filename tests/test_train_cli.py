"""`hkd-train` end to end: teacher / run commands, resume through the CLI, clear errors, a 2-process DDP run."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from hkdsme.model.checkpoint import load_checkpoint
from hkdsme.train.cli import main

from train_helpers import write_cache

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {"lab": write_cache(root / "lab", n_tracks=2, frames=(150, 64), seed=2),
            "unl": write_cache(root / "unl", n_tracks=1, frames=(100,), seed=3, labeled=False),
            "val": write_cache(root / "val", n_tracks=1, frames=(64,), seed=4)}


def test_run_and_resume_via_cli(data, tmp_path):
    run = tmp_path / "run"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nbatch = 2\nprecision = \"fp32\"\nmax_steps_per_epoch = 1\n")
    args = ["run", "--no-kd", "--labeled", str(data["lab"]), "--unlabeled", str(data["unl"]), "--val",
            str(data["val"]), "--out", str(run), "--config", str(cfg), "--hcr-threshold", "0", "--epochs", "1"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["run", "--out", str(run), "--resume", "--epochs", "2"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [0, 1] and all(m["hcr_kept"] == 2 for m in lines)
    saved = json.loads((run / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["kd"] is False and saved["batch"] == 2
    _, meta = load_checkpoint(run / "last.pt", expected_kind="student")
    assert meta["extra"]["train_state"]["epoch"] == 1


def test_cli_errors_are_one_line_messages(data, tmp_path):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["teacher", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 1 and "empty folder" in r.output and str(tmp_path / "empty") in r.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\0" * 10)
    r = CliRunner().invoke(main, ["run", "--teacher", str(bad), "--labeled", str(data["lab"]),
                                  "--out", str(tmp_path / "r")])
    assert r.exit_code == 1 and "bad.pt" in r.output
    r = CliRunner().invoke(main, ["teacher", "--data", str(data["lab"]), "--out", str(tmp_path / "r"),
                                  "--faithful", "--no-harmonic"])
    assert r.exit_code == 1 and "faithful" in r.output


def test_ddp_two_processes_gloo(data, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hkdsme.train.cli", "run", "--teacher", "random", "--labeled", str(data["lab"]),
           "--unlabeled", str(data["unl"]), "--out", str(run), "--batch", "1", "--epochs", "1",
           "--max-steps-per-epoch", "2", "--precision", "fp32", "--hcr-threshold", "0"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)            # own process group: a hang kills every rank
    try:
        out, _ = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
    assert p.returncode == 0, out[-4000:]
    (m,) = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert m["steps"] == 2 and m["hcr_kept"] == 2 and m["hcr_total"] == 2
    kept = 0
    for r in (0, 1):                                    # each rank selected on its half of the unlabeled set
        with h5py.File(run / f"pseudo.r{r}.h5") as h:
            kept += h["probs"].shape[0]
            assert h.attrs["rank"] == r
    assert kept == 2
    assert "kept 2 of 2" in (run / "train.log").read_text()


def test_export_cli_writes_a_half_precision_copy(tmp_path):
    import torch

    from hkdsme.model.checkpoint import save_checkpoint
    from hkdsme.model.student import MSNet

    src = save_checkpoint(tmp_path / "best.pt", MSNet().eval(), kind="student", config={}, feature_hash="abc")
    r = CliRunner().invoke(main, ["export", str(src), "-o", str(tmp_path / "small.pt"), "--dtype", "float16"])
    assert r.exit_code == 0, r.output
    assert "small.pt" in r.output
    model, meta = load_checkpoint(tmp_path / "small.pt", expected_kind="student")
    assert meta["extra"]["export_dtype"] == "float16" and meta["heads"] is False
    assert next(model.parameters()).dtype == torch.float32
    r = CliRunner().invoke(main, ["export", str(src), "-o", str(tmp_path / "x.pt"), "--dtype", "int8"])
    assert r.exit_code != 0 and "float16" in r.output


def test_help_shows_each_commands_packaged_defaults():
    import re
    import tomllib

    from hkdsme.train.config import DEFAULT_FILE

    d = tomllib.loads(DEFAULT_FILE.read_text())
    for command, section in (("teacher", "teacher"), ("run", "distill")):
        text = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())   # unwrap click's lines
        want = {**d["train"], **d[section]}
        for flag, key in (("--epochs", "epochs"), ("--batch", "batch"), ("--lr", "lr"), ("--seed", "seed"),
                          ("--max-steps-per-epoch", "max_steps_per_epoch")):
            assert re.search(rf"{flag} \S+ .*?\[default: {re.escape(str(want[key]))}\]", text), (command, flag)
        assert "officialloss/HCRbehaviour[default:no-faithful]" in text.replace(" ", "")
        assert "step budget of an epoch: at most N optimiser steps" in text
    assert "[default: 100]" in " ".join(CliRunner().invoke(main, ["teacher", "--help"]).output.split())
