"""Small labeled polyphonic "songs" at 8 kHz with an exactly known vocal f0 (for tests and smoke runs).

Voice: phrases of notes (MIDI 50..74, 147–587 Hz) with cosine glides between notes, vibrato (4.5–6.5 Hz,
15–50 cents, faded in over each note), an additive harmonic source whose harmonic ``h`` has amplitude
``h^-0.6 · (0.25 + Σ_i a_i exp(-½((h·f0 − F_i)/B_i)²))`` (formant-like envelope, one vowel per note), attack and
release ramps, and breath noise in the gaps between phrases (f0 = 0 there). Accompaniment: sustained 3-note
chords plus a bass note (steeper harmonic tilt), changing every 1–2 s, about 6 dB below the voice, plus white
noise about 35 dB below. The label is the instantaneous f0 of the synthesised voice, ``f0[n]`` at sample ``n``,
whose phase is ``2π Σ f0 / sr``; ``make_song`` returns it every ``FINE_HOP`` samples (1 ms).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hkdsme.pipeline import grid
from hkdsme.pipeline.atomic import atomic_path

SR = grid.SR
FINE_HOP = 8                     # label grid of make_song: 8 samples = 1 ms
MIDI_RANGE = (50, 74)            # note centres; with vibrato/glides f0 stays within ~140–610 Hz


def _hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def _voice_f0(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    """Per-sample f0 (0 = unvoiced), the voiced phrase spans, and a per-sample note index (for vowels)."""
    f0 = np.zeros(n)
    note_idx = np.full(n, -1)
    phrases = []
    pos = int(rng.uniform(0.1, 0.3) * SR)
    midi = rng.integers(MIDI_RANGE[0] + 4, MIDI_RANGE[1] - 4)
    k_note = 0
    while pos < n - int(0.3 * SR):
        p_len = min(int(rng.uniform(0.8, 2.2) * SR), n - pos - int(0.05 * SR))
        start = pos
        cents = np.zeros(p_len)
        prev = None
        t0 = 0
        while t0 < p_len:
            d = min(int(rng.uniform(0.2, 0.6) * SR), p_len - t0)
            midi = int(np.clip(midi + rng.choice([-5, -3, -2, -1, 0, 1, 2, 3, 4, 5]), *MIDI_RANGE))
            c = 100.0 * midi
            seg = np.full(d, c)
            if prev is not None:    # cosine glide from the previous note over its first 30–80 ms
                g = min(int(rng.uniform(0.03, 0.08) * SR), d)
                w = 0.5 - 0.5 * np.cos(np.pi * np.arange(g) / g)
                seg[:g] = prev + (c - prev) * w
            tt = np.arange(d) / SR
            depth = rng.uniform(15, 50) * np.minimum(tt / 0.25, 1.0)      # vibrato fades in
            seg += depth * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * tt + rng.uniform(0, 2 * np.pi))
            cents[t0:t0 + d] = seg
            note_idx[start + t0:start + t0 + d] = k_note
            k_note += 1
            prev, t0 = seg[-1], t0 + d
        f0[start:start + p_len] = _hz(cents / 100.0)
        phrases.append((start, start + p_len))
        pos = start + p_len + int(rng.uniform(0.2, 0.7) * SR)
    return f0, phrases, note_idx


def _voice_audio(rng, f0, phrases, note_idx) -> np.ndarray:
    n = f0.size
    phase = 2 * np.pi * np.cumsum(f0) / SR
    n_notes = int(note_idx.max()) + 1
    # one vowel (3 formants: centre Hz, bandwidth Hz, gain) per note
    fc = np.stack([rng.uniform(300, 850, n_notes), rng.uniform(900, 2200, n_notes),
                   rng.uniform(2300, 3200, n_notes)], axis=1)
    bw = np.array([90.0, 150.0, 250.0])
    gains = np.array([1.0, 0.6, 0.3])
    y = np.zeros(n)
    idx = np.maximum(note_idx, 0)
    for h in range(1, 40):
        fh = h * f0
        alive = (fh > 0) & (fh < 0.95 * SR / 2)        # keep every partial below Nyquist
        if not alive.any():
            break
        env = (np.exp(-0.5 * ((fh[:, None] - fc[idx]) / bw) ** 2) * gains).sum(axis=1) + 0.25
        y += np.where(alive, h ** -0.6 * env * np.sin(h * phase), 0.0)
    amp = np.zeros(n)
    for s, e in phrases:   # 20 ms attack, 40 ms release, slow level drift
        L = e - s
        a = np.minimum(np.arange(L) / (0.02 * SR), 1.0) * np.minimum((L - np.arange(L)) / (0.04 * SR), 1.0)
        amp[s:e] = a * (0.8 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 0.7) * np.arange(L) / SR))
    y *= amp
    # breaths: band-limited noise bursts in some gaps (unvoiced, f0 = 0)
    for (_, e0), (s1, _) in zip(phrases[:-1], phrases[1:]):
        if rng.random() < 0.7 and s1 - e0 > int(0.1 * SR):
            L = min(s1 - e0 - int(0.04 * SR), int(0.25 * SR))
            st = e0 + int(0.02 * SR)
            noise = np.convolve(rng.standard_normal(L), np.ones(4) / 4, mode="same")
            y[st:st + L] += 0.05 * noise * np.hanning(L)
    return y


def _accompaniment(rng, n: int) -> np.ndarray:
    y = np.zeros(n)
    pos = 0
    root = int(rng.integers(45, 57))
    while pos < n:
        L = min(int(rng.uniform(1.0, 2.0) * SR), n - pos)
        root = int(np.clip(root + rng.choice([-5, -3, 0, 2, 5, 7]), 43, 58))
        third = 3 if rng.random() < 0.4 else 4
        notes = [root - 12, root, root + third, root + 7]          # bass + triad
        t = np.arange(L) / SR
        fade = np.minimum(np.arange(L) / (0.01 * SR), 1.0) * np.minimum((L - np.arange(L)) / (0.01 * SR), 1.0)
        decay = np.exp(-t / rng.uniform(1.0, 3.0))
        for m in notes:
            f = _hz(m) * (1 + rng.uniform(-0.002, 0.002))           # slight detune
            ph = rng.uniform(0, 2 * np.pi)
            for h in range(1, 12):
                if h * f >= 0.95 * SR / 2:
                    break
                y[pos:pos + L] += h ** -1.5 * np.sin(2 * np.pi * h * f * t + ph * h) * fade * decay
        pos += L
    return y


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) + 1e-12


def make_song(seed: int, duration: float = 8.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A song of ``duration`` s at 8 kHz: ``(audio float32, times s, f0 Hz)`` with the label every 1 ms.

    ``times[i] = i · FINE_HOP / SR`` and ``f0[i]`` is the exact instantaneous voice f0 at that sample (0 =
    unvoiced). Deterministic per ``seed``; peak-normalised to 0.8.
    """
    if duration < 1.0:
        raise ValueError("duration must be at least 1 s")
    rng = np.random.default_rng(seed)
    n = int(round(duration * SR))
    f0, phrases, note_idx = _voice_f0(rng, n)
    voice = _voice_audio(rng, f0, phrases, note_idx)
    acc = _accompaniment(rng, n)
    voiced = f0 > 0
    # voice-to-accompaniment ≈ +6 dB (measured on voiced samples); noise ≈ −35 dB re the voice
    acc *= _rms(voice[voiced]) / _rms(acc) * 10 ** (-6 / 20)
    noise = rng.standard_normal(n) * _rms(voice[voiced]) * 10 ** (-35 / 20)
    y = voice + acc + noise
    y *= 0.8 / np.max(np.abs(y))
    idx = np.arange(0, n, FINE_HOP)
    return y.astype(np.float32), idx / SR, f0[idx].copy()


