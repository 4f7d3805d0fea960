"""``provoices``: isolated (a cappella) voices with tracker f0 labels, mixed over drawn accompaniments.

Layout: ``root`` is any tree of audio files (one voice per file, e.g. ``shared/data/pro-voices``); track ids are
those of the ``unlabeled`` dataset (relative path without extension, folders joined by ``__``). Labels:
``<labels>/<id>.f0.csv`` written by ``hkd-prep label-f0`` (:mod:`hkdsme.pipeline.f0_tracker`; ``f0_hz`` 0 =
unvoiced, 10 ms). Without augmentation a track is the voice alone.

With ``--augment SPEC --variants N`` (:func:`augment_tracks`) variant ``k`` of clip ``c`` is rendered exactly as
a stereo clip's (``augment.render_variant``: pitch shift with labels ``f0 · 2**(s/12)``, accompaniment-only,
voice-to-accompaniment ratio, effects; seed ``variant_seed(c, k, spec.seed)``), with the accompaniment drawn
from a pool instead of a second channel:

- the pool is a list of GROUPS, one per ``--accomp`` value (:func:`resolve_pool`): an audio file, a folder
  (every audio file under it), a glob pattern (quote it), or ``mir1k:ROOT`` = the accompaniment channel (ch0)
  of MIR-1K's TRAIN clips only (``ROOT/splits.json`` or the singer rule); other files are mixed to mono;
- draw: ``rng = numpy.random.default_rng([seed, 1])`` (a stream independent of the plan's), group ``g =
  ⌊u₁·G⌋``, file ``⌊u₂·n_g⌋`` of the group's sorted files, start ``⌊u₃·len⌋``: groups are equally likely
  whatever their size, so 673 MIR-1K clips do not drown two long instrumentals;
- the accompaniment (8 kHz) is looped / cropped to the voice's length from that start (``augment.loop_to``, as a
  cross-mix). The spec's cross-mix does not apply (every variant already has a drawn accompaniment).

Same pool (same ``--accomp`` values, same files) and same seed → the same pairing, in any process.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hkdsme.pipeline import audio as audio_io
from hkdsme.pipeline import grid
from hkdsme.pipeline.augment import AugmentSpec, AugTrack, loop_to, render_variant, variant_seed
from hkdsme.pipeline.datasets import AUDIO_EXTENSIONS, Track, find_audio, list_tracks
from hkdsme.pipeline.errors import InputError
from hkdsme.pipeline.f0_tracker import label_path, read_f0_csv

MIR1K_PREFIX = "mir1k:"


def list_provoices(root: Path, split, labels=None, accomp=()) -> list[Track]:
    """Tracks of every audio file under ``root``, labeled from ``labels/<id>.f0.csv``.

    ``accomp``: the ``--accomp`` values (see the module doc), resolved here into ``extra["accomp_pool"]`` (used
    by :func:`augment_tracks`). A clip without a label file is an ``InputError`` naming it (label first:
    ``hkd-prep label-f0``).
    """
    if split is not None:
        raise ValueError("provoices has no split")
    if labels is None:
        raise ValueError("provoices needs its label folder (--labels DIR, written by `hkd-prep label-f0`)")
    labels = Path(labels)
    if not labels.is_dir():
        raise InputError(labels, "label folder not found (write it with `hkd-prep label-f0`)")
    pool = resolve_pool(accomp) if accomp else []
    out = []
    for t in list_tracks("unlabeled", root):
        lab = label_path(labels, t.track_id)
        if not lab.is_file():
            raise InputError(lab, f"no label file for {t.audio_path} (run `hkd-prep label-f0 {root} --out {labels}`)")
        out.append(Track(t.track_id, "provoices", t.audio_path, lab, {"accomp_pool": pool}))
    return out


def read_f0(tr: Track):
    """``(times_s, f0_hz)`` of a provoices label file (its f0 reader in the :mod:`hkdsme.pipeline.datasets` registry)."""
    t, f, _ = read_f0_csv(tr.label_path)
    return t, f


def resolve_pool(specs) -> list[list[tuple[str, int | None]]]:
    """``--accomp`` values → groups of ``(audio path, channel or None = mono mix)``, each group sorted.

    ``InputError`` for a value that names nothing (a missing file, an empty folder, a glob without matches).
    """
    groups = []
    for spec in specs:
        spec = str(spec)
        if spec.startswith(MIR1K_PREFIX):
            root = Path(spec[len(MIR1K_PREFIX):])
            files = [(str(t.audio_path.absolute()), 0) for t in list_tracks("mir1k", root, split="train")]
        else:
            p = Path(spec)
            if p.is_file():
                paths = [p]
            elif p.is_dir():
                paths = find_audio(p)
            elif glob.has_magic(spec):
                paths = sorted(Path(q) for q in glob.glob(spec, recursive=True)
                               if Path(q).is_file() and Path(q).suffix.lower() in AUDIO_EXTENSIONS)
            else:
                raise InputError(p, "accompaniment file or folder not found")
            files = [(str(q.absolute()), None) for q in paths]
        if not files:
            raise InputError(spec, "no accompaniment audio found")
        groups.append(sorted(files))
    return groups


def draw_accompaniment(pool, seed: int) -> tuple[str, int | None, float]:
    """``(path, channel, start fraction)`` of a variant's accompaniment: see the module doc for the draw."""
    if not pool:
        raise ValueError("empty accompaniment pool")
    u = np.random.default_rng([int(seed), 1]).uniform(size=3)
    group = pool[min(int(u[0] * len(pool)), len(pool) - 1)]
    path, ch = group[min(int(u[1] * len(group)), len(group) - 1)]
    return path, ch, float(u[2])


