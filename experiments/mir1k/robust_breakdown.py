"""Which transforms of the robustness set cost a model its accuracy? OA per variant, grouped by what was done to it.

    python experiments/mir1k/robust_breakdown.py                                  # the shipped default model
    python experiments/mir1k/robust_breakdown.py --checkpoint runs/aug/h-exact/best.pt --out runs/compare/rb.md

Every variant of the robustness cache (``hkd-prep extract --augment robust``) was drawn from a plan that its track
id and the spec's seed determine (``hkdsme.pipeline.augment.plan_variant``), so the plan is recomputed here, not
stored: cross-mix, voice-to-accompaniment ratio, accompaniment-only and each effect. The pitch shift actually
applied is read from the labels (median of 12·log2(f_variant / f_plain) over frames voiced in both; the plain
clip comes from the plain validation cache). Each variant is scored with the checkpoint's decoder and θ, and so
is its plain clip; the table gives mean OA and the mean *drop* (plain − variant) per group, and an additive
least-squares fit of the drop on all factors at once (OA points each factor costs when the others are held fixed),
since the transforms are drawn together. Analysis only: nothing here feeds back into training or selection.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from hkdsme.evaluate.calibrate import load_for_caches
from hkdsme.evaluate.inference import _decoder
from hkdsme.evaluate.models import resolve_checkpoint
from hkdsme.model import runtime
from hkdsme.pipeline.augment import AugmentSpec, plan_variant, variant_seed
from hkdsme.train.dataset import ShardDataset
from hkdsme.train.loop import cache_outputs, score_outputs

EFFECTS = ("highpass", "lowpass", "peak", "reverb", "compress", "noise", "codec")


def applied_semitones(f_var: np.ndarray, f_plain: np.ndarray) -> float:
    """Median shift in semitones between two label tracks on the same grid (0 when none is voiced in both)."""
    n = min(f_var.size, f_plain.size)
    a, b = f_var[:n], f_plain[:n]
    both = (a > 0) & (b > 0)
    return float(np.median(12 * np.log2(a[both] / b[both]))) if both.any() else 0.0


def factors(track_id: str, spec: AugmentSpec, semis: float) -> dict:
    base, k = re.fullmatch(r"(.+)__aug(\d+)", track_id).groups()
    plan = plan_variant(spec, variant_seed(base, int(k), spec.seed))
    row = {"base": base, "semitones": semis, "accomp_only": plan["accomp_only"], "crossmix": plan["crossmix"],
           "var_db": plan["var_db"] if plan["var"] else 0.0}
    row.update({e: e in plan["effects"] for e in EFFECTS})
    if "noise" in plan["effects"]:
        row["noise_snr_db"] = plan["effects"]["noise"]["noise_snr_db"]
    return row


def groups(rows):
    """(label, predicate) pairs of the table."""
    yield "all variants", lambda r: True
    yield "no pitch shift", lambda r: abs(r["semitones"]) < 0.5
    yield "shift down 4-7 st", lambda r: r["semitones"] <= -3.5
    yield "shift up 4-7 st", lambda r: r["semitones"] >= 3.5
    yield "voice -10..-5 dB vs accomp.", lambda r: r["var_db"] < -5
    yield "voice -5..0 dB", lambda r: -5 <= r["var_db"] < 0
    yield "voice 0..+6 dB", lambda r: r["var_db"] >= 0
    yield "cross-mix", lambda r: r["crossmix"]
    yield "own accompaniment", lambda r: not r["crossmix"]
    for e in EFFECTS:
        yield f"with {e}", (lambda e: lambda r: r[e])(e)
    yield "noise at SNR < 15 dB", lambda r: r.get("noise_snr_db", 99) < 15


def fit(rows) -> dict:
    """Least-squares drop ≈ b0 + Σ b_k · factor_k over the voiced variants (accompaniment-only ones excluded)."""
    names = ["shift down (per st)", "shift up (per st)", "voice level (per dB below 0)", "cross-mix"] + list(EFFECTS)
    rs = [r for r in rows if not r["accomp_only"]]
    X = np.array([[1.0, max(-r["semitones"], 0), max(r["semitones"], 0), max(-r["var_db"], 0), r["crossmix"]]
                  + [float(r[e]) for e in EFFECTS] for r in rs])
    y = np.array([r["plain_OA"] - r["OA"] for r in rs])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    r2 = 1 - resid.var() / y.var() if y.var() > 0 else float("nan")
    return {"intercept": float(coef[0]), **{n: float(c) for n, c in zip(names, coef[1:])}, "R2": float(r2),
            "n": len(rs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint (default: the shipped default model)")
    ap.add_argument("--robust", default="data_cache/mir1k-robust")
    ap.add_argument("--plain", default="data_cache/mir1k-validation")
    ap.add_argument("--out", type=Path, help="also write the tables (markdown) and the rows (.json beside it)")
    a = ap.parse_args()
    ckpt = resolve_checkpoint(a.checkpoint)
    runtime.configure_threads()
    model, meta, prec, cl = load_for_caches(ckpt)
    _, theta = _decoder("voicing", None, meta, ckpt)            # the checkpoint's calibrated θ, as predict uses
    spec = AugmentSpec.from_dict(json.loads((Path(a.robust) / "manifest.json").read_text())["augment"])
    scored = {}
    for name in (a.plain, a.robust):
        ds = ShardDataset([name], labeled=True)
        outs = cache_outputs(model, ds, device="cpu", precision=prec, channels_last=cl, progress=False)
        _, per = score_outputs(ds, outs, threshold=theta)
        scored[name] = {Path(p["track"]).stem: (p, ref) for p, (ref, *_) in zip(per, outs)}
    plain = scored[a.plain]
    rows = []
    for tid, (p, ref) in sorted(scored[a.robust].items()):
        base = re.fullmatch(r"(.+)__aug\d+", tid).group(1)
        pp, pref = plain[base]
        row = factors(tid, spec, applied_semitones(ref, pref))
        row.update(track=tid, OA=p["OA"], VR=p["VR"], VFA=p["VFA"], RPA=p["RPA"], plain_OA=pp["OA"])
        rows.append(row)
    lines = [f"# Robustness set by transform: {ckpt} (θ {theta:g}, {prec}, {len(rows)} variants of "
             f"{len(plain)} clips)", "", "| variants | n | OA | plain OA of the same clips | drop | VR | VFA |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, pred in groups(rows):
        g = [r for r in rows if pred(r)]
        if g:
            m = {k: np.mean([r[k] for r in g]) for k in ("OA", "plain_OA", "VR", "VFA")}
            lines.append(f"| {label} | {len(g)} | {m['OA']:.2f} | {m['plain_OA']:.2f} | "
                         f"{m['plain_OA'] - m['OA']:.2f} | {m['VR']:.2f} | {m['VFA']:.2f} |")
    f = fit(rows)
    lines += ["", f"Additive fit of the drop (plain − variant OA, points) on {f['n']} voiced variants, "
              f"R² {f['R2']:.2f}:", "", "| factor | OA points lost |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in f.items() if k not in ("R2", "n")]
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
        a.out.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
