"""Issue 15 tables from the runs' own files: scores of each run's best.pt, the curve, HCR counts and quality.

    python experiments/mir1k/table15.py runs/aug/s-aug-cont runs/aug/h-aug runs/aug/h-nosongs ...

Per run folder: ``metrics.jsonl`` (hkd-train: validation scores with θ calibrated each epoch, ``val_select`` =
mean of plain and robustness OA, HCR counts ``hcr_*`` and pseudo-label quality, CPU seconds), best.pt's epoch
(the highest ``val_select``; the maximum over epochs on the sets it is chosen on, so biased upwards: the
"last half" column averages the validated epochs of the run's second half instead, a fairer basis when two runs
differ by less than their epoch-to-epoch spread) and ``test-report/report.json`` (``runs_aug.sh test RUN``: MIR-1K test singers).
Prints markdown: one summary row per run, then per run the per-epoch curve with the HCR columns.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hkdsme.train.curves import best_epoch, read_metrics


def _f(v, nd=2):
    return "—" if v is None else f"{v:.{nd}f}"


def load(run: Path) -> dict:
    rows = read_metrics(run)                 # a resumed epoch counts once (its CPU seconds too)
    best = best_epoch(rows)
    test = None
    rep = run / "test-report" / "report.json"
    if rep.is_file():
        test = next(iter(json.loads(rep.read_text())["checkpoints"].values()))["mean"]
    validated = [r for r in rows if r.get("val_robust_OA") is not None]
    half = validated[len(validated) // 2:]
    late = {k: sum(r[k] for r in half) / len(half) if half else None for k in ("val_OA", "val_robust_OA")}
    return {"name": run.name, "rows": rows, "best": best, "test": test, "late": late,
            "cpu_h": sum(r.get("epoch_cpu_s", 0.0) for r in rows) / 3600}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    runs = [load(r) for r in ap.parse_args().runs]
    print("| run | best epoch | θ | val OA | robust OA | mean | MIR-1K test VR / VFA / RPA / OA | "
          "last half: val / robust OA | CPU h (training) |")
    print("|---|---:|---:|---:|---:|---:|---|---|---:|")
    for r in runs:
        b, t = r["best"], r["test"]
        test = " / ".join(_f(t.get(k)) for k in ("VR", "VFA", "RPA", "OA")) if t else "—"
        print(f"| {r['name']} | {b['epoch']} | {_f(b.get('val_theta'), 3)} | {_f(b.get('val_OA'))} | "
              f"{_f(b.get('val_robust_OA'))} | {_f(b.get('val_select'))} | {test} | "
              f"{_f(r['late']['val_OA'])} / {_f(r['late']['val_robust_OA'])} | {r['cpu_h']:.2f} |")
    for r in runs:
        print(f"\n{r['name']}:\n")
        print("| epoch | val OA | robust OA | θ | kept (songs) | kept (MIR-1K, labels withheld) | "
              "pseudo-label melody acc. kept / all | voicing agr. kept | loss | CPU s |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for e in r["rows"]:
            songs = (f"{e['hcr_kept_unlabeled_part']} / {e['hcr_total_unlabeled_part']}"
                     if "hcr_kept_unlabeled_part" in e else "—")
            mir = (f"{e['hcr_kept_withheld_part']} / {e['hcr_total_withheld_part']}"
                   if e.get("hcr_total_withheld_part") else "—")
            acc = (f"{_f(e.get('hcr_melody_acc_kept'), 1)} / {_f(e.get('hcr_melody_acc_all'), 1)}"
                   if e.get("hcr_total_withheld_part") else "—")
            print(f"| {e['epoch']} | {_f(e.get('val_OA'))} | {_f(e.get('val_robust_OA'))} | "
                  f"{_f(e.get('val_theta'), 3)} | {songs} | {mir} | {acc} | "
                  f"{_f(e.get('hcr_voicing_agree_kept'), 1) if e.get('hcr_total_withheld_part') else '—'} | "
                  f"{_f(e.get('loss_total'), 3)} | {e.get('epoch_cpu_s', 0):.0f} |")


if __name__ == "__main__":
    main()
