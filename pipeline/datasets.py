"""Dataset adapters: each reads one dataset AS IT SHIPS and yields ``Track`` objects.

``Track.load_audio()`` → float32 8 kHz mono; ``Track.load_f0()`` → ``(times_s, f0_hz)`` in the dataset's NATIVE
annotation times (0 Hz = unvoiced) or ``None`` for unlabeled audio. ``labels.f0_to_grid`` maps them onto the
10 ms grid later. Layouts (``root`` = the dataset folder):

=========  ====================================================  =============================================
name       audio                                                 annotation
=========  ====================================================  =============================================
mir1k      ``Wavfile/<clip>.wav|.flac`` (ch0 accomp., ch1 voice)  ``PitchLabel/<clip>.pv``: MIDI per line, 0 =
                                                                  unvoiced, frame k at ``0.02·(k+1)`` s
ikala      ``Wavfile/<id>.wav`` (left accomp., right voice)      ``PitchLabel/<id>.pv``: MIDI, frame i at
                                                                  ``0.032·i + 0.016`` s
medleydb   ``Audio/<T>/<T>_MIX.wav``                              ``Annotations/Melody_Annotations/MELODY2/
                                                                  <T>_MELODY2.csv`` (time,f0), kept only inside
                                                                  "singer" SOURCEID intervals
adc2004,   ``<name>.wav``                                         ``<name>REF.txt``: time f0 (tabs/spaces)
mirex05,
synthetic
unlabeled  any tree of wav/flac/mp3/ogg                           none
ultrastar  ``songs/<name>/audio.ogg``                             ``songs/<name>/song.txt`` (UltraStar notes, offset
                                                                  and octave resolved per song; split validation =
                                                                  splits.json ``dev``, train = ``train``;
                                                                  :mod:`hkdsme.pipeline.ultrastar`)
=========  ====================================================  =============================================

MIDI → Hz: ``440 · 2 ** ((m − 69) / 12)`` for ``m > 0``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hkdsme.pipeline import audio as audio_io
from hkdsme.pipeline import grid, ultrastar
from hkdsme.pipeline.errors import InputError

DATASETS = ("mir1k", "medleydb", "adc2004", "mirex05", "ikala", "unlabeled", "synthetic", "ultrastar", "provoices")
SPLITS = ("train", "validation", "test")
# The one list of audio file extensions searched in folders (unlabeled datasets, ``hkd-eval predict FOLDER``).
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aif", ".aiff", ".au")
LISTS_DIR = Path(__file__).resolve().parent / "lists"

# MIR-1K split by singer; the same rule as <root>/splits.json of the shared copy, used when that file is absent.
MIR1K_SINGERS = {"validation": ("Kenshin", "heycat"),
                 "test": ("abjones", "bobon", "geniusturtle", "tammy", "yifen")}
# MedleyDB vocal lists of the MSNet/TONet lineage (names only), per split.
MEDLEYDB_LISTS = {"train": "medleydb_train_35_tracks.txt",
                  "validation": "msnet_medleydb_vocal_val_13.txt",
                  "test": "tonet_test_medleydb_12.txt"}
# The vocal-melody literature's test sets (HKDSME/MSNet lineage): ADC2004's 12 vocal tracks, MIREX05's 9. They are
# the DEFAULT track lists of these adapters (also split="test"); ``all_tracks`` / a ``tracks_file`` choose others.
REF_TEST_LISTS = {"adc2004": "hkdsme_test_04_npy.txt", "mirex05": "hkdsme_test_05_npy.txt"}
REF_TEST_NAMES = {"adc2004": "ADC2004's 12 vocal tracks", "mirex05": "MIREX05's 9 vocal tracks"}


@dataclass
class Track:
    """One audio file and its (optional) melody annotation. ``extra`` holds adapter options (e.g. ``voice_db``)."""

    track_id: str
    dataset: str
    audio_path: Path
    label_path: Path | None
    extra: dict = field(default_factory=dict)

    def load_audio(self) -> np.ndarray:
        """float32 mono at 8 kHz; ``InputError(audio_path, ...)`` if unusable."""
        voice_db = self.extra.get("voice_db")
        if voice_db is not None:
            return _remix_voice(self.audio_path, float(voice_db))
        return audio_io.load_audio(self.audio_path, sr=grid.SR)

    def load_f0(self):
        """``(times_s, f0_hz)`` float64 in native annotation times, 0 Hz = unvoiced; ``None`` if unlabeled."""
        if self.label_path is None:
            return None
        path = Path(self.label_path)
        if not path.is_file():
            raise InputError(path, "label file not found")
        times, f0 = _F0_READERS[self.dataset](self)
        if times.size == 0:
            raise InputError(path, "label file has no rows")
        if not (np.isfinite(times).all() and np.isfinite(f0).all()):
            raise InputError(path, "label file contains NaN or inf")
        if times.size > 1 and not (np.diff(times) > 0).all():
            raise InputError(path, "label times are not strictly increasing")
        return times, f0


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
    if name not in _LISTERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if all_tracks and (split is not None or tracks_file is not None):
        raise ValueError("all tracks (--all-tracks) cannot be combined with a split (--split) or a track list "
                         "(--tracks)")
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset root is not a directory")
    lister, allowed = _LISTERS[name]
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"dataset {name!r} takes no option(s) {sorted(unknown)}; allowed: {list(allowed)}")
    if name == "medleydb" and tracks_file is not None and split is None:
        # MedleyDB is listed from names, not from disk (the audio may be absent): the file IS the list
        tracks = lister(root, None, names=read_id_list(tracks_file), **options)
    elif name == "medleydb" and all_tracks:
        tracks = lister(root, None, names=_medleydb_annotated(root), **options)
    else:
        if name in REF_TEST_LISTS and split is None and tracks_file is None and not all_tracks:
            split = "test"            # the literature's vocal list by default
        tracks = lister(root, split, **options)
        _refuse_duplicate_ids(tracks, root)
        if tracks_file is not None:
            tracks = _select(tracks, tracks_file)
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


# ---------------------------------------------------------------------------------------------- helpers

def _refuse_duplicate_ids(tracks: list[Track], root: Path) -> None:
    """Track ids name the cache shards (``shards.shard_relpath``: ``/`` → ``__``), so two files whose ids map to one
    shard (``a/b.wav`` and ``a__b.wav`` of an unlabeled folder) would overwrite each other's features: refuse, with
    one line naming both files. (Refused rather than renamed: an id must not depend on which other files exist.)
    """
    seen: dict[str, Track] = {}
    for t in tracks:
        key = t.track_id.replace("\\", "/").replace("/", "__")
        first = seen.setdefault(key, t)
        if first is not t:
            a, b = (str(x.audio_path.relative_to(root)) if x.audio_path.is_relative_to(root) else str(x.audio_path)
                    for x in (first, t))
            raise InputError(root, f"duplicate track id {key!r}: {a} and {b} map to the same id (folders are "
                                   f"joined with '__'); rename one of them")


def read_id_list(path) -> list[str]:
    """Track ids of a list file: one per line, stripped (CRLF too); blank lines and ``#`` comments skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read track list: {err}") from err
    return [s for s in (line.split("#", 1)[0].strip() for line in text.splitlines()) if s]


