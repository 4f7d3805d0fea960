"""How a network runs on this machine: precision, memory format and thread count, chosen by capability.

Precision (``resolve_precision``): ``auto`` means bf16 only where the hardware executes it natively, else fp32.

- CUDA: bf16 if ``torch.cuda.is_bf16_supported()``, else fp16.
- CPU: bf16 if the CPU has native bf16 instructions — x86 ``avx512_bf16`` or ``amx_bf16`` in
  ``/proc/cpuinfo``, aarch64 ``bf16`` — and oneDNN is not capped below them (``ONEDNN_MAX_CPU_ISA``);
  otherwise fp32. Without native support PyTorch emulates bf16, which measured ~10x *slower* than fp32 on an
  AVX2-only AMD EPYC (student 902 vs 90 ms/segment per training step; teacher 5,438 vs 561), while on an
  avx512_bf16 EPYC it was 1.4-3x faster. Unknown flags (no ``/proc/cpuinfo``, e.g. macOS) → fp32, the safe side.
- int8 (inference only, :mod:`hkdsme.model.int8`): where ``auto`` would give fp32 on an x86 CPU with AVX2
  (:func:`int8_fast`), and only for a network that has an int8 version (the student with a stored calibration).
  Measured on an AVX2-only AMD EPYC: the student ~1.5x faster than fp32 on one thread (docs/benchmarks.md).
  With native bf16 the bf16 path stays (not measured against int8 there); on ARM and unknown CPUs fp32 stays.

Memory format (``use_channels_last``): channels_last on CPU for the student (up to 1.5x faster inference, measured
on the AVX2-only and the avx512_bf16 EPYC with ``python benchmarks/bench_all.py``), and for the teacher in bf16
(bf16 with contiguous tensors is pathological without native bf16: 11.6 s/segment); the fp32 teacher trains
faster contiguous.

Memory (``keep_freed_memory``): hkdsme's own processes (the CLIs, predict workers) ask glibc's malloc to keep
freed blocks for reuse instead of giving them back to the kernel, so a network's large per-layer tensors do
not page-fault in afresh on every forward pass (student inference 15 % faster on one AVX2 thread; same numbers).

Threads: the cores this process may run on (``os.sched_getaffinity``), not ``os.cpu_count()`` (containers and
``taskset`` give fewer), unless the user set ``OMP_NUM_THREADS``.

torch is imported only inside the functions that use it: the parent of a many-file predict (``hkd-eval predict``
with worker processes) needs the flags, cores and jobs rules but never a network, and importing torch costs it
1.3–1.5 s of one core before any worker can start (docs/benchmarks.md).
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")   # int8: inference only
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")           # x86: instructions that compute bf16 natively
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still include native bf16 (oneDNN's names, upper case)
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2",
                     "ALL", "DEFAULT")


@dataclass(frozen=True)
class Precision:
    """A resolved precision and the one-line reason it was chosen (logged once, stored with the run)."""

    name: str          # fp32 | bf16 | fp16
    reason: str

    def __str__(self) -> str:
        return self.name


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """CPU feature flags of this machine (``/proc/cpuinfo`` "flags" on x86, "Features" on ARM); empty if unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    """Model name of the CPU (``/proc/cpuinfo``), or ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def native_cpu_bf16(flags=None, env=None, machine=None) -> tuple[bool, str]:
    """``(native, why)``: does this CPU execute bf16 matrix maths natively? (arguments default to this machine)."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    env = os.environ if env is None else env
    machine = (platform.machine() if machine is None else machine).lower()
    if not flags:
        return False, "CPU flags unknown"
    if machine in ("aarch64", "arm64"):
        return ("bf16" in flags), ("CPU has bf16 (Armv8.6)" if "bf16" in flags else "CPU has no bf16 instructions")
    have = [f for f in BF16_CPU_FLAGS if f in flags]
    if not have:
        best = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
        return False, f"CPU has {best} but no avx512_bf16/amx_bf16"
    cap = env.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap and cap not in _ONEDNN_BF16_ISAS:
        return False, f"CPU has {'/'.join(have)} but ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below it"
    return True, f"CPU has {'/'.join(have)}"


