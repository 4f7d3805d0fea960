"""train/distill.py split by job: teacher cache, pseudo-label store, trainer."""
import ast
from pathlib import Path

from hkdsme.train import distill, pseudo, teacher_cache

ROOT = Path(__file__).resolve().parents[1]


def _defined(rel):
    tree = ast.parse((ROOT / rel).read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_each_module_has_one_job():
    assert _defined("train/distill.py") == {"DistillTrainer", "train_student"}
    assert {"build_teacher_cache", "cache_matches"} <= _defined("train/teacher_cache.py")
    assert {"TrainSet", "write_store"} <= _defined("train/pseudo.py")
    for mod in (distill, pseudo, teacher_cache):
        assert "One job:" in mod.__doc__
    for rel in ("train/teacher_cache.py", "train/pseudo.py"):      # the stores never depend on the trainer
        assert "distill" not in {a.module.rsplit(".", 1)[-1] for a in ast.walk(ast.parse((ROOT / rel).read_text()))
                                 if isinstance(a, ast.ImportFrom) and a.module}