def _normalise_id(name: str) -> str:
    """``AimeeNorwich_Child_MIX.npy`` / ``daisy1.wav`` / ``daisy1`` → the bare track name."""
    stem = re.sub(r"\.(npy|wav|flac|mp3|ogg|h5)$", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"_MIX$", "", stem)


def _select(tracks: list[Track], tracks_file) -> list[Track]:
    wanted = read_id_list(tracks_file)
    by_id: dict[str, list[Track]] = {}
    for tr in tracks:   # ids match with or without the remix suffix / file extension
        for key in {tr.track_id, tr.extra.get("base_id", tr.track_id)}:
            by_id.setdefault(key, []).append(tr)
    out, missing, seen = [], [], set()
    for w in wanted:
        hits = by_id.get(w) or by_id.get(_normalise_id(w))
        if not hits:
            missing.append(w)
            continue
        for tr in hits:
            if id(tr) not in seen:
                seen.add(id(tr))
                out.append(tr)
    if missing:
        raise InputError(tracks_file, f"{len(missing)} track id(s) not in the dataset, e.g. {missing[:3]}")
    return out


def _parse_table(path: Path, min_cols: int = 2, skip_header: bool = False) -> np.ndarray:
    """Rows of numbers separated by commas/tabs/spaces (CRLF ok) → float64 (n, min_cols).

    A first line that does not parse is taken as a header only if ``skip_header``. A NaN or inf value is bad
    input: ``InputError(path, "line N: ...")`` naming its (1-based) line.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read label file: {err}") from err
    table = _parse_fast(lines, min_cols, skip_header)
    if table is None:
        table = _parse_slow(path, lines, min_cols, skip_header)
    finite = np.isfinite(table).all(axis=1)
    if not finite.all():
        line = _data_lines(lines, skip_header, min_cols)[int(np.argmin(finite))]
        raise InputError(path, f"line {line}: NaN or inf value in {lines[line - 1].strip()[:60]!r}")
    return table


def _data_lines(lines: list[str], skip_header: bool, min_cols: int) -> list[int]:
    """1-based line numbers of the table rows (non-blank lines, minus a header that does not parse)."""
    nums = [i + 1 for i, line in enumerate(lines) if line.replace(",", " ").split()]
    if skip_header and nums:
        try:
            [float(f) for f in lines[nums[0] - 1].replace(",", " ").split()]
        except ValueError:
            nums = nums[1:]
    return nums


def _parse_slow(path: Path, lines: list[str], min_cols: int, skip_header: bool) -> np.ndarray:
    rows = []   # slow path: only to locate and report the first bad line
    for i, line in enumerate(lines):
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if not fields:
            continue
        try:
            if len(fields) < min_cols:
                raise ValueError(f"expected {min_cols} columns, got {len(fields)}")
            rows.append([float(f) for f in fields[:min_cols]])
        except ValueError as err:
            if skip_header and i == 0:
                continue
            raise InputError(path, f"line {i + 1}: cannot parse {line.strip()[:60]!r} ({err})") from None
    return np.asarray(rows, dtype=np.float64).reshape(-1, min_cols)


def _parse_fast(lines: list[str], min_cols: int, skip_header: bool) -> np.ndarray | None:
    """Vectorised parse when every non-blank row has the same field count (≥ min_cols); None otherwise."""
    rows = [line.replace(",", " ").split() for line in lines]
    rows = [r for r in rows if r]
    if skip_header and rows:
        try:
            [float(f) for f in rows[0]]
        except ValueError:
            rows = rows[1:]
    if not rows:
        return np.zeros((0, min_cols))
    k = len(rows[0])
    if k < min_cols or any(len(r) != k for r in rows):
        return None
    try:
        arr = np.array([f for r in rows for f in r], dtype=np.float64)
    except ValueError:
        return None
    return arr.reshape(len(rows), k)[:, :min_cols]


MIDI_MAX = 127.0


def midi_to_hz(m: np.ndarray) -> np.ndarray:
    """``440 · 2 ** ((m − 69) / 12)`` for ``m > 0``; 0 (unvoiced) for ``m == 0``.

    ``m`` must be finite and within ``0..127`` (ValueError otherwise): NaN, negative or out-of-range values are
    damaged labels, never silently unvoiced or clipped (:func:`_read_pv` reports the file and line).
    """
    m = np.asarray(m, dtype=np.float64)
    bad = ~(np.isfinite(m) & (m >= 0) & (m <= MIDI_MAX))
    if bad.any():
        i = int(np.argmax(bad.ravel()))
        raise ValueError(f"MIDI value {float(m.ravel()[i]):g} at index {i} outside 0..127 (0 = unvoiced)")
    return np.where(m > 0, 440.0 * 2.0 ** ((m - 69.0) / 12.0), 0.0)


def _read_pv(path: Path, hop: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """A ``.pv`` file (one MIDI pitch per frame, 0 = unvoiced) → ``(times, f0 Hz)``."""
    m = _parse_table(path, min_cols=1)[:, 0]
    bad = ~((m >= 0) & (m <= MIDI_MAX))
    if bad.any():
        k = int(np.argmax(bad))
        line = _data_lines(path.read_text(encoding="utf-8").splitlines(), False, 1)[k]
        raise InputError(path, f"line {line}: MIDI value {m[k]:g} outside 0..127 (0 = unvoiced)")
    return offset + hop * np.arange(m.size, dtype=np.float64), midi_to_hz(m)


def _remix_voice(path: Path, voice_db: float) -> np.ndarray:
    """Mono ``0.5 · (acc + g · voice)`` with ``g`` such that ``20 log10(g·rms(voice) / rms(acc)) = voice_db``.

    Channel 0 = accompaniment, channel 1 = voice (MIR-1K, iKala). At ``g = 1`` this is the default mean mix.
    """
    x, sr = audio_io.load_multichannel(path)
    if x.shape[1] != 2:
        raise InputError(path, f"voice remix needs 2 channels (accompaniment, voice), got {x.shape[1]}")
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=0))
    if rms[0] == 0 or rms[1] == 0:
        raise InputError(path, "voice remix impossible: a channel is silent")
    gain = (rms[0] / rms[1]) * 10.0 ** (voice_db / 20.0)
    y = audio_io.resample(audio_io.to_mono(x, [0.5, 0.5 * gain], path), sr, grid.SR)
    return y


def _remix_suffix(voice_db: float) -> str:
    return f"_v{voice_db:+g}dB"


def _stereo_tracks(dataset, root: Path, label_dir: str, names_paths, voice_db) -> list[Track]:
    tracks = []
    for clip, wav in names_paths:
        extra = {}
        tid = clip
        if voice_db is not None:
            extra = {"voice_db": float(voice_db), "base_id": clip}
            tid = clip + _remix_suffix(float(voice_db))
        tracks.append(Track(tid, dataset, wav, root / label_dir / f"{clip}.pv", extra))
    return tracks


def _audio_by_stem(folder: Path, exts=(".wav", ".flac")) -> dict[str, Path]:
    """stem → audio file in ``folder`` (first extension of ``exts`` wins when several exist)."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for p in sorted(folder.iterdir()):
        ext = p.suffix.lower()
        if p.is_file() and ext in exts:
            old = found.get(p.stem)
            if old is None or exts.index(ext) < exts.index(old.suffix.lower()):
                found[p.stem] = p
    return dict(sorted(found.items()))


