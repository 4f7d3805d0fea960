"""The training recipes of the shipped models (``hkdsme/configs/recipes/*.toml``).

Each recipe resolves with ``hkd-train``'s own config rules, equals the options stored in the shipped model it
made, ships as package data, and trains bit for bit like the documented command line (the flags of
``experiments/mir1k/runs_aug.sh``) on a tiny synthetic cache.
"""
import configparser
import fnmatch
import json
import tomllib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import hkdsme
from hkdsme.model.checkpoint import read_meta
from hkdsme.pipeline.errors import InputError
from hkdsme.train import config
from hkdsme.train.cli import main

from train_helpers import write_cache

PKG = Path(hkdsme.__file__).resolve().parent
RECIPES = PKG / "configs" / "recipes"
WEIGHTS = PKG / "weights"
ROOT = Path(__file__).resolve().parents[1]
CLI_NAME = {"teacher": "teacher", "distill": "run"}          # config table -> hkd-train subcommand

# recipe -> the shipped model whose stored options it must equal (stage 1 of `supervised` made no shipped file)
SHIPPED = {"ftanet": "ftanet", "supervised": "supervised", "hkdsme-mir1k": "hkdsme-mir1k", "hkdsme": "hkdsme",
           "supervised-stage1": None, "hkdsme-stage1": None}


def _command(path: Path) -> str:
    tables = list(tomllib.loads(path.read_text(encoding="utf-8")))
    assert len(tables) == 1 and tables[0] in config.COMMANDS, f"{path.name}: one table, [teacher] or [distill]"
    return tables[0]


def test_every_trained_model_has_a_recipe_and_it_ships():
    models = json.loads((WEIGHTS / "models.json").read_text())["models"]
    trained = {n for n in models if n != "msnet-vocal"}         # msnet-vocal: imported published weights
    assert {p.stem for p in RECIPES.glob("*.toml")} == set(SHIPPED)
    assert {m for m in SHIPPED.values() if m} == trained
    cp = configparser.ConfigParser()
    cp.read(ROOT / "setup.cfg")
    globs = [g.strip() for g in cp["options.package_data"]["hkdsme"].split(",")]
    for p in RECIPES.glob("*.toml"):
        rel = p.relative_to(PKG).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not package data in setup.cfg"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_recipe_resolves_and_states_every_option_that_shapes_the_model(name):
    path = RECIPES / f"{name}.toml"
    command = _command(path)
    cfg = config.resolve(command, path)                        # unknown keys / wrong types raise InputError
    table = tomllib.loads(path.read_text(encoding="utf-8"))[command]
    # written out, not inherited from the packaged defaults (which may change): data, schedule, loss switches
    shaping = {"seed", "epochs", "batch", "lr", "lr_schedule", "max_steps_per_epoch", "precision", "val",
               "val_robust", "val_every", "patience", "init", "harmonic", "faithful"}
    shaping |= {"data"} if command == "teacher" else {"labeled", "unlabeled", "teacher", "kd", "hcr", "heads"}
    assert shaping <= set(table), f"{name}: not stated: {sorted(shaping - set(table))}"
    assert cfg["lr_schedule"] == "cosine" and cfg["batch"] == 32 and cfg["seed"] == 3643744328
    text = path.read_text(encoding="utf-8")
    assert f"hkd-train {CLI_NAME[command]} --config hkdsme/configs/recipes/{name}.toml" in text   # the header
    model = SHIPPED[name]
    if model is None:
        return
    stored = read_meta(WEIGHTS / f"{model}.pt")["config"]       # the options the shipped run resolved
    assert {k: cfg[k] for k in stored} == stored
    ref = config.defaults(command)
    assert {k: cfg[k] for k in set(cfg) - set(stored) if k != "teacher_cache"} == \
           {k: ref[k] for k in set(cfg) - set(stored) if k != "teacher_cache"}    # options added later: defaults


def test_a_recipe_for_the_other_command_is_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match=r"has no \[teacher\] table, only \[distill\]"):
        config.resolve("teacher", RECIPES / "hkdsme.toml")
    with pytest.raises(InputError, match=r"has no \[distill\] table, only \[teacher\]"):
        config.resolve("distill", RECIPES / "ftanet.toml")
    r = CliRunner().invoke(main, ["teacher", "--config", str(RECIPES / "hkdsme.toml"), "--out", str(tmp_path / "t")])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "hkdsme.toml" in r.output, r.output


