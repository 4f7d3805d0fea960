"""Collect the MIR-1K runs (issue 6) into the results table and the training-curve figure.

    python experiments/mir1k/summarize.py            # prints the markdown table, writes docs/img/mir1k_curves.png

Per run folder under ``runs/mir1k``: ``metrics.jsonl`` (one line per epoch, written by hkd-train),
``best.pt``'s epoch, and ``test-report/report.json`` (hkd-eval report on the test singers). CPU hours come
from the trainer's ``epoch_cpu_s`` when the run has it, else from the lane log's start/end stamps × threads.
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from hkdsme.train import curves

RUNS = {  # table row → (run folder, its name in runs.sh / the lane logs)
    "a-half: teacher, labeled half (for b/c/f/g)": ("a-half-teacher", "a-half"),
    "a: teacher, all train singers": ("a-teacher", "a"),
    "b: student, half labels, supervised": ("b-student-half", "b"),
    "c: HKDSME student, half labels + unlabeled": ("c-hkdsme-half", "c"),
    "c-tol: c with --hcr-tolerance 2 (not in the paper)": ("c-tol", "c-tol"),
    "d: student, all labels, supervised": ("d-student-all", "d"),
    "d-budget: d at the budget of b/c/e": ("d-budget", "d-budget"),
    "e: HKDSME student, all labels + remixes": ("e-hkdsme-all", "e"),
    "f: c with --faithful": ("f-faithful", "f"),
    "g: c --no-hcr": ("g-no-hcr", "g-no-hcr"),
    "g: c --no-kd": ("g-no-kd", "g-no-kd"),
    "g: c --no-cgl": ("g-no-cgl", "g-no-cgl"),
    "b-long: b at d's 1,200 steps (cosine)": ("b-long", "b-long"),
    "c-long: c at d's 1,200 steps (cosine)": ("c-long", "c-long"),
    "b-cont: b-long + 480 supervised steps (control for c-from-b)": ("b-cont", "b-cont"),
    "c-from-b: b-long + 480 HKDSME steps (c's teacher and data)": ("c-from-b", "c-from-b"),
    "d-cont: d + 480 supervised steps (control for e-from-d)": ("d-cont", "d-cont"),
    "e-from-d: d + 480 HKDSME steps (e's teacher and data); the embedded default": ("e-from-d", "e-from-d"),
}
LONG = {"b-long", "c-long", "b-cont", "c-from-b", "d-cont", "e-from-d"}   # session-3 runs: dashed curves
METRICS = ("VR", "VFA", "RPA", "RCA", "OA")


def read_metrics(run: Path) -> list[dict]:
    """The run's epochs (``hkdsme.train.curves.read_metrics``: a resumed epoch replaces the interrupted one), or []
    for a run that never started."""
    return curves.read_metrics(run) if (run / "metrics.jsonl").is_file() else []


def lane_hours(logs: Path) -> dict:
    """``{run name: wall hours}`` from ``== NAME start/trained HH:MM:SS`` lines of the lane logs."""
    out, start = {}, {}
    for f in sorted(logs.glob("lane*.txt")):
        for line in f.read_text().splitlines():
            p = line.split()
            if len(p) >= 4 and p[0] == "==" and p[2] in ("start", "trained"):
                t = datetime.strptime(p[3], "%H:%M:%S")
                if p[2] == "start":
                    start[p[1]] = t
                elif p[1] in start:
                    out[p[1]] = ((t - start[p[1]]).total_seconds() % 86400) / 3600
    return out


def test_scores(run: Path) -> dict | None:
    f = run / "test-report" / "report.json"
    if not f.is_file():
        return None
    (ck,) = json.loads(f.read_text())["checkpoints"].values()
    return ck["mean"]


def identical_run(root: Path, folder: str, m: list[dict]):
    """``(folder, name)`` of another finished run whose first epochs have exactly ``m``'s losses and val OA."""
    sig = [(r["loss_total"], r.get("val_OA")) for r in m]
    for other, key in RUNS.values():
        o = read_metrics(root / other)
        if other != folder and len(o) > len(m) and [(r["loss_total"], r.get("val_OA")) for r in o[:len(m)]] == sig:
            return other, key
    return None


def table(root: Path) -> str:
    lanes = lane_hours(root / "logs")
    head = "| run | steps | best val OA (epoch) | " + " | ".join(METRICS) + " | CPU h |"
    lines = [head, "|" + "---|" * (len(METRICS) + 4)]
    for name, (folder, key) in RUNS.items():
        m = read_metrics(root / folder)
        if not m:
            continue
        best = max(m, key=lambda r: r.get("val_OA", -1))
        steps = sum(int(r.get("steps", 0)) for r in m)
        if all("epoch_cpu_s" in r for r in m):
            cpu = f"{sum(r['epoch_cpu_s'] for r in m) / 3600:.2f}"
        else:
            cpu = f"≈{lanes[key]:.2f}" if key in lanes else "–"
        cfg_file = root / folder / "config.json"
        planned = json.loads(cfg_file.read_text())["epochs"] if cfg_file.is_file() else len(m)
        t = test_scores(root / folder)
        twin = identical_run(root, folder, m) if len(m) < planned else None
        if twin:
            name += (f" — stopped after {len(m)} epoch{'s' * (len(m) > 1)}: losses and validation scores equal {twin[1]}'s to every "
                     f"digit (HCR kept 0), so its test scores are {twin[1]}'s")
            t = test_scores(root / twin[0])
        elif len(m) < planned:
            name += f" — **{len(m)} of {planned} epochs run**"
        cells = [f"{t[k]:.2f}" for k in METRICS] if t else ["–"] * len(METRICS)
        lines.append(f"| {name} | {steps} | {best.get('val_OA', float('nan')):.2f} ({best['epoch']}) | "
                     + " | ".join(cells) + f" | {cpu} |")
    return "\n".join(lines)


def curves(root: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, (folder, label) in RUNS.items():
        m = read_metrics(root / folder)
        if not m:
            continue
        ep = [r["epoch"] for r in m]
        kw = dict(marker=".", label=label, ls="--" if label in LONG else "-")
        ax1.plot(ep, [r["loss_total"] for r in m], **kw)
        ax2.plot(ep, [r.get("val_OA", float("nan")) for r in m], **kw)
        if any("hcr_kept" in r for r in m):
            ax3.plot(ep, [r.get("hcr_kept", 0) for r in m], **kw)
    ax1.set(title="training loss (mean over the epoch)", xlabel="epoch")
    ax2.set(title="validation OA (%), validation singers", xlabel="epoch")
    ax3.set(title="HCR: pseudo-labelled segments kept", xlabel="epoch")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def kept_table(root: Path) -> str:
    lines = []
    for name, (folder, label) in RUNS.items():
        m = read_metrics(root / folder)
        if m and any("hcr_kept" in r for r in m):
            total = next((r["hcr_total"] for r in m if "hcr_total" in r), "?")
            kept = ", ".join(str(r.get("hcr_kept", 0)) for r in m)
            lines.append(f"| {label} | {total} | {kept} |")
    return "| run | pool | kept per epoch |\n|---|---:|---|\n" + "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/mir1k"))
    ap.add_argument("--figure", type=Path, default=Path("docs/img/mir1k_curves.png"))
    a = ap.parse_args()
    print(table(a.runs))
    print()
    print(kept_table(a.runs))
    print(f"\nfigure: {curves(a.runs, a.figure)}")


if __name__ == "__main__":
    main()
