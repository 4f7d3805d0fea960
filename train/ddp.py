"""Single-process or ``torchrun`` distributed training: process group, rank info, small collectives.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) :func:`init` opens a process group (NCCL on CUDA,
Gloo on CPU) and pins each rank to ``cuda:LOCAL_RANK``; otherwise everything here is a no-op for one process.
Rank 0 alone writes files and logs. Multi-node runs need RUN on a shared filesystem (ranks exchange
pseudo-labels through per-rank files there).
"""
from __future__ import annotations

import os
from datetime import timedelta
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init(device: str = "cpu") -> DistInfo:
    """Rank info for this process; opens the process group when launched by torchrun with several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch sees no CUDA device")
    if world <= 1:
        return DistInfo(device=torch.device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        # long timeout: other ranks wait at a barrier while rank 0 fills the teacher-logit cache
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(hours=3))
    return DistInfo(rank, world, local, dev)


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model``."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_gather_objects(obj, info: DistInfo) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` for one process). For small metadata only."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average of each scalar over ranks (every rank gets the result); a None (an undefined metric, the same on
    every rank, e.g. a pseudo-label accuracy with nothing to score) passes through."""
    if not info.distributed:
        return values
    keys = sorted(k for k, v in values.items() if v is not None)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    out = {k: v for k, v in values.items() if v is None}
    out.update({k: float(v) / info.world for k, v in zip(keys, t.tolist())})
    return out


def shard_range(n: int, info: DistInfo) -> np.ndarray:
    """This rank's contiguous slice of ``range(n)`` (ranks' slices cover it exactly once)."""
    bounds = np.linspace(0, n, info.world + 1).round().astype(np.int64)
    return np.arange(bounds[info.rank], bounds[info.rank + 1])


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
