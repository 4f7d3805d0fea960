"""experiments/mir1k/table15.py: best epoch, the last-half means over validated epochs only, CPU hours."""
import importlib.util
import json
from pathlib import Path

import pytest

from hkdsme.pipeline.errors import InputError

_PATH = Path(__file__).resolve().parents[1] / "experiments" / "mir1k" / "table15.py"
_spec = importlib.util.spec_from_file_location("table15", _PATH)
t15 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(t15)


def _run(tmp_path, rows):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_last_half_averages_validated_epochs_and_ignores_the_best_pick(tmp_path):
    rows = [
        {"epoch": 0, "val_OA": 80.0, "val_robust_OA": 60.0, "val_select": 70.0, "epoch_cpu_s": 1800},
        {"epoch": 1, "epoch_cpu_s": 1800},                       # not validated (--val-every 2)
        {"epoch": 2, "val_OA": 90.0, "val_robust_OA": 70.0, "val_select": 80.0, "epoch_cpu_s": 1800},
        {"epoch": 3, "epoch_cpu_s": 1800},
        {"epoch": 4, "val_OA": 84.0, "val_robust_OA": 66.0, "val_select": 75.0, "epoch_cpu_s": 1800},
        {"epoch": 5, "val_OA": 86.0, "val_robust_OA": 64.0, "val_select": 75.0, "epoch_cpu_s": 1800},
    ]
    r = t15.load(_run(tmp_path, rows))
    assert r["best"]["epoch"] == 2
    # 4 validated epochs (0, 2, 4, 5): the second half is epochs 4 and 5
    assert r["late"] == {"val_OA": 85.0, "val_robust_OA": 65.0}
    assert r["cpu_h"] == pytest.approx(3.0)
    assert r["test"] is None


def test_a_folder_without_metrics_is_named(tmp_path):
    with pytest.raises(InputError, match="metrics.jsonl"):
        t15.load(tmp_path)
