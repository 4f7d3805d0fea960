"""Melody files: write and read (times, f0) as ``csv``, ``mirex`` or ``jams``.

- ``csv``:   header ``time,f0`` then one ``<seconds>,<Hz>`` row per frame; with a confidence, header
  ``time,f0,confidence`` and a third column (the voicing probability ``1 − p(unvoiced)``, 6 decimals).
- ``mirex``: ``<seconds>\\t<Hz>`` per line, no header (the MIREX Audio Melody Extraction output format: two
  columns, so no confidence; asking for one is a ValueError).
- ``jams``:  one ``pitch_contour`` annotation (JAMS 0.3 schema, dense observations: ``time``, ``duration``,
  ``value`` = ``{index, frequency, voiced}``, ``confidence`` arrays; confidence null unless given). Written by
  hand: the ``jams`` package pulls in pandas/jsonschema for what is a fixed JSON layout. The JAMS value keeps
  ``frequency >= 0`` (schema minimum) and carries the sign of our f0 in ``voiced``; reading maps unvoiced frames
  back to ``-|f|`` (or 0).

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


def _rows(sep: str, *columns: np.ndarray) -> str:
    # 6 decimals: 1 µs in time, 1 µHz in pitch, 1e-6 in confidence; far below any melody tolerance
    return "".join(sep.join(f"{v:.6f}" for v in row) + "\n" for row in zip(*(c.tolist() for c in columns)))


def _confidence(confidence, n: int) -> np.ndarray | None:
    if confidence is None:
        return None
    c = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if c.size != n:
        raise ValueError(f"confidence ({c.size}) and times ({n}) differ in length")
    return c


def write_melody(path, times, f0, fmt: str = "csv", *, confidence=None, source: str = "") -> Path:
    """Write (times, f0) to ``path`` in ``fmt`` (one of :data:`FORMATS`), with the per-frame ``confidence`` if
    given (csv, jams); returns the path."""
    t, f = _as_series(times, f0)
    c = _confidence(confidence, t.size)
    path = Path(path)
    if fmt == "csv":
        text = ("time,f0\n" + _rows(",", t, f)) if c is None else ("time,f0,confidence\n" + _rows(",", t, f, c))
    elif fmt == "mirex":
        if c is not None:
            raise ValueError("the mirex format has no confidence column (time and f0 only); use csv or jams")
        text = _rows("\t", t, f)
    elif fmt == "jams":
        text = json.dumps(_jams_doc(np.round(t, 6), f, c, source))  # times to 1 µs, as in csv
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    write_text(path, text)
    return path


def _jams_doc(t: np.ndarray, f: np.ndarray, confidence, source: str) -> dict:
    from hkdsme import __version__

    conf = [None] * t.size if confidence is None else confidence.tolist()
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


def read_melody(path, fmt: str | None = None, *, return_confidence: bool = False):
    """Read ``(times, f0)`` written by :func:`write_melody` (format from the suffix when ``fmt`` is None); with
    ``return_confidence``, ``(times, f0, confidence)``.

    Raises :class:`InputError` for a missing or malformed file, or one without the confidence asked for.
    """
    path = Path(path)
    if fmt is None:
        by_suffix = {v: k for k, v in SUFFIX.items()}
        fmt = by_suffix.get(path.suffix.lower())
        if fmt is None:
            raise InputError(path, f"cannot tell the format from the suffix {path.suffix!r}")
    if not path.is_file():
        raise InputError(path, "no such file")
    names = ["time", "f0"]
    try:
        if fmt == "csv":
            with open(path, encoding="utf-8") as fh:
                header = fh.readline().strip().replace(" ", "")
                if header not in ("time,f0", "time,f0,confidence"):
                    raise ValueError(f"expected header 'time,f0' or 'time,f0,confidence', got {header!r}")
                names = header.split(",")
                data = np.loadtxt(fh, delimiter=",", ndmin=2, dtype=np.float64)
        elif fmt == "mirex":
            data = np.loadtxt(path, ndmin=2, dtype=np.float64)  # any whitespace, MIREX files vary
        elif fmt == "jams":
            t, f, c = _read_jams(path)
            cols = [t, f] + ([c] if c is not None else [])
            data, names = np.stack(cols, axis=1), ["time", "f0", "confidence"][:len(cols)]
        else:
            raise InputError(path, f"unknown format {fmt!r}")
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise InputError(path, f"not a valid {fmt} melody file ({e})") from None
    if data.size == 0:
        data = np.zeros((0, len(names)))
    if data.shape[1] != len(names):
        raise InputError(path, f"expected {len(names)} columns ({', '.join(names)}), got {data.shape[1]}")
    out = (data[:, 0].copy(), data[:, 1].copy())
    if not return_confidence:
        return out
    if "confidence" not in names:
        raise InputError(path, f"no confidence in this {fmt} melody file"
                         + (" (the format has none)" if fmt == "mirex" else " (predict with --confidence)"))
    return out + (data[:, 2].copy(),)


def _read_jams(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(times, f0, confidence or None when the file holds none)`` of the first pitch_contour annotation."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    anns = [a for a in doc.get("annotations", []) if a.get("namespace") == "pitch_contour"]
    if not anns:
        raise ValueError("no pitch_contour annotation")
    data = anns[0]["data"]
    if isinstance(data, list):  # sparse layout, also valid JAMS
        times = [o["time"] for o in data]
        values = [o["value"] for o in data]
        confs = [o.get("confidence") for o in data]
    else:
        times, values = data["time"], data["value"]
        confs = data.get("confidence") or [None] * len(times)
    t = np.asarray(times, dtype=np.float64)
    f = np.array([v["frequency"] if v.get("voiced", v["frequency"] > 0) else -abs(v["frequency"])
                  for v in values], dtype=np.float64)
    f[f == 0] = 0.0  # -0.0 → 0.0
    c = None if any(x is None for x in confs) else np.asarray(confs, dtype=np.float64)
    return t, f, c
