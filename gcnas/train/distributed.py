"""Many processes: what ``torchrun`` sets up, read through ``torch.distributed``'s public API.

``torchrun --nproc_per_node=N --no-python gcnas-train ...`` starts N copies of the command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` in their environment. :func:`init_distributed`
joins them into one process group (NCCL on CUDA, Gloo on CPU) and picks this rank's device; :func:`fit
<gcnas.train.loop.fit>` then trains with DistributedDataParallel, each rank reading its share of every epoch. Outside
torchrun everything here is a no-op, and a single process trains as before.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch

__all__ = ["init_distributed", "rank_and_world", "is_main_process", "all_reduce_sum", "barrier", "shutdown"]


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str) -> str:
    """Join the process group torchrun prepared (once) and return this rank's device: ``cuda:LOCAL_RANK`` on CUDA,
    ``cpu`` otherwise. Without torchrun, ``device`` unchanged."""
    import torch.distributed as dist

    if not launched_by_torchrun():
        return device
    on_cuda = device.startswith("cuda")
    if on_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
    return device


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) when no process group is up."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes checkpoints, logs, W&B runs and reports."""
    return rank_and_world()[0] == 0


def all_reduce_sum(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """``values`` added up over every rank (unchanged with one process)."""
    import torch.distributed as dist

    if rank_and_world()[1] == 1:
        return list(values)
    device = torch.device(device)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64,
                     device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def barrier() -> None:
    import torch.distributed as dist

    if rank_and_world()[1] > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun command)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
