"""Unlabeled audio: any tree of audio files (:data:`~hkdsme.pipeline.datasets.core.AUDIO_EXTENSIONS`), no labels.

Track id: the path relative to ``root`` without extension, folders joined by ``__`` (ids name the cache shards);
the same name with two extensions keeps the extension (``song_mp3``, ``song_wav``).
"""
from __future__ import annotations

from pathlib import Path

from hkdsme.pipeline.datasets.core import AUDIO_EXTENSIONS, Track, find_audio
from hkdsme.pipeline.errors import InputError

OPTIONS = ()


def list_tracks(root: Path, split) -> list[Track]:
    if split is not None:
        raise ValueError("unlabeled data has no split")
    files = find_audio(root)
    if not files:
        raise InputError(root, f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    rels = [p.relative_to(root).with_suffix("").as_posix() for p in files]
    counts = {}
    for r in rels:
        counts[r] = counts.get(r, 0) + 1
    # ids name the cache shards, so they must be unique: the same name with two extensions keeps the extension;
    # two different paths that join to one id (a/b.wav, a__b.wav) are refused by list_tracks
    return [Track(r.replace("/", "__") + (f"_{p.suffix.lower()[1:]}" if counts[r] > 1 else ""), "unlabeled", p, None)
            for r, p in zip(rels, files)]