# An isolated voice for checking monophonic f0 trackers: three notes far apart (110–523 Hz) with a 5.5 Hz vibrato
# of ±50 cents, digital silence between them.
VIBRATO_NOTES = ((0.4, 1.6, 220.0), (2.0, 3.2, 523.25), (3.5, 4.1, 110.0))   # (start s, end s, centre Hz)
VIBRATO_DURATION = 4.5


def vibrato_f0(t: np.ndarray) -> np.ndarray:
    """f0 in Hz of :func:`vibrato_voice` at times ``t`` (s): ``hz · 2^(0.5/12 · sin(2π·5.5·(t − start)))`` inside
    each note of :data:`VIBRATO_NOTES`, 0 outside."""
    f = np.zeros_like(t, dtype=float)
    for a, b, hz in VIBRATO_NOTES:
        on = (t >= a) & (t < b)
        f[on] = hz * 2.0 ** (0.5 / 12 * np.sin(2 * np.pi * 5.5 * (t[on] - a)))
    return f


def vibrato_voice(sr: int = 16000) -> np.ndarray:
    """The voice of :func:`vibrato_f0` (float32, ``VIBRATO_DURATION`` s at ``sr``): 8 harmonics of amplitude 1/k
    below 0.45·sr, phase integrated from the f0, 30 ms fades at each note's ends, peak ≈ 0.25."""
    t = np.arange(int(VIBRATO_DURATION * sr)) / sr
    f = vibrato_f0(t)
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum((1.0 / k) * np.sin(k * phase) * (k * f < 0.45 * sr) for k in range(1, 9))
    env = np.zeros_like(t)
    for a, b, _ in VIBRATO_NOTES:
        on = (t >= a) & (t < b)
        env[on] = np.minimum(1.0, np.minimum(t[on] - a, b - t[on]) / 0.03)
    return (0.25 * x * env).astype(np.float32)


def _song_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(i)]).generate_state(1)[0])


def write_dataset(root, n: int = 8, seed: int = 0, duration: float = 8.0) -> list[Path]:
    """Write ``<root>/synth_###.wav`` (16-bit PCM) + ``synth_###REF.txt`` (adc2004 layout); returns the wav paths.

    The REF file holds ``time<TAB>f0`` on the 10 ms feature grid, ``t = 0.01·(i+1)`` for ``i <
    grid.n_frames(len(audio))``; each value is the exact f0 at that instant (a 1 ms grid sample, so nothing is
    interpolated). Files are written to a temp name and renamed.
    """
    import soundfile as sf

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(int(n)):
        y, times, f0 = make_song(_song_seed(seed, i), duration)
        name = f"synth_{i:03d}"
        t = grid.frame_times(grid.n_frames(y.size))
        fine = np.rint(t * SR / FINE_HOP).astype(np.int64)      # 10 ms = every 10th 1 ms sample
        ref = f0[fine]
        _atomic(root / f"{name}.wav", lambda p: sf.write(p, y, SR, subtype="PCM_16", format="WAV"))
        text = "".join(f"{a:.2f}\t{b:.6f}\n" for a, b in zip(t, ref))
        _atomic(root / f"{name}REF.txt", lambda p: Path(p).write_text(text))
        paths.append(root / f"{name}.wav")
    return paths


def _atomic(dest: Path, write) -> None:
    with atomic_path(dest) as tmp:
        write(str(tmp))