def int8_fast(flags=None, machine=None, engine=None) -> tuple[bool, str]:
    """``(fast, why)``: is int8 inference the fast choice here, given no native bf16? An x86-64 CPU with AVX2
    and oneDNN's int8 convolution in torch (arguments default to this machine; tests fake them)."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    machine = (platform.machine() if machine is None else machine).lower()
    if machine not in ("x86_64", "amd64"):
        return False, f"int8 not measured on {machine or 'this CPU'}"
    if "avx2" not in flags:
        return False, "CPU has no avx2"
    if engine is None:
        from hkdsme.model.int8 import engine_available

        engine = engine_available()
    if not engine:
        return False, "torch has no oneDNN int8 convolution"
    return True, "AVX2 and oneDNN int8"


def resolve_precision(name: str, device, *, cpu_bf16=None, cuda_bf16=None, int8_model: bool = False,
                      cpu_int8=None) -> Precision:
    """``fp32 | bf16 | fp16 | int8 | auto`` → the :class:`Precision` to run on ``device``.

    ``auto``: CUDA → bf16 if supported else fp16; CPU → bf16 iff :func:`native_cpu_bf16`, else int8 if
    ``int8_model`` (the caller runs inference of a network that has an int8 version) and :func:`int8_fast`,
    else fp32. Explicit names are kept (bf16 on a CPU without native support is allowed, only slow); fp16 on
    CPU is refused (no GradScaler there); int8 needs the CPU, ``int8_model`` and the x86 engine.
    ``cpu_bf16`` / ``cuda_bf16`` / ``cpu_int8`` override the detected capability (tests).
    """
    import torch

    device = torch.device(device)
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {'|'.join(PRECISIONS)}, got {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs --device cuda (use bf16 or fp32 on CPU)")
    if name == "int8":
        if device.type != "cpu":
            raise ValueError("int8 runs on the CPU only (use --device cpu, or bf16/fp16 on a GPU)")
        if not int8_model:
            raise ValueError("int8 is for inference of a student with an int8 calibration "
                             "(hkd-eval calibrate-int8); use fp32 or bf16")
        from hkdsme.model.int8 import engine_available

        if not engine_available():
            raise ValueError("int8 needs oneDNN's int8 convolution, which this torch build lacks; use fp32")
    if name != "auto":
        return Precision(name, f"{name} requested")
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported() if cuda_bf16 is None else bool(cuda_bf16)
        return Precision("bf16", "auto: GPU supports bf16") if ok else Precision("fp16", "auto: GPU has no bf16")
    if cpu_bf16 is None:
        ok, why = native_cpu_bf16()
    else:
        ok, why = bool(cpu_bf16), ("bf16 native (given)" if cpu_bf16 else "no native bf16 (given)")
    if ok:
        return Precision("bf16", f"auto: {why}")
    if int8_model:
        fast, why8 = int8_fast() if cpu_int8 is None else (bool(cpu_int8), "int8 fast (given)" if cpu_int8
                                                             else "int8 not fast (given)")
        if fast:
            return Precision("int8", f"auto: {why}; {why8}, so int8")
        why = f"{why}; {why8}"
    return Precision("fp32", f"auto: {why}, so fp32")


def autocast(precision, device):
    """Autocast context for ``precision`` (a no-op for fp32)."""
    import torch

    precision = str(precision)
    device = torch.device(device)
    if precision in ("fp32", "int8"):     # int8: the quantized network sets its own arithmetic
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def device_type(device) -> str:
    """``"cpu"`` / ``"cuda"`` / … of a device given as a string (``"cuda:1"``) or a ``torch.device``, without torch."""
    return str(getattr(device, "type", device)).partition(":")[0]


def use_channels_last(device, kind: str, precision: str) -> bool:
    """Memory format by measurement (``benchmarks/bench_all.py``): on CPU the student always runs channels_last;
    the teacher only in bf16 (fp32 teacher training steps were faster contiguous on both EPYC settings: 369 vs
    439 ms/segment on AVX2, 328 vs 345 on AVX-512 — its inference is ~10 % faster channels_last, a difference
    left alone to keep one rule — while bf16 contiguous is pathological without native bf16: 11.6 vs 4.5
    s/segment). GPUs: contiguous (cuDNN picks)."""
    if device_type(device) != "cpu":
        return False
    return kind != "teacher" or str(precision) == "bf16"


def inference_batch(device, precision) -> int:
    """Segments per inference forward pass, by measurement (idle 2-core EPYC, docs/benchmarks.md).
    CPU fp32 / bf16: 16. Batch 16 beat 32 in every CPU case (``benchmarks/bench_all.py --quick``: fp32 on AVX2 17.3
    vs 20.2 ms/segment, native bf16 9.5 vs 12.7); batch 8 was no faster end to end in fp32 (``hkd-eval predict`` on
    13 real songs, 4 alternating rounds, AVX2: batch 16 65.2 / 64.0 / 67.3 / 71.7 s, batch 8 65.8 / 67.7 / 68.4 /
    71.4 s). CPU int8: 4, whose activations stay in cache (``benchmarks/bench_vs_melodia.py``, 2 rounds: 13 real
    songs 49.0 / 46.5 s against 52.5 / 51.2 s at batch 16, 16 short tracks 13.6 / 14.4 s against 16.1 / 14.1 s).
    GPU: 64. Batch size never changes the output (segments are independent in eval mode; tests, and the
    byte-identical melody files of ``bench_vs_melodia.py``)."""
    if device_type(device) != "cpu":
        return 64
    return 4 if precision == "int8" else 16


MAX_AUTO_JOBS = 4     # worker processes "auto" starts at most (each holds a model and a song's CFP, ~0.4 GB)


def inference_jobs(device, n_files: int) -> int:
    """Worker processes for predicting ``n_files`` files ("auto"): on a CPU one per usable core (at most
    :data:`MAX_AUTO_JOBS`, never more than files), threads split between them; 1 on a GPU or for one file.
    Whole files in parallel processes beat one process with all threads on 2 cores (docs/benchmarks.md),
    with the same output."""
    if device_type(device) != "cpu" or n_files < 2:
        return 1
    return max(1, min(int(n_files), usable_cores(), MAX_AUTO_JOBS))


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4     # glibc mallopt() parameter numbers (<malloc.h>)
_TRIM_BYTES = 1 << 40
_HEAP_KEPT = None


def keep_freed_memory() -> bool:
    """Make glibc malloc serve every block from its heap and never trim it: ``mallopt(M_MMAP_MAX, 0)`` and
    ``mallopt(M_TRIM_THRESHOLD, 1 TiB)``. Returns whether it applied (once per process; idempotent).

    Why: every layer allocates its output afresh (the student's first SELU alone is 42 MB for a batch of 16);
    glibc serves blocks above its mmap threshold (≤ 32 MB) with a fresh ``mmap`` and unmaps them on free, so each
    forward pass page-faults all its activations in again, the kernel zeroing every page. Kept in the heap they
    are reused. Measured on the 2-core EPYC (``benchmarks/bench_all.py``, docs/benchmarks.md): student
    inference on one AVX2 thread 19.7 → 16.7 ms/segment, out-of-place SELU of that tensor 31 → 14–20 ms; the
    output is bit-identical (allocation never changes the arithmetic; torch aligns buffers to 64 bytes either
    way). The cost: the process keeps its peak heap until it exits. Process-wide and not undone, so only
    hkdsme's own processes call it (``hkd-*`` commands, predict workers) — never ``import hkdsme``. No-op off
    glibc (macOS, musl, Windows) and where ``HKDSME_MALLOC=system``.
    """
    global _HEAP_KEPT
    if _HEAP_KEPT is not None:
        return _HEAP_KEPT
    _HEAP_KEPT = False
    if os.environ.get("HKDSME_MALLOC", "").strip().lower() == "system" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        _HEAP_KEPT = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES))
    except (OSError, AttributeError):
        _HEAP_KEPT = False
    return _HEAP_KEPT


def usable_cores() -> int:
    """Cores this process may run on: ``len(os.sched_getaffinity(0))`` where available, else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads a network gets in this process: ``OMP_NUM_THREADS`` if set (> 0), else :func:`usable_cores`."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else usable_cores()


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: :func:`default_threads`)."""
    import torch

    n = max(1, int(default_threads() if n is None else n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def describe() -> str:
    """One line about this machine's compute: CPU name, ATen vector level, native bf16, threads."""
    import torch

    ok, why = native_cpu_bf16()
    return (f"{cpu_name()}; torch {torch.__version__} CPU capability {torch.backends.cpu.get_cpu_capability()}; "
            f"{'native' if ok else 'no native'} bf16 ({why}); {usable_cores()} usable cores")
