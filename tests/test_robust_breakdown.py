"""experiments/mir1k/robust_breakdown.py: the applied shift read back from labels, plans recomputed, the fit."""
import importlib.util
from pathlib import Path

import numpy as np

from hkdsme.pipeline.augment import load_spec, plan_variant, variant_seed

_PATH = Path(__file__).resolve().parents[1] / "experiments" / "mir1k" / "robust_breakdown.py"
_spec = importlib.util.spec_from_file_location("robust_breakdown", _PATH)
rb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rb)


def test_applied_semitones_from_labels():
    plain = np.array([0, 220.0, 220.0, 440.0, 0, 330.0])
    shifted = np.where(plain > 0, plain * 2 ** (3 / 12), 0.0)
    shifted[5] = 0.0                                  # a frame voiced in one track only is ignored
    assert abs(rb.applied_semitones(shifted, plain) - 3.0) < 1e-12
    assert rb.applied_semitones(np.zeros(6), plain) == 0.0
    assert abs(rb.applied_semitones(shifted[:4], plain) - 3.0) < 1e-12     # different lengths: the overlap


def test_factors_recompute_the_variants_plan():
    spec = load_spec("robust")
    row = rb.factors("Kenshin_1_01__aug1", spec, -4.5)
    plan = plan_variant(spec, variant_seed("Kenshin_1_01", 1, spec.seed))
    assert row["base"] == "Kenshin_1_01" and row["semitones"] == -4.5
    assert row["crossmix"] == plan["crossmix"] and row["accomp_only"] == plan["accomp_only"]
    assert row["var_db"] == plan["var_db"]
    assert {e for e in rb.EFFECTS if row[e]} == set(plan["effects"])


def test_fit_recovers_known_costs():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(200):
        r = {"semitones": rng.uniform(-7, 7), "var_db": rng.uniform(-10, 6), "crossmix": bool(rng.uniform() < .5),
             "accomp_only": False, **{e: bool(rng.uniform() < .3) for e in rb.EFFECTS}}
        drop = 2.0 + 1.0 * max(-r["semitones"], 0) + 0.5 * max(r["semitones"], 0) + 3.0 * max(-r["var_db"], 0) \
            + 4.0 * r["reverb"]
        rows.append({**r, "plain_OA": 90.0, "OA": 90.0 - drop})
    rows.append({**rows[0], "accomp_only": True, "OA": 0.0})          # excluded from the fit
    f = rb.fit(rows)
    assert f["n"] == 200 and f["R2"] > 0.999
    for k, v in (("intercept", 2.0), ("shift down (per st)", 1.0), ("shift up (per st)", 0.5),
                 ("voice level (per dB below 0)", 3.0), ("reverb", 4.0), ("codec", 0.0)):
        assert abs(f[k] - v) < 1e-9, k
