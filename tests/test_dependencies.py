"""Every third-party module the package imports is declared in setup.cfg, so a fresh ``pip install -e .`` has it.

(pedalboard, the pitch shifter of the augmentation, was once imported but undeclared: every augmented render
failed on a fresh machine while an old venv that happened to have it kept the suite green.)
"""
from __future__ import annotations

import ast
import configparser
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["hkdsme", "pipeline", "model", "train", "evaluate"]
# import name -> distribution name, where they differ; optional extras are declared under extras_require
DIST = {"mir_eval": "mir_eval", "tomli": None}       # tomli: Python < 3.11 fallback behind a try/except
OPTIONAL = {"dask"}                                  # the [dask] extra, imported only by --scheduler dask


def _declared() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    names = set()
    for line in cfg["options"]["install_requires"].splitlines():
        if line.strip():
            names.add(re.split(r"[<>=!~\[ ;]", line.strip(), maxsplit=1)[0].lower().replace("-", "_"))
    return names


def _imported() -> dict[str, str]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                else:
                    continue
                for mod in mods:
                    top = mod.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES and top != "__future__":
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_an_install_requirement():
    declared = _declared()
    missing = {top: where for top, where in _imported().items()
               if top not in OPTIONAL and DIST.get(top, top) is not None and DIST.get(top, top) not in declared}
    assert not missing, f"imported but not in setup.cfg install_requires: {missing}"


def test_the_checker_sees_the_imports_it_guards():
    # the scan must find the heavy hitters, or the test above would pass on an empty list
    imported = _imported()
    for top in ("torch", "h5py", "librosa", "pedalboard", "mir_eval", "click"):
        assert top in imported
