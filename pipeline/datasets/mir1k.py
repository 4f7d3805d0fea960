"""MIR-1K (Hsu & Jang): 1,000 karaoke clips, accompaniment and voice on separate channels, MIDI pitch labels.

Layout: ``<root>/Wavfile/<clip>.wav|.flac`` (channel 0 accompaniment, channel 1 voice; mixed to mono, or remixed
at ``voice_db``) and ``<root>/PitchLabel/<clip>.pv``: one MIDI pitch per line, 0 = unvoiced, frame ``k`` at
``0.02·(k+1)`` s. Splits by singer: ``<root>/splits.json`` when present, else :data:`MIR1K_SINGERS`.
The ``.pv`` reader and the stereo-clip tracks here serve iKala too (:mod:`.ikala`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hkdsme.pipeline.datasets.core import Track, audio_by_stem, read_table
from hkdsme.pipeline.errors import InputError

OPTIONS = ("voice_db",)
# MIR-1K split by singer; the same rule as <root>/splits.json of the shared copy, used when that file is absent.
MIR1K_SINGERS = {"validation": ("Kenshin", "heycat"),
                 "test": ("abjones", "bobon", "geniusturtle", "tammy", "yifen")}
MIDI_MAX = 127.0


def list_tracks(root: Path, split, voice_db=None) -> list[Track]:
    clips = audio_by_stem(root / "Wavfile")
    if not clips:
        raise InputError(root / "Wavfile", "no .wav/.flac clips found (expected MIR-1K layout)")
    if split is not None:
        keep = set(split_clips(root, split, clips))
        clips = {c: p for c, p in clips.items() if c in keep}
    return stereo_tracks("mir1k", root, clips.items(), voice_db)


def split_clips(root: Path, split: str, clips) -> list[str]:
    """The clips of ``split``: ``<root>/splits.json``'s list, else the singer rule on the clip names."""
    sj = root / "splits.json"
    if sj.is_file():
        try:
            return list(json.loads(sj.read_text())["splits"][split]["clips"])
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(sj, f"no clip list for split {split!r}: {err!r}") from None
    singer = {c: c.split("_", 1)[0] for c in clips}
    held_out = {s for v in MIR1K_SINGERS.values() for s in v}
    if split == "train":
        return [c for c, s in singer.items() if s not in held_out]
    return [c for c, s in singer.items() if s in MIR1K_SINGERS[split]]


def load_f0(tr: Track):
    return read_pv(Path(tr.label_path), hop=0.02, offset=0.02)       # frame k at 0.02·(k+1)


# ------------------------------------------------------------------------ stereo clips with .pv labels (+ iKala)

def stereo_tracks(dataset: str, root: Path, names_paths, voice_db) -> list[Track]:
    """Tracks of stereo clips labeled by ``<root>/PitchLabel/<clip>.pv``; with ``voice_db``, remixed at that
    voice-to-accompaniment ratio under the id ``<clip>_v{+g}dB``."""
    tracks = []
    for clip, wav in names_paths:
        extra, tid = {}, clip
        if voice_db is not None:
            extra = {"voice_db": float(voice_db), "base_id": clip}
            tid = clip + f"_v{float(voice_db):+g}dB"
        tracks.append(Track(tid, dataset, wav, root / "PitchLabel" / f"{clip}.pv", extra))
    return tracks


def midi_to_hz(m: np.ndarray) -> np.ndarray:
    """``440 · 2 ** ((m − 69) / 12)`` for ``m > 0``; 0 (unvoiced) for ``m == 0``.

    ``m`` must be finite and within ``0..127`` (ValueError otherwise): NaN, negative or out-of-range values are
    damaged labels, never silently unvoiced or clipped (:func:`read_pv` reports the file and line).
    """
    m = np.asarray(m, dtype=np.float64)
    bad = ~(np.isfinite(m) & (m >= 0) & (m <= MIDI_MAX))
    if bad.any():
        i = int(np.argmax(bad.ravel()))
        raise ValueError(f"MIDI value {float(m.ravel()[i]):g} at index {i} outside 0..127 (0 = unvoiced)")
    return np.where(m > 0, 440.0 * 2.0 ** ((m - 69.0) / 12.0), 0.0)


def read_pv(path: Path, hop: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """A ``.pv`` file (one MIDI pitch per frame, 0 = unvoiced) → ``(times, f0 Hz)``, frame ``i`` at
    ``offset + hop·i``."""
    table, lines = read_table(path, 1)
    m = table[:, 0]
    bad = ~((m >= 0) & (m <= MIDI_MAX))
    if bad.any():
        k = int(np.argmax(bad))
        raise InputError(path, f"line {lines[k]}: MIDI value {m[k]:g} outside 0..127 (0 = unvoiced)")
    return offset + hop * np.arange(m.size, dtype=np.float64), midi_to_hz(m)
