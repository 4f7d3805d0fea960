"""Reference-style test sets: ADC2004, MIREX05 and the built-in synthetic songs (``<name>.wav`` + ``<name>REF.txt``).

Layout: ``<root>/<name>.wav`` and ``<root>/<name>REF.txt``: ``time f0`` rows (tabs, spaces or commas), 0 Hz =
unvoiced. ADC2004 and MIREX05 default to the vocal-melody literature's test lists (:data:`REF_TEST_LISTS`, split
"test"); ``all_tracks`` (or the synthetic set) lists every ``<name>.wav``.
"""
from __future__ import annotations

from pathlib import Path

from hkdsme.pipeline.datasets.core import LISTS_DIR, Track, normalise_id, read_id_list, read_table
from hkdsme.pipeline.errors import InputError

OPTIONS = ()
# The vocal-melody literature's test sets (HKDSME/MSNet lineage): ADC2004's 12 vocal tracks, MIREX05's 9. They are
# the DEFAULT track lists of these datasets (also split="test"); ``all_tracks`` / a ``tracks_file`` choose others.
REF_TEST_LISTS = {"adc2004": "hkdsme_test_04_npy.txt", "mirex05": "hkdsme_test_05_npy.txt"}
REF_TEST_NAMES = {"adc2004": "ADC2004's 12 vocal tracks", "mirex05": "MIREX05's 9 vocal tracks"}


def lister(dataset: str):
    """``list_tracks(root, split)`` of ``dataset`` (adc2004, mirex05 or synthetic)."""
    def list_tracks(root: Path, split) -> list[Track]:
        wavs = {p.stem: p for p in sorted(root.glob("*.wav")) + sorted(root.glob("*.WAV"))}
        if not wavs:
            raise InputError(root, f"no <name>.wav files found (expected {dataset} layout)")
        if split is not None:
            if split != "test" or dataset not in REF_TEST_LISTS:
                raise ValueError(f"{dataset} has no {split!r} split" + (" (only 'test')" if dataset in
                                                                         REF_TEST_LISTS else ""))
            lst = REF_TEST_LISTS[dataset]
            keep = [normalise_id(n) for n in read_id_list(LISTS_DIR / lst)]
            missing = [k for k in keep if k not in wavs]
            if missing:
                raise InputError(root, f"track(s) of the built-in list {lst} ({REF_TEST_NAMES[dataset]}) "
                                       f"missing: {missing}; --all-tracks uses whatever <name>.wav files exist")
            wavs = {k: wavs[k] for k in keep}
        return [Track(n, dataset, p, ref_label(root, n)) for n, p in wavs.items()]
    return list_tracks


def ref_label(root: Path, name: str) -> Path:
    """``<name>REF.txt``; for ``<x>MIDI.wav`` whose reference ships as ``<x>REF.txt`` (MIREX05's
    ``train13MIDI.wav`` → ``train13REF.txt``) that file, when ``<x>MIDIREF.txt`` does not exist."""
    ref = root / f"{name}REF.txt"
    if not ref.is_file() and name.endswith("MIDI"):
        alt = root / f"{name[:-len('MIDI')]}REF.txt"
        if alt.is_file():
            return alt
    return ref


def load_f0(tr: Track):
    tab, _ = read_table(Path(tr.label_path), 2)
    return tab[:, 0], tab[:, 1]
