"""Figures: melody contours over the CFP spectrum channel, and the summary bar chart (matplotlib, Agg).

The y axis is the CFP row axis, ``row = 60·log2(f / 31 Hz)`` (row i holds 31·2^(i/60) Hz), so a contour in Hz is
drawn at ``60·log2(f0/31)``; unvoiced frames (f0 <= 0) are left blank. A per-frame confidence (the voicing
probability ``1 − p(unvoiced)``, 0..1) is drawn as a lane under the contour, on the same time axis. Files are
written atomically.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hkdsme.pipeline import grid
from hkdsme.pipeline.atomic import atomic_path

MAX_COLUMNS = 4000   # spectrum columns drawn; longer tracks are decimated for display only


def _figure(**kw):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.figure(**kw)


def save_png(fig, path) -> Path:
    """Write matplotlib figure ``fig`` to PNG ``path`` atomically and close it (also used by hkdsme.train.curves)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def _rows(f0) -> np.ndarray:
    f = np.asarray(f0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, grid.BINS_PER_OCTAVE * np.log2(f / grid.FMIN), np.nan)


def plot_track(path, spectrum, contours: dict, *, reference=None, confidence=None, title: str = "") -> Path:
    """PNG of ``spectrum`` (320, T) (CFP channel 0, frame i at (i+1)·10 ms) with f0 contours on top.

    ``contours``: ``{label: (times, f0)}``; ``reference``: optional ``(times, f0)`` drawn in black;
    ``confidence``: optional ``(times, confidence in 0..1)`` drawn as a lane below, sharing the time axis.
    """
    if confidence is None:
        plt, fig = _figure(figsize=(12, 4))
        ax = fig.add_subplot(1, 1, 1)
    else:
        plt, fig = _figure(figsize=(12, 5))
        ax, lane = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    if spectrum is not None and spectrum.shape[-1] > 0:
        spec = np.asarray(spectrum, dtype=np.float32)
        step = max(1, -(-spec.shape[-1] // MAX_COLUMNS))
        t_end = (spec.shape[-1] + 1) * grid.FRAME_PERIOD
        ax.imshow(spec[:, ::step], origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                  extent=(grid.FRAME_PERIOD / 2, t_end - grid.FRAME_PERIOD / 2, -0.5, grid.N_FREQ - 0.5))
    if reference is not None:
        ax.plot(reference[0], _rows(reference[1]), color="k", lw=2.5, label="reference")
    colors = ["#00e5ff", "#7cfc00", "#ff4081", "#ffd740", "#b388ff"]
    for i, (label, (t, f)) in enumerate(contours.items()):
        ax.plot(t, _rows(f), color=colors[i % len(colors)], lw=1.0, label=label)
    hz = [50, 100, 200, 400, 800]
    ax.set_yticks(_rows(hz))
    ax.set_yticklabels([str(h) for h in hz])
    ax.set_ylim(-0.5, grid.N_FREQ - 0.5)
    ax.set_ylabel("f0 (Hz)")
    ax.set_title(title)
    if contours or reference is not None:
        ax.legend(loc="upper right", fontsize=8)
    if confidence is not None:
        t, c = (np.asarray(a, dtype=np.float64) for a in confidence)
        lane.fill_between(t, c, color="#00838f", alpha=0.35, lw=0)
        lane.plot(t, c, color="#00838f", lw=0.8)
        lane.set_ylim(0, 1)
        lane.set_yticks([0, 0.5, 1])
        lane.set_ylabel("confidence")
        lane.grid(axis="y", lw=0.5, alpha=0.5)
    (ax if confidence is None else lane).set_xlabel("time (s)")
    fig.tight_layout()
    return save_png(fig, path)


def plot_summary(path, means: dict, metrics=("VR", "VFA", "RPA", "RCA", "OA"), title: str = "") -> Path:
    """Grouped bar chart: one group per metric, one bar per checkpoint (``means = {name: {metric: %}}``)."""
    plt, fig = _figure(figsize=(max(6, 1.2 * len(metrics) * max(1, len(means)) / 2 + 3), 4))
    ax = fig.add_subplot(1, 1, 1)
    names = list(means)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(metrics))
    for i, name in enumerate(names):
        vals = [means[name].get(m, np.nan) for m in metrics]
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(metrics)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_title(title)
    if names:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