# ---------------------------------------------------------------------------------------------- adapters

def _list_mir1k(root: Path, split, voice_db=None) -> list[Track]:
    clips = _audio_by_stem(root / "Wavfile")
    if not clips:
        raise InputError(root / "Wavfile", "no .wav/.flac clips found (expected MIR-1K layout)")
    if split is not None:
        keep = set(_mir1k_split(root, split, clips))
        clips = {c: p for c, p in clips.items() if c in keep}
    return _stereo_tracks("mir1k", root, "PitchLabel", clips.items(), voice_db)


def _mir1k_split(root: Path, split: str, clips) -> list[str]:
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


def _f0_mir1k(tr: Track):
    return _read_pv(Path(tr.label_path), hop=0.02, offset=0.02)       # frame k at 0.02·(k+1)


def _list_ikala(root: Path, split, voice_db=None) -> list[Track]:
    if split is not None:
        raise ValueError("ikala has no official split; use tracks_file")
    clips = _audio_by_stem(root / "Wavfile")
    if not clips:
        raise InputError(root / "Wavfile", "no .wav clips found (expected iKala layout)")
    return _stereo_tracks("ikala", root, "PitchLabel", clips.items(), voice_db)


def _f0_ikala(tr: Track):
    return _read_pv(Path(tr.label_path), hop=0.032, offset=0.016)     # frame i at 0.032·i + 0.016


