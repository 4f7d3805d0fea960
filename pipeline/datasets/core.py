"""What every dataset module shares: :class:`Track`, track-id lists and selection, audio search, label tables.

A dataset module (``mir1k``, ``ikala``, ``medleydb``, ``reference``, ``unlabeled``, and
:mod:`hkdsme.pipeline.ultrastar`, :mod:`hkdsme.pipeline.provoices`) lists the tracks of its layout and reads their
f0; :mod:`hkdsme.pipeline.datasets` registers them by name.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hkdsme.pipeline import audio as audio_io
from hkdsme.pipeline import grid
from hkdsme.pipeline.errors import InputError

# The one list of audio file extensions searched in folders (unlabeled datasets, ``hkd-eval predict FOLDER``).
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aif", ".aiff", ".au")
LISTS_DIR = Path(__file__).resolve().parent.parent / "lists"      # built-in track lists (package data)


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
            return remix_voice(self.audio_path, float(voice_db))
        return audio_io.load_audio(self.audio_path, sr=grid.SR)

    def load_f0(self):
        """``(times_s, f0_hz)`` float64 in native annotation times, 0 Hz = unvoiced; ``None`` if unlabeled.
        Read by the f0 reader the registry holds for ``dataset`` (:mod:`hkdsme.pipeline.datasets`)."""
        if self.label_path is None:
            return None
        path = Path(self.label_path)
        if not path.is_file():
            raise InputError(path, "label file not found")
        from hkdsme.pipeline.datasets import f0_reader      # the registry imports this module: bound at call time

        times, f0 = f0_reader(self.dataset)(self)
        if times.size == 0:
            raise InputError(path, "label file has no rows")
        if not (np.isfinite(times).all() and np.isfinite(f0).all()):
            raise InputError(path, "label file contains NaN or inf")
        if times.size > 1 and not (np.diff(times) > 0).all():
            raise InputError(path, "label times are not strictly increasing")
        return times, f0


def remix_voice(path: Path, voice_db: float) -> np.ndarray:
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
    return audio_io.resample(audio_io.to_mono(x, [0.5, 0.5 * gain], path), sr, grid.SR)


# ---------------------------------------------------------------------------------------------- track lists

def read_id_list(path) -> list[str]:
    """Track ids of a list file: one per line, stripped (CRLF too); blank lines and ``#`` comments skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read track list: {err}") from err
    return [s for s in (line.split("#", 1)[0].strip() for line in text.splitlines()) if s]


def normalise_id(name: str) -> str:
    """``AimeeNorwich_Child_MIX.npy`` / ``daisy1.wav`` / ``daisy1`` → the bare track name."""
    stem = re.sub(r"\.(npy|wav|flac|mp3|ogg|h5)$", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"_MIX$", "", stem)


def select(tracks: list[Track], tracks_file) -> list[Track]:
    """The tracks named in ``tracks_file``, in its order; ids match with or without the remix suffix / file
    extension. An id not among ``tracks`` is ``InputError(tracks_file, ...)``."""
    wanted = read_id_list(tracks_file)
    by_id: dict[str, list[Track]] = {}
    for tr in tracks:
        for key in {tr.track_id, tr.extra.get("base_id", tr.track_id)}:
            by_id.setdefault(key, []).append(tr)
    out, missing, seen = [], [], set()
    for w in wanted:
        hits = by_id.get(w) or by_id.get(normalise_id(w))
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


def refuse_duplicate_ids(tracks: list[Track], root: Path) -> None:
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


# ---------------------------------------------------------------------------------------------- audio files

def find_audio(folder) -> list[Path]:
    """Audio files under ``folder`` (recursive, by :data:`AUDIO_EXTENSIONS`, hidden files skipped), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                  and not p.name.startswith("."))


def audio_by_stem(folder: Path, exts=(".wav", ".flac")) -> dict[str, Path]:
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


# ---------------------------------------------------------------------------------------------- label tables

_SEP = r"[,\s]+"                    # a field separator: any run of commas, tabs and spaces
_EDGES = re.compile(r"^[,\s]+|[,\s]+$")
_NO_SPLIT = r"(?!)"                 # matches nothing: a one-column table hands each whole row to its converter
_ROW = re.compile(r":(\d+):\n")     # load_delimited's errors name "<file>:<row>:" (1-based row of its input)


def _first_number(text: str) -> float:
    """The last column read: its first field (further fields are ignored)."""
    return float(re.split(_SEP, text, maxsplit=1)[0])


def _is_row(text: str, n_cols: int) -> bool:
    """Whether ``text`` is a row: ``n_cols`` fields or more, every one a number (else a first line is a header)."""
    fields = re.split(_SEP, text)
    try:
        [float(f) for f in fields]
    except ValueError:
        return False
    return len(fields) >= n_cols


def read_table(path: Path, n_cols: int, *, header: bool = False) -> tuple[np.ndarray, list[int]]:
    """The first ``n_cols`` columns of a table of numbers → float64 ``(rows, n_cols)`` and the 1-based line
    number of each row.

    Fields are separated by commas, tabs or spaces (any run of them; CRLF ok); blank lines are skipped and
    further columns ignored; with ``header``, a first line that is not a row (``n_cols`` fields or more, all
    numbers) is a header. Rows are parsed by ``mir_eval.io.load_delimited``. Bad input is
    ``InputError(path, ...)``: an unreadable file, and ``"line N: ..."`` for a row with fewer columns, a field
    that is not a number, or a NaN or inf value.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read label file: {err}") from err
    rows = [(i + 1, s) for i, s in enumerate(_EDGES.sub("", line) for line in lines) if s]
    if header and rows and not _is_row(rows[0][1], n_cols):
        rows = rows[1:]
    converters = [float] * (n_cols - 1) + [_first_number]
    try:
        import mir_eval        # here, not at the top: `hkd-eval predict`'s parent needs find_audio only (1.4 s)

        cols = mir_eval.io.load_delimited(io.StringIO("\n".join(s for _, s in rows)), converters,
                                          delimiter=_SEP if n_cols > 1 else _NO_SPLIT, comment=None)
    except ValueError as err:
        m = _ROW.search(str(err))
        if m is None:
            raise InputError(path, f"cannot parse: {str(err).splitlines()[0]}") from None
        line, text = rows[int(m.group(1)) - 1]
        got = len(re.split(_SEP, text))
        why = f"expected {n_cols} columns, got {got}" if got < n_cols else "not a number"
        raise InputError(path, f"line {line}: cannot parse {lines[line - 1].strip()[:60]!r} ({why})") from None
    table = np.asarray([cols] if n_cols == 1 else cols, dtype=np.float64).T.reshape(-1, n_cols)
    finite = np.isfinite(table).all(axis=1)
    if not finite.all():
        line = rows[int(np.argmin(finite))][0]
        raise InputError(path, f"line {line}: NaN or inf value in {lines[line - 1].strip()[:60]!r}")
    return table, [n for n, _ in rows]
