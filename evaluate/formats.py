"""Melody files: write and read (times, f0) as ``csv``, ``mirex`` or ``jams``.

- ``csv``:   header ``time,f0`` then one ``<seconds>,<Hz>`` row per frame.
- ``mirex``: ``<seconds>\\t<Hz>`` per line, no header (the MIREX Audio Melody Extraction output format).
- ``jams``:  one ``pitch_contour`` annotation (JAMS 0.3 schema, dense observations: ``time``, ``duration``,
  ``value`` = ``{index, frequency, voiced}``, ``confidence`` arrays). Written by hand: the ``jams`` package
  pulls in pandas/jsonschema for what is a fixed JSON layout. The JAMS value keeps ``frequency >= 0`` (schema
  minimum) and carries the sign of our f0 in ``voiced``; reading maps unvoiced frames back to ``-|f|`` (or 0).

In every format ``f0 = 0`` means unvoiced. All writes are atomic (temp file + ``os.replace``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hkdsme.pipeline.atomic import write_text
from hkdsme.pipeline.errors import InputError

FORMATS = ("csv", "mirex", "jams")
SUFFIX = {"csv": ".csv", "mirex": ".txt", "jams": ".jams"}
JAMS_VERSION = "0.3.4"


def _as_series(times, f0) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    f = np.asarray(f0, dtype=np.float64).reshape(-1)
    if t.shape != f.shape:
        raise ValueError(f"times ({t.size}) and f0 ({f.size}) differ in length")
    return t, f


def _rows(t: np.ndarray, f: np.ndarray, sep: str) -> str:
    # 6 decimals: 1 µs in time and 1 µHz in pitch, far below any melody tolerance
    return "".join(f"{a:.6f}{sep}{b:.6f}\n" for a, b in zip(t.tolist(), f.tolist()))


def write_melody(path, times, f0, fmt: str = "csv", *, confidence=None, source: str = "") -> Path:
    """Write (times, f0) to ``path`` in ``fmt`` (one of :data:`FORMATS`); returns the path."""
    t, f = _as_series(times, f0)
    path = Path(path)
    if fmt == "csv":
        text = "time,f0\n" + _rows(t, f, ",")
    elif fmt == "mirex":
        text = _rows(t, f, "\t")
    elif fmt == "jams":
        text = json.dumps(_jams_doc(np.round(t, 6), f, confidence, source))  # times to 1 µs, as in csv
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    write_text(path, text)
    return path


def _jams_doc(t: np.ndarray, f: np.ndarray, confidence, source: str) -> dict:
    from hkdsme import __version__

    conf = [None] * t.size if confidence is None else [float(c) for c in np.asarray(confidence).reshape(-1)]
    if len(conf) != t.size:
        raise ValueError(f"confidence ({len(conf)}) and times ({t.size}) differ in length")
    duration = float(t[-1]) if t.size else 0.0
    return {
        "file_metadata": {
            "title": source, "artist": "", "release": "", "duration": duration,
            "identifiers": {}, "jams_version": JAMS_VERSION,
        },
        "annotations": [{
            "annotation_metadata": {
                "curator": {"name": "", "email": ""}, "annotator": {}, "version": "", "corpus": "",
                "annotation_tools": f"hkdsme {__version__}", "annotation_rules": "", "validation": "",
                "data_source": "program",
            },
            "namespace": "pitch_contour",
            "data": {
                "time": t.tolist(),
                "duration": [0.0] * t.size,
                "value": [{"index": 0, "frequency": abs(b), "voiced": bool(b > 0)} for b in f.tolist()],
                "confidence": conf,
            },
            "sandbox": {},
            "time": 0.0,
            "duration": duration,
        }],
        "sandbox": {},
    }


def read_melody(path, fmt: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read (times, f0) written by :func:`write_melody` (format from the suffix when ``fmt`` is None).

    Raises :class:`InputError` for a missing or malformed file.
    """
    path = Path(path)
    if fmt is None:
        by_suffix = {v: k for k, v in SUFFIX.items()}
        fmt = by_suffix.get(path.suffix.lower())
        if fmt is None:
            raise InputError(path, f"cannot tell the format from the suffix {path.suffix!r}")
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        if fmt == "csv":
            with open(path, encoding="utf-8") as fh:
                header = fh.readline().strip().replace(" ", "")
                if header != "time,f0":
                    raise ValueError(f"expected header 'time,f0', got {header!r}")
                data = np.loadtxt(fh, delimiter=",", ndmin=2, dtype=np.float64)
        elif fmt == "mirex":
            data = np.loadtxt(path, ndmin=2, dtype=np.float64)  # any whitespace, MIREX files vary
        elif fmt == "jams":
            return _read_jams(path)
        else:
            raise InputError(path, f"unknown format {fmt!r}")
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise InputError(path, f"not a valid {fmt} melody file ({e})") from None
    if data.size == 0:
        return np.zeros(0), np.zeros(0)
    if data.shape[1] != 2:
        raise InputError(path, f"expected 2 columns (time, f0), got {data.shape[1]}")
    return data[:, 0].copy(), data[:, 1].copy()


def _read_jams(path: Path) -> tuple[np.ndarray, np.ndarray]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    anns = [a for a in doc.get("annotations", []) if a.get("namespace") == "pitch_contour"]
    if not anns:
        raise ValueError("no pitch_contour annotation")
    data = anns[0]["data"]
    if isinstance(data, list):  # sparse layout, also valid JAMS
        times = [o["time"] for o in data]
        values = [o["value"] for o in data]
    else:
        times, values = data["time"], data["value"]
    t = np.asarray(times, dtype=np.float64)
    f = np.array([v["frequency"] if v.get("voiced", v["frequency"] > 0) else -abs(v["frequency"])
                  for v in values], dtype=np.float64)
    f[f == 0] = 0.0  # -0.0 → 0.0
    return t, f
