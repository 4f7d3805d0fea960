"""Training curves of run folders in one figure: ``hkd-train plot RUN... --out curves.png``.

One job: read each run's ``metrics.jsonl`` (one JSON line per epoch, written by the trainer) and draw, against
training steps (the sum of each epoch's ``steps``, so runs with other epoch sizes line up):

1. validation OA — plain validation solid, robustness validation (``--val-robust``) dashed, same colour; the
   epoch kept as ``best.pt`` (highest ``val_select``) is ringed; epochs without validation (``--val-every``) are
   skipped, not drawn as zeros;
2. the training loss (``loss_total``, mean over the epoch);
3. HCR: pseudo-labelled segments kept, % of the pool (only when some run selected any).

A resumed run that redid an epoch has that epoch's line twice: the last one counts. Files are written atomically.
"""
from __future__ import annotations

import json
from pathlib import Path

from hkdsme.evaluate.plots import save_png
from hkdsme.pipeline.errors import InputError


def read_metrics(run) -> list[dict]:
    """The epochs of run folder ``run`` from its ``metrics.jsonl``, in epoch order (the last line of a repeated
    epoch wins). ``InputError`` when the folder has no metrics, or a line is not an epoch record."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise InputError(run, "no metrics.jsonl: not a training run folder (hkd-train teacher/run --out RUN)")
    by_epoch: dict[int, dict] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            epoch = int(row["epoch"])
        except (ValueError, KeyError, TypeError):
            raise InputError(path, f"line {n} is not an epoch record (JSON with an 'epoch')") from None
        by_epoch[epoch] = row
    if not by_epoch:
        raise InputError(path, "no epochs recorded yet")
    return [by_epoch[e] for e in sorted(by_epoch)]


def steps_axis(rows: list[dict]) -> list[int]:
    """Training steps done at the end of each epoch: the running sum of ``steps`` (1 per epoch if absent)."""
    out, total = [], 0
    for r in rows:
        total += int(r.get("steps", 1))
        out.append(total)
    return out


def best_epoch(rows: list[dict]) -> dict | None:
    """The row ``best.pt`` holds: highest ``val_select`` (the trainer's selection score), else ``val_OA``."""
    for key in ("val_select", "val_OA"):
        scored = [r for r in rows if isinstance(r.get(key), (int, float))]
        if scored:
            return max(scored, key=lambda r: r[key])
    return None


def _series(rows, xs, key):
    pts = [(x, r[key]) for x, r in zip(xs, rows) if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_runs(runs, out, *, labels=None, title: str | None = None) -> Path:
    """Draw the curves of run folders ``runs`` (labels: their folder names unless given) into PNG ``out``."""
    runs = [Path(r) for r in runs]
    if not runs:
        raise ValueError("no run folders given")
    labels = list(labels) if labels else [r.name for r in runs]
    if len(labels) != len(runs):
        raise ValueError(f"{len(runs)} run(s) but {len(labels)} label(s)")
    data = [(lab, read_metrics(r)) for lab, r in zip(labels, runs)]      # every error before any drawing

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    hcr = any(r.get("hcr_total") for _, rows in data for r in rows)
    fig, axes = plt.subplots(1, 3 if hcr else 2, figsize=(15 if hcr else 11, 4.2))
    ax_oa, ax_loss = axes[0], axes[1]
    for k, (lab, rows) in enumerate(data):
        colour = f"C{k % 10}"
        xs = steps_axis(rows)
        x, y = _series(rows, xs, "val_OA")
        ax_oa.plot(x, y, ".-", color=colour, label=f"{lab} (validation)")
        x, y = _series(rows, xs, "val_robust_OA")
        if x:
            ax_oa.plot(x, y, ".--", color=colour, label=f"{lab} (robustness)")
        best = best_epoch(rows)
        if best is not None:
            bx = xs[rows.index(best)]
            for key in ("val_OA", "val_robust_OA"):
                if isinstance(best.get(key), (int, float)):
                    ax_oa.plot([bx], [best[key]], "o", mfc="none", mec=colour, ms=11)
        ax_loss.plot(*_series(rows, xs, "loss_total"), ".-", color=colour, label=lab)
        if hcr:
            pts = [(x, 100.0 * r.get("hcr_kept", 0) / r["hcr_total"]) for x, r in zip(xs, rows) if r.get("hcr_total")]
            if pts:
                axes[2].plot(*zip(*pts), ".-", color=colour, label=lab)
    ax_oa.set(title="overall accuracy (%), best.pt ringed", xlabel="training steps")
    ax_loss.set(title="training loss (mean over the epoch)", xlabel="training steps")
    if hcr:
        axes[2].set(title="HCR: pool segments kept as pseudo-labels (%)", xlabel="training steps")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_png(fig, out)
