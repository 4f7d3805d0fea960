"""UltraStar karaoke note files as melody references (the ``ultrastar`` dataset: real band mixes, docs/real_mix_dev.md).

An UltraStar ``song.txt`` holds ``#KEY:value`` header lines, then one line per note::

    : <beat> <length> <pitch> <syllable>     normal note      (``*``: golden note, same fields)
    F / R / G <beat> <length> <pitch> ...    freestyle / rap / golden rap: no intended pitch, skipped
    - <beat> [<beat>]                        end of a phrase (skipped)
    E                                        end of the song

with ``t(beat) = GAP / 1000 + beat · 15 / BPM`` seconds (``#GAP`` in ms, ``#BPM`` in quarter beats per minute,
decimal comma allowed) and ``MIDI = 60 + pitch``. These are karaoke-game notes, not f0: no vibrato or glides,
the octave is often wrong and onsets tend to be 50–150 ms early. :func:`resolve_offset_octave` therefore picks,
per song, the time offset and octave shift under which the notes sit best on the audio's harmonic salience
(the CFP of :mod:`hkdsme.pipeline.cfp`), and :func:`note_f0` renders the notes on the 10 ms grid.
:func:`note_gap_mask` gives the frames the real-mix dev score leaves out: short gaps between consecutive notes,
where the singer is often still sounding (:data:`GAP_S`).

The dataset adapter (:func:`list_tracks`, :func:`load_f0`; hooked into :mod:`hkdsme.pipeline.datasets`)
reads ``<root>/songs/<name>/{audio.ogg,song.txt}`` and ``<root>/splits.json``: split ``validation`` = its
``dev`` list (5 songs, model selection only), ``train`` = its ``train`` list.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError
from hkdsme.pipeline.labels import check_contour

SKIPPED_KINDS = "FRG"      # freestyle, rap, golden rap: no pitch to score
MIDI_BASE = 60             # MIDI = 60 + UltraStar pitch

# Resolution search space (docs/real_mix_dev.md): offsets added to every note time, octave shifts of the notes.
OFFSETS_S = np.round(np.arange(-0.10, 0.30 + 1e-9, grid.FRAME_PERIOD), 2) + 0.0
OCTAVES = (-2, -1, 0, 1)
PITCH_TOLERANCE_BINS = 2   # salience is read as the max over ±2 bins (±40 cents): singers and bands drift off A440
NORM_FRAMES = 101          # salience normalised by its maximum over ±0.5 s (101 frames), see salience()
TIE_MARGIN = 0.01          # an octave within 1 % of the best score is a tie, resolved towards shift 0

_NOTE_RE = re.compile(r"^([:*FRG])\s*(-?\d+)\s+(-?\d+)\s+(-?\d+)(?:\s(.*))?$")


@dataclass(frozen=True)
class Resolution:
    """Per-song alignment of the notes: ``offset_s`` added to every note time, notes shifted by ``octave``.

    ``score`` is the mean normalised salience at the notes under this choice; ``octave_scores`` the best score of
    each allowed octave shift (over offsets), so ``score`` minus the runner-up says how clear the choice was.
    """

    offset_s: float
    octave: int
    score: float
    octave_scores: dict

    def as_dict(self) -> dict:
        return {"offset_s": self.offset_s, "octave": self.octave, "score": round(self.score, 4),
                "octave_scores": {str(k): round(v, 4) for k, v in self.octave_scores.items()}}


# ---------------------------------------------------------------------------------------------- parsing

def _read_text(path: Path) -> str:
    """File text: UTF-8 (a BOM is dropped), else latin-1 (every byte decodes: older files are cp1252/latin-1)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(path, f"cannot read UltraStar file: {err.strerror or err}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _number(path: Path, header: dict, key: str) -> float:
    if key not in header:
        raise InputError(path, f"UltraStar header has no #{key} line")
    text = header[key].strip().replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        raise InputError(path, f"#{key}:{header[key]!r} is not a number") from None
    if not np.isfinite(value):
        raise InputError(path, f"#{key}:{header[key]!r} is not finite")
    return value


def parse_ultrastar(path) -> tuple[dict, np.ndarray]:
    """``(header, notes)`` of an UltraStar file.

    ``header``: ``{KEY: value}`` of the ``#KEY:value`` lines (keys upper-cased, values stripped).
    ``notes``: float64 ``(n, 3)`` rows ``(start_s, end_s, midi)`` of the ``:`` and ``*`` notes, in file order:
    ``start_s = GAP/1000 + beat·15/BPM``, ``end_s = GAP/1000 + (beat + length)·15/BPM``, ``midi = 60 + pitch``.
    ``F``/``R``/``G`` notes, ``-`` phrase ends and anything after ``E`` are skipped. Raises
    :class:`InputError` naming the file (and line) for: no or bad ``#BPM``/``#GAP``, ``BPM <= 0``,
    ``#RELATIVE:yes`` (relative beats are not supported), a malformed note line, a negative length, a note
    starting before the previous one, a pitch outside MIDI 0..127, or no pitched note at all.
    """
    path = Path(path)
    header: dict[str, str] = {}
    beats: list[tuple[int, int, int]] = []
    for i, line in enumerate(_read_text(path).splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            if beats:
                raise InputError(path, f"line {i}: header line after the notes: {s[:60]!r}")
            key, sep, value = s[1:].partition(":")
            if sep:
                header[key.strip().upper()] = value.strip()
            continue
        kind = s[0]
        if kind == "E":
            break
        if kind == "-":
            continue
        if kind == "P" and s[1:].strip().isdigit():
            raise InputError(path, f"line {i}: duet files (P1/P2 singers) are not supported")
        m = _NOTE_RE.match(s)
        if m is None:
            raise InputError(path, f"line {i}: cannot parse note line {s[:60]!r} "
                                   f"(expected ': beat length pitch syllable')")
        if kind in SKIPPED_KINDS:
            continue
        beat, length, pitch = int(m.group(2)), int(m.group(3)), int(m.group(4))
        if length < 0:
            raise InputError(path, f"line {i}: negative note length {length}")
        if not 0 <= MIDI_BASE + pitch <= 127:
            raise InputError(path, f"line {i}: pitch {pitch} is outside MIDI 0..127")
        if beats and beat < beats[-1][0]:
            raise InputError(path, f"line {i}: note at beat {beat} starts before the previous one "
                                   f"(beat {beats[-1][0]})")
        beats.append((beat, length, pitch))
    if header.get("RELATIVE", "").strip().lower() in ("yes", "true", "1"):
        raise InputError(path, "#RELATIVE:yes (beats relative to each phrase) is not supported")
    bpm = _number(path, header, "BPM")
    gap_ms = _number(path, header, "GAP")
    if bpm <= 0:
        raise InputError(path, f"#BPM must be positive, got {header['BPM']!r}")
    if not beats:
        raise InputError(path, "no pitched note (':' or '*' line) found")
    b = np.asarray(beats, dtype=np.float64)
    sec_per_beat = 15.0 / bpm
    start = gap_ms / 1000.0 + b[:, 0] * sec_per_beat
    notes = np.stack([start, start + b[:, 1] * sec_per_beat, MIDI_BASE + b[:, 2]], axis=1)
    return header, notes


# ---------------------------------------------------------------------------------------------- notes → f0

_TIME_EPS = 1e-6   # as labels._TIME_EPS: a time within 1 µs of a note edge is on the edge, not beside it


def midi_to_hz(midi) -> np.ndarray:
    """``440 · 2 ** ((midi − 69) / 12)``."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def shift_notes(notes: np.ndarray, offset_s: float = 0.0, octave: int = 0) -> np.ndarray:
    """Notes with ``offset_s`` added to start and end and ``12 · octave`` added to the MIDI pitch (a copy)."""
    out = np.array(notes, dtype=np.float64, copy=True).reshape(-1, 3)
    out[:, :2] += float(offset_s)
    out[:, 2] += 12 * int(octave)
    return out


def _spans(notes: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per note, the index range ``[lo, hi)`` of the sorted ``times`` with ``start ≤ t < end`` (±1 µs)."""
    lo = np.searchsorted(times, notes[:, 0] - _TIME_EPS, side="left")
    hi = np.searchsorted(times, notes[:, 1] - _TIME_EPS, side="left")
    return lo, np.maximum(hi, lo)


def note_f0(notes: np.ndarray, times) -> np.ndarray:
    """f0 (Hz, float64) at each of the increasing ``times``: the pitch of the note with ``start ≤ t < end``, 0
    elsewhere (a later note wins where notes overlap). ``times`` is usually ``grid.frame_times(T)``."""
    times = np.asarray(times, dtype=np.float64)
    notes = np.asarray(notes, dtype=np.float64).reshape(-1, 3)
    f0 = np.zeros(times.shape, dtype=np.float64)
    for (a, b), hz in zip(zip(*_spans(notes, times)), midi_to_hz(notes[:, 2])):
        f0[a:b] = hz
    return f0


# ---------------------------------------------------------------------------------------------- scoring mask

# Karaoke files end a note before the next one starts even where the singer holds or slurs through it: on the 5
# dev songs, 78–94 % of the gaps between consecutive notes are under 0.3 s (their number drops past it; longer
# ones are rests) and they add up to 17–55 % of the note time. Whether a short gap is sung is unknown, so the
# real-mix dev score leaves its frames out (docs/real_mix_dev.md) instead of charging a model that voices them
# with a false alarm and crediting one that stays silent.
GAP_S = 0.3


def note_gap_mask(times, f0, max_gap_s: float = GAP_S) -> np.ndarray:
    """Frames to leave out of scoring (bool, True = excluded): the frames of every unvoiced run of the reference
    ``f0`` on increasing ``times`` that has a voiced frame on both sides and lasts less than ``max_gap_s``::

        run i..j (f0 = 0) with f0[i-1] > 0 and f0[j+1] > 0 is excluded  iff  times[j+1] − times[i] < max_gap_s

    (±1 µs). On the 10 ms grid the duration is ``(j − i + 1) · 10 ms``: runs of at most 29 frames go. Applied to
    :func:`load_f0`'s reference (the resolved notes rendered by :func:`note_f0`) these are the frames between two
    consecutive notes less than 0.3 s apart, up to the grid's rounding of a 0.29–0.30 s gap. Unvoiced frames
    before the first note, after the last one and in longer gaps stay (scored as unvoiced).

    No guard band around note edges: the edges are beat-quantised (15/BPM = 29–83 ms on this set) and the
    resolver fits the song's offset to the audio, so a ±1-frame guard would be smaller than the uncertainty it is
    meant to cover, and an edge error costs an early and a late model alike, whereas a short gap only ever
    charges the model that voices it.
    """
    times, f0 = check_contour(times, f0, what="reference", strict=True)
    if not (np.isfinite(max_gap_s) and max_gap_s > 0):
        raise ValueError(f"max_gap_s must be a positive number of seconds, got {max_gap_s!r}")
    voiced = np.flatnonzero(f0 > 0)
    first, nxt = voiced[:-1] + 1, voiced[1:]          # unvoiced run [first, nxt) between two voiced frames
    short = (nxt > first) & (times[nxt] - times[np.minimum(first, nxt)] < max_gap_s - _TIME_EPS)
    mask = np.zeros(f0.shape, dtype=bool)
    for a, b in zip(first[short], nxt[short]):
        mask[a:b] = True
    return mask


# ---------------------------------------------------------------------------------------------- resolution

def salience(features: np.ndarray) -> np.ndarray:
    """Locally normalised harmonic salience ``(320, T)`` from a CFP ``(3, 320, T)`` (spectrum, GCoS, GC).

    ``Z = spectrum · GC`` (the CFP product of Su & Yang 2015: the spectrum's harmonics at ``n·f0`` and the
    cepstrum's sub-harmonics at ``f0/n`` cancel, ``f0`` survives), then ``max`` over ±2 rows (±40 cents: the
    notes are semitones, real singing and tuning are not), then divided by the largest frame maximum within
    ±0.5 s (:data:`NORM_FRAMES`; 0 where that is 0), so loud passages do not outweigh quiet ones. Not divided per
    frame: that would lift the fading edges of a note (the 96 ms CFP window) to full salience and leave the
    offset score flat over ±40 ms (a synthetic song's known offset came out 30 ms late).
    """
    from scipy.ndimage import maximum_filter1d

    f = np.asarray(features, dtype=np.float32)
    if f.ndim != 3 or f.shape[:2] != (3, grid.N_FREQ):
        raise ValueError(f"expected CFP features of shape (3, {grid.N_FREQ}, T), got {f.shape}")
    z = maximum_filter1d(f[0] * f[2], size=2 * PITCH_TOLERANCE_BINS + 1, axis=0, mode="constant")
    peak = maximum_filter1d(z.max(axis=0), size=NORM_FRAMES, mode="nearest")[None, :]
    return np.divide(z, peak, out=np.zeros_like(z), where=peak > 0)


def _row(midi: np.ndarray) -> np.ndarray:
    """CFP row of each MIDI pitch: ``60 · log2(f / 31 Hz)`` (row ``i`` is ``31 · 2^(i/60)`` Hz), unrounded."""
    return grid.BINS_PER_OCTAVE * np.log2(midi_to_hz(midi) / grid.FMIN)


def resolve_offset_octave(notes: np.ndarray, audio_or_features, offsets_s=OFFSETS_S, octaves=OCTAVES) -> Resolution:
    """Time offset and octave shift that put the notes on the audio's harmonic salience.

    ``audio_or_features``: 8 kHz mono audio (1-D; its CFP is computed) or CFP features ``(3, 320, T)``.
    For each offset ``o`` (default −0.10…+0.30 s in 10 ms steps) and octave shift ``k`` (default −2, −1, 0, +1;
    only shifts that keep every note inside the CFP's 31–1233 Hz rows), with ``F`` the note frames (grid times
    ``start + o ≤ t < end + o``) and ``r_n`` the CFP row of note ``n`` shifted by ``k`` octaves::

        score(o, k) = Σ_{t ∈ F} salience[round(r_n + 60 k), t] / |F|      (frames outside the audio count 0)

    with :func:`salience` (normalised over ±0.5 s, ±40 cents). The best octave is the one with the highest score
    over offsets, except that octave 0 wins whenever its best score is within :data:`TIE_MARGIN` (1 %) of it;
    the offset is then that octave's argmax (an exact tie goes to the smaller ``|o|``).
    """
    notes = np.asarray(notes, dtype=np.float64).reshape(-1, 3)
    x = np.asarray(audio_or_features)
    if x.ndim == 1:
        from hkdsme.pipeline.cfp import cfp

        x = cfp(x)
    sal = salience(x)
    n_t = sal.shape[1]
    offsets = np.asarray(offsets_s, dtype=np.float64)
    steps = np.rint(offsets / grid.FRAME_PERIOD).astype(np.int64)
    if not np.allclose(steps * grid.FRAME_PERIOD, offsets, atol=1e-9):
        raise ValueError("offsets must be multiples of the 10 ms frame period")
    # note frames at offset 0 on a grid extended past both ends, so shifted frames stay countable
    pad = int(np.abs(steps).max()) + 1
    times = (np.arange(-pad, n_t + pad, dtype=np.float64) + 1.0) * grid.FRAME_PERIOD
    lo, hi = _spans(notes, times)
    counts = hi - lo
    n_frames = int(counts.sum())
    if n_frames == 0:
        raise ValueError("no note covers a frame of the audio")
    frames = np.repeat(lo - counts.cumsum() + counts, counts) + np.arange(n_frames) - pad   # grid index at o = 0
    rows = np.repeat(_row(notes[:, 2]), counts)

    scores = {}
    for k in octaves:
        r = _row(notes[:, 2]) + grid.BINS_PER_OCTAVE * k
        if np.rint(r).min() < 0 or np.rint(r).max() > grid.N_FREQ - 1:
            continue                                              # some note would leave the CFP's range
        rk = np.rint(rows + grid.BINS_PER_OCTAVE * k).astype(np.int64)
        per_offset = np.empty(len(steps))
        for j, d in enumerate(steps):
            f = frames + d
            ok = (f >= 0) & (f < n_t)
            per_offset[j] = sal[rk[ok], f[ok]].sum() / n_frames
        scores[int(k)] = per_offset
    if not scores:
        raise ValueError(f"every octave shift {tuple(octaves)} puts a note outside 31–1233 Hz")
    best = {k: float(v.max()) for k, v in scores.items()}
    k_best = max(best, key=best.get)
    if 0 in best and best[0] >= best[k_best] * (1.0 - TIE_MARGIN):
        k_best = 0
    curve = scores[k_best]
    ties = np.flatnonzero(curve == curve.max())
    j = int(ties[np.argmin(np.abs(offsets[ties]))])
    return Resolution(offset_s=float(offsets[j]) + 0.0, octave=k_best, score=float(curve[j]), octave_scores=best)


# ---------------------------------------------------------------------------------------------- dataset adapter

SPLIT_KEYS = {"validation": "dev", "train": "train"}   # our split name → the key of <root>/splits.json
SONGS_DIR = "songs"
AUDIO_NAME = "audio.ogg"
NOTES_NAME = "song.txt"

_RESOLVED: dict[tuple, Resolution] = {}   # per process: (files, sizes, mtimes) → resolution


def _song_names(root: Path, split: str | None) -> list[str]:
    """Song folders of ``split`` (``validation`` = splits.json ``dev``, ``train`` = ``train``; None = every
    folder under ``songs/`` that has both ``audio.ogg`` and ``song.txt``)."""
    songs = root / SONGS_DIR
    if split is None:
        names = sorted(p.name for p in songs.iterdir() if (p / AUDIO_NAME).is_file() and (p / NOTES_NAME).is_file()) \
            if songs.is_dir() else []
        if not names:
            raise InputError(songs, f"no <song>/{AUDIO_NAME} with {NOTES_NAME} found (expected the ultrastar-cc "
                                    "layout)")
        return names
    if split not in SPLIT_KEYS:
        raise ValueError(f"ultrastar has no {split!r} split; use validation (splits.json 'dev') or train")
    sj = root / "splits.json"
    try:
        names = json.loads(sj.read_text(encoding="utf-8"))[SPLIT_KEYS[split]]
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise TypeError("not a list of song names")
    except OSError as err:
        raise InputError(sj, f"cannot read split file: {err.strerror or err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(sj, f"no song list {SPLIT_KEYS[split]!r} for split {split!r}: {err!r}") from None
    missing = [n for n in names if not (songs / n / AUDIO_NAME).is_file() or not (songs / n / NOTES_NAME).is_file()]
    if missing:
        raise InputError(sj, f"split {split!r} lists song(s) without {AUDIO_NAME}/{NOTES_NAME} under {songs}: "
                             f"{missing[:3]}")
    return list(names)


OPTIONS = ("labels",)


def list_tracks(root, split=None, labels=None) -> list:
    """Tracks ``songs/<name>/audio.ogg`` with labels ``songs/<name>/song.txt`` (id = ``<name>``); with ``labels``
    (a folder of ``hkd-prep weak-labels`` output), ``<labels>/<name>.f0.csv`` instead of the notes."""
    from hkdsme.pipeline.datasets import Track

    root = Path(root)
    names = _song_names(root, split)
    if labels is None:
        return [Track(n, "ultrastar", root / SONGS_DIR / n / AUDIO_NAME, root / SONGS_DIR / n / NOTES_NAME)
                for n in names]
    from hkdsme.pipeline.weak_labels import LABEL_SUFFIX

    labels = Path(labels)
    if not labels.is_dir():
        raise InputError(labels, "weak-label folder (--labels) not found")
    return [Track(n, "ultrastar", root / SONGS_DIR / n / AUDIO_NAME, labels / f"{n}{LABEL_SUFFIX}") for n in names]


def _file_key(*paths: Path) -> tuple:
    key = []
    for p in paths:
        st = p.stat()
        key += [str(p.resolve()), st.st_size, st.st_mtime_ns]
    return tuple(key)


def resolve_track(track, audio: np.ndarray | None = None, notes: np.ndarray | None = None) -> Resolution:
    """The :func:`resolve_offset_octave` of a track, computed once per process per (unchanged) file pair.

    Costs one CFP of the song (~1.5–2.5 s for a 3-min song on a shared 2-core CPU; the search itself ~0.2 s).
    """
    label, audio_path = Path(track.label_path), Path(track.audio_path)
    key = _file_key(label, audio_path)
    if key not in _RESOLVED:
        if notes is None:
            notes = parse_ultrastar(label)[1]
        if audio is None:
            audio = track.load_audio()
        from hkdsme.pipeline.cfp import validate_audio

        audio = validate_audio(np.asarray(audio, dtype=np.float32).reshape(-1), path=audio_path, reject_silent=True)
        try:
            _RESOLVED[key] = resolve_offset_octave(notes, audio)
        except InputError as err:     # from the CFP (e.g. audio too short), which names no file
            raise InputError(audio_path, err.reason) from None
        except ValueError as err:     # no note inside the audio, no octave inside the CFP's range
            raise InputError(label, f"cannot align the notes with {audio_path.name}: {err}") from None
    return _RESOLVED[key]


def load_f0(track) -> tuple[np.ndarray, np.ndarray]:
    """``(times, f0)`` on the 10 ms grid of the whole audio (``grid.frame_times``): the notes of ``song.txt``
    moved by the song's resolved offset and octave (:func:`resolve_track`) and rendered by :func:`note_f0`; for a
    track listed with ``labels``, the weak-label file's ``(times, f0)`` (:mod:`hkdsme.pipeline.weak_labels`)."""
    from hkdsme.pipeline.weak_labels import LABEL_SUFFIX

    if str(track.label_path).endswith(LABEL_SUFFIX):
        from hkdsme.pipeline.f0_tracker import read_f0_csv

        t, f, _ = read_f0_csv(track.label_path)
        return t, f
    notes = parse_ultrastar(track.label_path)[1]
    audio = track.load_audio()
    res = resolve_track(track, audio=audio, notes=notes)
    times = grid.frame_times(grid.n_frames(len(audio)))
    return times, note_f0(shift_notes(notes, res.offset_s, res.octave), times)
