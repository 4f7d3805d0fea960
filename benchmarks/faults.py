"""Faults too slow for the test suite: peak memory of `hkd-eval predict` on long files, and SIGTERM timing.

Every other case of the reliability pass (integer arrays, byte / path-like / file-object sources, two writers of
one output, unwritable outputs, full disk, non-UTF-8 configs and file names, long names, ffmpeg missing, a plot
that does not fit, and SIGTERM / SIGHUP with real workers) is a test in ``tests/test_reliability.py``.

Memory: synthetic 44.1 kHz stereo 16-bit WAVs (a gliding harmonic tone plus noise, written block by block) of
each ``--minutes`` are predicted by ``hkd-eval predict --jobs 1`` in a fresh process; its peak RSS comes from
``os.wait4`` (the kernel's ``ru_maxrss`` of exactly that child). Decoding is streamed (``pipeline/audio.py``) and
the CFP of audio over 10 minutes is computed in two passes over blocks (``pipeline/stream.py``), so the peak
is the 10-minute one-pass CFP (225 MB) or the streamed path's blocks, plus the 8 kHz signal (32 KB per second
of audio, 115 MB per hour), the network and torch.

Measured (shared 2-core AMD EPYC VM, load average ~5 from other jobs, so wall times are slow;
``python benchmarks/faults.py --signals``):

    minutes  audio MB  peak RSS MB  wall s
       10       106          928     178
       60       635          819     788
    SIGTERM: exit status 143 after 0.46 s; 4 child processes, all gone after 0.66 s; kept 1 finished file(s),
    0 temporaries

The 10-minute file is the worst case (the one-pass CFP of up to 10 minutes is held: 225 MB); past 10 minutes only
the 8 kHz signal grows (115 MB per hour), so the peak stays under ~1 GB up to about 2 hours of audio. Before
streamed decoding a 60-minute file peaked at 3.41 GB (3.13 GB of it decoding the whole file at 44.1 kHz). ``--signals`` also times SIGTERM on a 2-worker predict: seconds until the command and
every worker and resource tracker are gone.

Usage: ``python benchmarks/faults.py [--minutes 10 60] [--dir /tmp] [--signals]``
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from proc_tree import alive as _alive, descendants as _descendants  # noqa: E402

SR = 44100


def write_long_wav(path: Path, minutes: float, block_s: float = 10.0) -> None:
    """A ``minutes``-long 44.1 kHz stereo PCM_16 WAV, written block by block (the benchmark's own memory stays
    small): per block a harmonic tone gliding around a new pitch, plus noise."""
    rng = np.random.default_rng(0)
    n_blocks = int(round(minutes * 60 / block_s))
    t = np.arange(int(block_s * SR)) / SR
    with sf.SoundFile(path, "w", SR, 2, subtype="PCM_16") as f:
        for b in range(n_blocks):
            f0 = 150 + 250 * rng.random()
            ph = 2 * np.pi * np.cumsum(f0 * 2 ** (0.3 * np.sin(2 * np.pi * 0.5 * t))) / SR
            x = sum(0.25 / k * np.sin(k * ph) for k in (1, 2, 3)) + 0.02 * rng.standard_normal(t.size)
            f.write(np.stack([x, 0.8 * x], axis=1).astype(np.float32))


def peak_rss(cmd) -> tuple[int, float, int]:
    """``(peak RSS in MB, wall seconds, exit status)`` of ``cmd`` run as a child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss // 1024, time.perf_counter() - t0, p.returncode      # ru_maxrss is in KB on Linux


def memory(minutes_list, folder: Path) -> None:
    print("minutes  audio MB  peak RSS MB  wall s")
    for minutes in minutes_list:
        wav = folder / f"long_{minutes:g}min.wav"
        write_long_wav(wav, minutes)
        out = folder / f"out_{minutes:g}"
        cmd = [sys.executable, "-m", "hkdsme.evaluate.cli", "predict", str(wav), "--out", str(out), "--jobs", "1",
               "--overwrite"]
        rss, wall, status = peak_rss(cmd)
        assert status == 0, f"predict failed on {wav} (status {status})"
        print(f"{minutes:7g}  {wav.stat().st_size / 1e6:8.0f}  {rss:11d}  {wall:6.0f}", flush=True)
        wav.unlink()


def signals(folder: Path) -> None:
    """SIGTERM to a 2-worker predict of 8 one-minute files once the first result is written."""
    src = folder / "sig_in"
    src.mkdir(exist_ok=True)
    for i in range(8):
        write_long_wav(src / f"s{i}.wav", 1.0)
    out = folder / "sig_out"
    p = subprocess.Popen([sys.executable, "-m", "hkdsme.evaluate.cli", "predict", str(src), "--out", str(out),
                          "--jobs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = set()
    while p.poll() is None and not any(out.glob("*.csv")):
        seen |= _descendants(p.pid)
        time.sleep(0.05)
    seen |= _descendants(p.pid)
    t0 = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    status = p.wait()
    t_exit = time.perf_counter() - t0
    while any(_alive(c) for c in seen) and time.perf_counter() - t0 < 60:
        time.sleep(0.05)
    left = [c for c in seen if _alive(c)]
    print(f"SIGTERM: exit status {status} after {t_exit:.2f} s; {len(seen)} child processes, all gone after "
          f"{time.perf_counter() - t0:.2f} s" + (f"; STILL ALIVE: {left}" if left else "")
          + f"; kept {len(list(out.glob('*.csv')))} finished file(s), "
          f"{len([f for f in out.iterdir() if '.tmp-' in f.name])} temporaries")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--signals", action="store_true", help="also time SIGTERM on a 2-worker predict")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        memory(args.minutes, Path(tmp))
        if args.signals:
            signals(Path(tmp))


if __name__ == "__main__":
    main()