def _list_medleydb(root: Path, split, vocal_only=True, names=None) -> list[Track]:
    if names is None:
        names = read_id_list(LISTS_DIR / MEDLEYDB_LISTS[split or "train"])
    names = list(dict.fromkeys(_normalise_id(n) for n in names))
    mel = _medleydb_melody2(root)
    src = root / "Annotations" / "Instrument_Activations" / "SOURCEID"
    return [Track(t, "medleydb", root / "Audio" / t / f"{t}_MIX.wav", mel / f"{t}_MELODY2.csv",
                  {"vocal_only": bool(vocal_only), "sourceid_path": src / f"{t}_SOURCEID.lab"})
            for t in names]


def _medleydb_melody2(root: Path) -> Path:
    return root / "Annotations" / "Melody_Annotations" / "MELODY2"


def _medleydb_annotated(root: Path) -> list[str]:
    """Every track with a MELODY2 annotation under ``root`` (``all_tracks``)."""
    names = sorted(p.name[: -len("_MELODY2.csv")] for p in _medleydb_melody2(root).glob("*_MELODY2.csv"))
    if not names:
        raise InputError(_medleydb_melody2(root), "no <T>_MELODY2.csv annotations found (expected MedleyDB layout)")
    return names


def _f0_medleydb(tr: Track):
    """MELODY2 ``time,f0``; if ``vocal_only``, f0 is kept only where ``start < t < end`` of a SOURCEID interval
    whose label contains "singer" (MSNet ``select_vocal_track``, strict inequalities), else set to 0."""
    tab = _parse_table(Path(tr.label_path), min_cols=2, skip_header=True)
    times, f0 = tab[:, 0], tab[:, 1]
    if not tr.extra.get("vocal_only", True):
        return times, f0
    lab = Path(tr.extra["sourceid_path"])
    if not lab.is_file():
        raise InputError(lab, "SOURCEID activation file not found (needed for vocal-only labels)")
    singing = np.zeros(times.shape, dtype=bool)
    for st, et in _singer_intervals(lab):
        singing |= (times > st) & (times < et)
    return times, np.where(singing, f0, 0.0)