def load_accompaniment(path, channel, n: int, start_u: float) -> np.ndarray:
    """Accompaniment at 8 kHz (channel ``channel``, or the mono mix), looped / cropped to ``n`` samples from
    sample ``⌊start_u · len⌋``."""
    x, sr = audio_io.load_multichannel(path)
    if channel is None:
        y = audio_io.to_mono(x)
    elif channel < x.shape[1]:
        y = x[:, channel]
    else:
        raise InputError(path, f"accompaniment channel {channel} missing (file has {x.shape[1]})")
    y = audio_io.resample(np.ascontiguousarray(y), sr, grid.SR)
    return loop_to(y, n, int(start_u * y.size))


@dataclass
class ProVoiceAugTrack(AugTrack):
    """Variant ``extra["variant"]`` of a voice over ``extra["accomp_path"]`` (see the module doc); rendered once
    per object, in the worker."""

    def _render(self):
        if self._cache is None:
            spec = AugmentSpec.from_dict(self.extra["spec"])
            voice = audio_io.load_audio(self.audio_path, sr=grid.SR)
            acc = load_accompaniment(self.extra["accomp_path"], self.extra["accomp_channel"], voice.size,
                                     self.extra["accomp_start"])
            times, hz = Track(self.extra["base_id"], "provoices", self.audio_path, self.label_path).load_f0()
            mix, times, hz = render_variant(voice, acc, grid.SR, times, hz, spec, self.extra["seed"], None)
            self._cache = (mix, (times, hz))
        return self._cache


def augment_tracks(tracks, spec, variants: int) -> list:
    """``variants`` mixes per voice, ids ``<clip>__aug<k>``; accompaniments drawn from the tracks' pool."""
    if variants < 1:
        raise ValueError("variants must be >= 1")
    spec_d = spec.to_dict()
    out = []
    for t in tracks:
        pool = t.extra.get("accomp_pool") or []
        if not pool:
            raise ValueError("provoices --augment needs an accompaniment pool: give --accomp at least once")
        for k in range(variants):
            seed = variant_seed(t.track_id, k, spec.seed)
            path, ch, start = draw_accompaniment(pool, seed)
            out.append(ProVoiceAugTrack(f"{t.track_id}__aug{k}", t.dataset, t.audio_path, t.label_path,
                           {"base_id": t.track_id, "variant": k, "seed": seed, "spec": spec_d,
                            "accomp_path": path, "accomp_channel": ch, "accomp_start": start}))
    return out
