"""Datasets as they ship, one module each, and the registry that lists their tracks by name.

``list_tracks(name, root, ...)`` → :class:`Track` objects: ``Track.load_audio()`` → float32 8 kHz mono;
``Track.load_f0()`` → ``(times_s, f0_hz)`` in the dataset's NATIVE annotation times (0 Hz = unvoiced) or ``None``
for unlabeled audio; ``labels.f0_to_grid`` maps them onto the 10 ms grid later. ``root`` = the dataset folder:

- ``mir1k`` (:mod:`.mir1k`): ``Wavfile/<clip>.wav|.flac`` (ch0 accompaniment, ch1 voice);
  ``PitchLabel/<clip>.pv``: MIDI per line, 0 = unvoiced, frame k at ``0.02·(k+1)`` s.
- ``ikala`` (:mod:`.ikala`): ``Wavfile/<id>.wav`` (left accompaniment, right voice); ``PitchLabel/<id>.pv``:
  MIDI, frame i at ``0.032·i + 0.016`` s.
- ``medleydb`` (:mod:`.medleydb`): ``Audio/<T>/<T>_MIX.wav``;
  ``Annotations/Melody_Annotations/MELODY2/<T>_MELODY2.csv`` (time,f0), kept only inside "singer" SOURCEID
  intervals.
- ``adc2004``, ``mirex05``, ``synthetic`` (:mod:`.reference`): ``<name>.wav``; ``<name>REF.txt``: time f0.
- ``unlabeled`` (:mod:`.unlabeled`): any tree of audio files; no labels.
- ``ultrastar`` (:mod:`hkdsme.pipeline.ultrastar`): ``songs/<name>/audio.ogg``; ``songs/<name>/song.txt``
  (UltraStar notes, offset and octave resolved per song), or with ``labels``, ``<labels>/<name>.f0.csv`` (weak
  labels, ``hkd-prep weak-labels``); split validation = splits.json ``dev``, train = ``train``.
- ``provoices`` (:mod:`hkdsme.pipeline.provoices`): any tree of a cappella voices; ``<labels>/<id>.f0.csv``
  (``hkd-prep label-f0``), mixed over drawn accompaniments.

A dataset module provides ``list_tracks(root, split, **options)`` and ``load_f0(track)``; :data:`_REGISTRY` names
them. Shared pieces (:class:`Track`, id lists, audio search, the label-table reader) are in :mod:`.core`.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from hkdsme.pipeline import ultrastar
from hkdsme.pipeline.datasets import ikala, medleydb, mir1k, reference, unlabeled
from hkdsme.pipeline.datasets.core import (AUDIO_EXTENSIONS, LISTS_DIR, Track, find_audio, read_id_list,
                                           refuse_duplicate_ids, select)
from hkdsme.pipeline.datasets.medleydb import MEDLEYDB_LISTS
from hkdsme.pipeline.datasets.mir1k import MIDI_MAX, MIR1K_SINGERS, midi_to_hz
from hkdsme.pipeline.datasets.reference import REF_TEST_LISTS, REF_TEST_NAMES
from hkdsme.pipeline.errors import InputError

__all__ = ["AUDIO_EXTENSIONS", "DATASETS", "LISTS_DIR", "MEDLEYDB_LISTS", "MIDI_MAX", "MIR1K_SINGERS",
           "REF_TEST_LISTS", "REF_TEST_NAMES", "SPLITS", "Track", "f0_reader", "find_audio", "list_tracks",
           "midi_to_hz", "read_id_list", "track_list_name"]


def _provoices(fn: str):
    """``hkdsme.pipeline.provoices.<fn>``, imported at call time: that module imports this package."""
    return lambda *a, **k: getattr(importlib.import_module("hkdsme.pipeline.provoices"), fn)(*a, **k)


# name → (list_tracks(root, split, **options), load_f0(track), the options list_tracks takes)
_REGISTRY = {
    "mir1k": (mir1k.list_tracks, mir1k.load_f0, mir1k.OPTIONS),
    "medleydb": (medleydb.list_tracks, medleydb.load_f0, medleydb.OPTIONS),
    "adc2004": (reference.lister("adc2004"), reference.load_f0, reference.OPTIONS),
    "mirex05": (reference.lister("mirex05"), reference.load_f0, reference.OPTIONS),
    "ikala": (ikala.list_tracks, ikala.load_f0, ikala.OPTIONS),
    "unlabeled": (unlabeled.list_tracks, None, unlabeled.OPTIONS),
    "synthetic": (reference.lister("synthetic"), reference.load_f0, reference.OPTIONS),
    "ultrastar": (ultrastar.list_tracks, ultrastar.load_f0, ultrastar.OPTIONS),
    "provoices": (_provoices("list_provoices"), _provoices("read_f0"), ("labels", "accomp")),
}
DATASETS = tuple(_REGISTRY)
SPLITS = ("train", "validation", "test")


def f0_reader(name: str):
    """The f0 reader of dataset ``name`` (what :meth:`Track.load_f0` calls)."""
    reader = _REGISTRY[name][1] if name in _REGISTRY else None
    if reader is None:
        raise ValueError(f"dataset {name!r} has no f0 annotations")
    return reader


def list_tracks(name: str, root, split: str | None = None, tracks_file=None, limit: int | None = None,
                all_tracks: bool = False, **options) -> list[Track]:
    """Tracks of dataset ``name`` under ``root``.

    ``split`` ∈ train/validation/test where the dataset defines one (mir1k: ``splits.json`` or the singer rule;
    medleydb: the lineage lists; adc2004/mirex05: only "test"; ultrastar: validation/train = splits.json's
    dev/train). adc2004/mirex05 default to the literature's
    vocal test lists (:data:`REF_TEST_LISTS`, built in; a listed track missing from ``root`` is an
    ``InputError``); ``all_tracks`` lists every ``<name>.wav`` instead (medleydb: every MELODY2 annotation, all
    others: no split). ``tracks_file``: text file of track ids, one per line (blank lines and ``#`` comments
    skipped), selecting and ordering the tracks among ALL of the dataset's (or the split's) tracks; unknown ids
    raise ``InputError(tracks_file, ...)`` (medleydb without ``split``: the file is the track list, ``<T>``,
    ``<T>_MIX`` or ``<T>_MIX.npy``). ``all_tracks`` excludes ``split`` and ``tracks_file``. ``limit``: keep the
    first N. ``options`` go to the adapter: ``voice_db`` (mir1k, ikala; remix at that voice-to-accompaniment
    ratio, id suffix ``_v{+g}dB``), ``vocal_only`` (medleydb, default True). :func:`track_list_name` says in
    words which list a call uses.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if all_tracks and (split is not None or tracks_file is not None):
        raise ValueError("all tracks (--all-tracks) cannot be combined with a split (--split) or a track list "
                         "(--tracks)")
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset root is not a directory")
    lister, _, allowed = _REGISTRY[name]
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"dataset {name!r} takes no option(s) {sorted(unknown)}; allowed: {list(allowed)}")
    if name == "medleydb" and tracks_file is not None and split is None:
        # MedleyDB is listed from names, not from disk (the audio may be absent): the file IS the list
        tracks = lister(root, None, names=read_id_list(tracks_file), **options)
    elif name == "medleydb" and all_tracks:
        tracks = lister(root, None, names=medleydb.annotated(root), **options)
    else:
        if name in REF_TEST_LISTS and split is None and tracks_file is None and not all_tracks:
            split = "test"            # the literature's vocal list by default
        tracks = lister(root, split, **options)
        refuse_duplicate_ids(tracks, root)
        if tracks_file is not None:
            tracks = select(tracks, tracks_file)
    if limit is not None:
        tracks = tracks[: max(int(limit), 0)]
    return tracks


def track_list_name(name: str, split: str | None = None, tracks_file=None, all_tracks: bool = False) -> str:
    """Which track list :func:`list_tracks` uses for these arguments, in words (for reports)."""
    if tracks_file is not None:
        return f"--tracks {tracks_file}" + (f" (within split {split!r})" if split else "")
    if all_tracks:
        return "all tracks (--all-tracks)"
    if name in REF_TEST_LISTS and split in (None, "test"):
        return f"built-in {REF_TEST_LISTS[name]} ({REF_TEST_NAMES[name]})"
    if name == "medleydb":
        return f"built-in {MEDLEYDB_LISTS[split or 'train']} (split {split or 'train'})"
    if name == "ultrastar" and split in ultrastar.SPLIT_KEYS:
        return f"split {split!r} (splits.json {ultrastar.SPLIT_KEYS[split]!r})"
    return f"split {split!r}" if split else "all tracks"