def _singer_intervals(lab: Path) -> list[tuple[float, float]]:
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


def _ref_lister(dataset: str):
    def lister(root: Path, split) -> list[Track]:
        wavs = {p.stem: p for p in sorted(root.glob("*.wav")) + sorted(root.glob("*.WAV"))}
        if not wavs:
            raise InputError(root, f"no <name>.wav files found (expected {dataset} layout)")
        if split is not None:
            if split != "test" or dataset not in REF_TEST_LISTS:
                raise ValueError(f"{dataset} has no {split!r} split" + (" (only 'test')" if dataset in
                                                                         REF_TEST_LISTS else ""))
            lst = REF_TEST_LISTS[dataset]
            keep = [_normalise_id(n) for n in read_id_list(LISTS_DIR / lst)]
            missing = [k for k in keep if k not in wavs]
            if missing:
                raise InputError(root, f"track(s) of the built-in list {lst} ({REF_TEST_NAMES[dataset]}) "
                                       f"missing: {missing}; --all-tracks uses whatever <name>.wav files exist")
            wavs = {k: wavs[k] for k in keep}
        return [Track(n, dataset, p, _ref_label(root, n)) for n, p in wavs.items()]
    return lister


def _ref_label(root: Path, name: str) -> Path:
    """``<name>REF.txt``; for ``<x>MIDI.wav`` whose reference ships as ``<x>REF.txt`` (MIREX05's
    ``train13MIDI.wav`` → ``train13REF.txt``) that file, when ``<x>MIDIREF.txt`` does not exist."""
    ref = root / f"{name}REF.txt"
    if not ref.is_file() and name.endswith("MIDI"):
        alt = root / f"{name[:-len('MIDI')]}REF.txt"
        if alt.is_file():
            return alt
    return ref


def _f0_ref(tr: Track):
    tab = _parse_table(Path(tr.label_path), min_cols=2)
    return tab[:, 0], tab[:, 1]


def find_audio(folder) -> list[Path]:
    """Audio files under ``folder`` (recursive, by :data:`AUDIO_EXTENSIONS`, hidden files skipped), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                  and not p.name.startswith("."))


def _list_unlabeled(root: Path, split) -> list[Track]:
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


def _provoices(fn: str):   # pipeline/provoices.py (voices + tracker labels) imports this module: bound at call time
    return lambda *a, **k: getattr(__import__("hkdsme.pipeline.provoices", fromlist=[fn]), fn)(*a, **k)


_LISTERS = {
    "provoices": (_provoices("list_provoices"), ("labels", "accomp")),
    "mir1k": (_list_mir1k, ("voice_db",)),
    "ikala": (_list_ikala, ("voice_db",)),
    "medleydb": (_list_medleydb, ("vocal_only",)),
    "adc2004": (_ref_lister("adc2004"), ()),
    "mirex05": (_ref_lister("mirex05"), ()),
    "synthetic": (_ref_lister("synthetic"), ()),
    "unlabeled": (_list_unlabeled, ()),
    "ultrastar": (ultrastar.list_tracks, ()),
}
_F0_READERS = {
    "provoices": _provoices("read_f0"),
    "mir1k": _f0_mir1k, "ikala": _f0_ikala, "medleydb": _f0_medleydb,
    "adc2004": _f0_ref, "mirex05": _f0_ref, "synthetic": _f0_ref, "ultrastar": ultrastar.load_f0,
}
