"""Shared helpers (not a test module): the processes below a pid and whether one still runs, from Linux's /proc.

Imported by ``tests/test_reliability.py`` and ``benchmarks/faults.py``.
"""
from __future__ import annotations

import os


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...); empty where /proc cannot say."""
    out = set()
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as fh:
                for c in map(int, fh.read().split()):
                    out |= {c} | descendants(c)
    except OSError:
        pass
    return out


def alive(pid: int) -> bool:
    """``pid`` exists and has not ended (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
