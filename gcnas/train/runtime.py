"""Where training runs: the device and the number of CPU threads, chosen the same way by every command.

``threads=auto`` means the cores this process may use: its CPU affinity, which a SLURM allocation, a cgroup or
``taskset`` may make smaller than the machine (``os.cpu_count()`` would oversubscribe them). That count,
:func:`~gcnas.machine.usable_cpus`, and the device words, :data:`gcnas.sections.DEVICES`, live below the layers (data
sizes its loader workers by the first, composing a config checks the second) and are re-exported here.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import torch

from gcnas.errors import ConfigError
from gcnas.machine import usable_cpus
from gcnas.sections import DEVICES, check_device

__all__ = ["usable_cpus", "check_threads", "set_threads", "gpu_for_worker", "resolve_device", "select_device",
           "DEVICES"]


def check_threads(threads: Any) -> None:
    """``threads`` must be ``auto`` (or null) or an integer >= 1."""
    if threads in (None, "auto"):
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads: must be auto or an integer >= 1; got {threads!r}")


def set_threads(threads: Any = "auto") -> int:
    """Give torch ``threads`` CPU threads (``auto``: :func:`usable_cpus`, shared among the processes torchrun started
    on this machine); returns the number set."""
    check_threads(threads)
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    n = max(1, usable_cpus() // local) if threads in (None, "auto") else threads
    torch.set_num_threads(n)
    return n


def gpu_for_worker(worker: int, n_gpus: int, workers_per_gpu: int = 1) -> int:
    """The GPU index search worker ``worker`` trains on among ``n_gpus`` visible ones: workers ``w*i`` to
    ``w*i + w - 1`` share GPU ``i`` (``w = workers_per_gpu``), wrapping around when there are more workers than
    ``n_gpus * w``; so k workers on k GPUs use k distinct GPUs."""
    if n_gpus < 1:
        raise ValueError(f"gpu_for_worker: n_gpus must be >= 1; got {n_gpus}")
    if workers_per_gpu < 1:
        raise ConfigError(f"search.workers_per_gpu: must be an integer >= 1; got {workers_per_gpu!r}")
    return (int(worker) // int(workers_per_gpu)) % n_gpus


def resolve_device(device: Any, n_gpus: int, worker: Optional[int] = None, workers_per_gpu: int = 1) -> str:
    """``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``auto``) as the device to train on where torch sees ``n_gpus``
    GPUs. For a search ``worker``, ``cuda`` (and ``auto`` on a GPU machine) is ``cuda:<gpu_for_worker(...)>``;
    elsewhere plain ``cuda``, torch's current GPU. A GPU that is not there is a :class:`ConfigError` naming the key."""
    check_device(device)
    if device == "cpu" or (device == "auto" and n_gpus == 0):
        return "cpu"
    if n_gpus == 0:
        raise ConfigError(f"device: {device} was asked for but torch sees no CUDA device; use device=cpu or auto")
    if device.startswith("cuda:"):
        index = int(device[len("cuda:"):])
        if index >= n_gpus:
            raise ConfigError(f"device: {device} names GPU {index}, but torch sees {n_gpus} "
                              f"(cuda:0 to cuda:{n_gpus - 1}); use one of them, cuda or auto")
        return device
    if worker is None:
        return "cuda"
    return f"cuda:{gpu_for_worker(worker, n_gpus, workers_per_gpu)}"


def select_device(device: Any = "auto", worker: Optional[int] = None, workers_per_gpu: int = 1) -> str:
    """:func:`resolve_device` on this machine, and torch's current GPU set to the one chosen, so
    that what allocates on "the" GPU (cuDNN, compiled graphs) uses it too."""
    chosen = resolve_device(device, torch.cuda.device_count() if torch.cuda.is_available() else 0, worker,
                            workers_per_gpu)
    if chosen.startswith("cuda:"):
        torch.cuda.set_device(torch.device(chosen))
    return chosen
