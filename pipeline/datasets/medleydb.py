"""MedleyDB: multitrack songs with MELODY2 annotations; the vocal tracks of the MSNet/TONet lineage.

Layout: ``<root>/Audio/<T>/<T>_MIX.wav``; ``<root>/Annotations/Melody_Annotations/MELODY2/<T>_MELODY2.csv``
(``time,f0``); with ``vocal_only`` (default) f0 is kept only inside the "singer" intervals of
``<root>/Annotations/Instrument_Activations/SOURCEID/<T>_SOURCEID.lab``. Tracks are listed from names, not from
disk (the audio may be absent): the lineage's lists per split (:data:`MEDLEYDB_LISTS`), a track-list file, or
every MELODY2 annotation (:func:`annotated`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hkdsme.pipeline.datasets.core import LISTS_DIR, Track, normalise_id, read_id_list, read_table
from hkdsme.pipeline.errors import InputError

OPTIONS = ("vocal_only",)
# MedleyDB vocal lists of the MSNet/TONet lineage (names only), per split.
MEDLEYDB_LISTS = {"train": "medleydb_train_35_tracks.txt",
                  "validation": "msnet_medleydb_vocal_val_13.txt",
                  "test": "tonet_test_medleydb_12.txt"}


def list_tracks(root: Path, split, vocal_only=True, names=None) -> list[Track]:
    """Tracks of ``names`` (default: the lineage list of ``split``, train when None), as ``<T>``, ``<T>_MIX`` or
    ``<T>_MIX.npy``."""
    if names is None:
        names = read_id_list(LISTS_DIR / MEDLEYDB_LISTS[split or "train"])
    names = list(dict.fromkeys(normalise_id(n) for n in names))
    mel = melody2_dir(root)
    src = root / "Annotations" / "Instrument_Activations" / "SOURCEID"
    return [Track(t, "medleydb", root / "Audio" / t / f"{t}_MIX.wav", mel / f"{t}_MELODY2.csv",
                  {"vocal_only": bool(vocal_only), "sourceid_path": src / f"{t}_SOURCEID.lab"})
            for t in names]


def melody2_dir(root: Path) -> Path:
    return root / "Annotations" / "Melody_Annotations" / "MELODY2"


def annotated(root: Path) -> list[str]:
    """Every track with a MELODY2 annotation under ``root`` (``all_tracks``)."""
    names = sorted(p.name[: -len("_MELODY2.csv")] for p in melody2_dir(root).glob("*_MELODY2.csv"))
    if not names:
        raise InputError(melody2_dir(root), "no <T>_MELODY2.csv annotations found (expected MedleyDB layout)")
    return names


def load_f0(tr: Track):
    """MELODY2 ``time,f0``; if ``vocal_only``, f0 is kept only where ``start < t < end`` of a SOURCEID interval
    whose label contains "singer" (MSNet ``select_vocal_track``, strict inequalities), else set to 0."""
    tab, _ = read_table(Path(tr.label_path), 2, header=True)
    times, f0 = tab[:, 0], tab[:, 1]
    if not tr.extra.get("vocal_only", True):
        return times, f0
    lab = Path(tr.extra["sourceid_path"])
    if not lab.is_file():
        raise InputError(lab, "SOURCEID activation file not found (needed for vocal-only labels)")
    singing = np.zeros(times.shape, dtype=bool)
    for st, et in singer_intervals(lab):
        singing |= (times > st) & (times < et)
    return times, np.where(singing, f0, 0.0)


def singer_intervals(lab: Path) -> list[tuple[float, float]]:
    """``(start, end)`` of the rows of a SOURCEID file (``start,end,label``; header ``start_time,...``) whose
    label contains "singer"."""
    try:
        lines = lab.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(lab, f"cannot read: {err}") from err
    out = []
    for i, line in enumerate(lines):
        parts = [p.strip() for p in line.split(",")]
        if not line.strip() or parts[0] == "start_time":
            continue
        try:
            st, et, label = float(parts[0]), float(parts[1]), parts[2]
        except (ValueError, IndexError):
            raise InputError(lab, f"line {i + 1}: expected 'start,end,label', got {line.strip()[:60]!r}") from None
        if "singer" in label:
            out.append((st, et))
    return out
