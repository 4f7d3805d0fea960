"""iKala: 252 karaoke clips, accompaniment and voice on separate channels, MIDI pitch labels; no official split.

Layout: ``<root>/Wavfile/<id>.wav`` (left accompaniment, right voice; mixed to mono, or remixed at ``voice_db``)
and ``<root>/PitchLabel/<id>.pv``: one MIDI pitch per line, 0 = unvoiced, frame ``i`` at ``0.032·i + 0.016`` s.
"""
from __future__ import annotations

from pathlib import Path

from hkdsme.pipeline.datasets.core import Track, audio_by_stem
from hkdsme.pipeline.datasets.mir1k import read_pv, stereo_tracks
from hkdsme.pipeline.errors import InputError

OPTIONS = ("voice_db",)


def list_tracks(root: Path, split, voice_db=None) -> list[Track]:
    if split is not None:
        raise ValueError("ikala has no official split; use tracks_file")
    clips = audio_by_stem(root / "Wavfile")
    if not clips:
        raise InputError(root / "Wavfile", "no .wav clips found (expected iKala layout)")
    return stereo_tracks("ikala", root, clips.items(), voice_db)


def load_f0(tr: Track):
    return read_pv(Path(tr.label_path), hop=0.032, offset=0.016)     # frame i at 0.032·i + 0.016