def test_a_recipe_with_a_typo_or_a_wrong_type_is_refused(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text((RECIPES / "hkdsme.toml").read_text().replace("hcr_tolerance = 2", "hcr_tolerence = 2"))
    with pytest.raises(InputError, match="unknown option 'hcr_tolerence'"):
        config.resolve("distill", bad)
    bad.write_text((RECIPES / "hkdsme.toml").read_text().replace('lr = 0.0003', 'lr = "3e-4"'))
    with pytest.raises(InputError, match="option 'lr' must be float"):
        config.resolve("distill", bad)


# The documented command of each recipe (experiments/mir1k/runs_aug.sh; experiments/real/cpu_pool.sh and
# cpu_weak.sh for the two stages of hkdsme),
# less the paths and the budget that the test replaces with tiny ones (TINY below).
SCRIPT_FLAGS = {
    "ftanet": ["--lr-schedule", "cosine", "--val-every", "2"],                                  # t-aug
    "supervised-stage1": ["--teacher", "random", "--no-kd", "--no-hcr", "--no-heads", "--lr-schedule", "cosine",
                          "--lr", "5e-4"],                                                      # s-aug
    "supervised": ["--teacher", "random", "--no-kd", "--no-hcr", "--no-heads", "--lr-schedule", "cosine",
                   "--lr", "3e-4"],                                                             # s-aug-cont
    "hkdsme-mir1k": ["--heads", "--hcr-tolerance", "2", "--lr-schedule", "cosine", "--lr", "3e-4"],  # h-aug
    "hkdsme-stage1": ["--student-teacher", "--heads", "--hcr-tolerance", "2", "--lr", "3e-4", "--lr-schedule",
                      "cosine", "--val-every", "2"],                                            # cpu_pool.sh
    "hkdsme": ["--student-teacher", "--heads", "--hcr-tolerance", "2", "--lr", "3e-4", "--lr-schedule", "cosine",
               "--val-every", "2"],                                                             # cpu_weak.sh
}
# one step of batch 2, in fp32 (the recipes' "auto" is bf16 on a CPU with native bf16: slower for one step) and
# without validation (it picks best.pt but never touches the weights)
TINY = ["--epochs", "1", "--max-steps-per-epoch", "1", "--batch", "2", "--precision", "fp32", "--val", "",
        "--val-robust", ""]


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    return {"lab": write_cache(root / "lab", n_tracks=2, frames=(64, 40), seed=2),
            "unl": write_cache(root / "unl", n_tracks=1, frames=(64,), seed=3, labeled=False)}


def _paths(name, command, caches, tmp_path, tag):
    """The recipe's inputs as flags: tiny caches, the shipped weights as start and teacher, the run in tmp; the
    two runs share one teacher cache, as runs of the same teacher and data do (the second reads what the first
    wrote; both train from the stored file)."""
    p = ["--out", str(tmp_path / tag)]
    if command == "teacher":
        return p + ["--data", str(caches["lab"])]
    if name in ("hkdsme", "hkdsme-stage1"):      # per-set teachers: hkdsme-mir1k, and fused with msnet-vocal on the pool
        start = str(WEIGHTS / "hkdsme-mir1k.pt")
        return p + ["--labeled", str(caches["lab"]), "--init", start, "--unlabeled", str(caches["unl"]),
                    "--teacher", start, "--pool-teacher", f"{start}*0.5+{WEIGHTS / 'msnet-vocal.pt'}*0.5",
                    "--teacher-cache", str(tmp_path / "teacher.h5")]
    p += ["--labeled", str(caches["lab"]), "--init", str(WEIGHTS / "supervised.pt")]
    if name == "hkdsme-mir1k":
        p += ["--unlabeled", str(caches["unl"]), "--teacher", str(WEIGHTS / "ftanet.pt"),
              "--teacher-cache", str(tmp_path / "teacher.h5")]
    return p


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_recipe_trains_its_first_epoch_bit_for_bit_like_its_command_line(name, caches, tmp_path):
    recipe = RECIPES / f"{name}.toml"
    command = _command(recipe)
    runs = {}
    for tag, how in (("recipe", ["--config", str(recipe)]), ("flags", SCRIPT_FLAGS[name])):
        args = [CLI_NAME[command], *how, *_paths(name, command, caches, tmp_path, tag), *TINY]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, f"{tag}: {r.output}"
        runs[tag] = tmp_path / tag
    a, b = (torch.load(runs[t] / "last.pt", map_location="cpu", weights_only=False) for t in ("recipe", "flags"))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    changed = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not changed, f"{name}: weights differ in {changed[:5]}"
    ca, cb = (json.loads((runs[t] / "config.json").read_text()) for t in ("recipe", "flags"))
    assert ca.pop("out") != cb.pop("out") and ca == cb
    # the step really trained: the start (the shipped supervised weights, or a seeded init) moved
    if command == "distill":
        start = torch.load(WEIGHTS / "supervised.pt", map_location="cpu", weights_only=False)["state_dict"]
        assert any(not torch.equal(start[k].float(), a["state_dict"][k].float()) for k in start)
