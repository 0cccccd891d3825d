"""Where training runs: the device and the number of CPU threads, chosen the same way by every command.

``threads=auto`` means the cores this process may use: its CPU affinity, which a SLURM allocation, a cgroup or
``taskset`` may make smaller than the machine (``os.cpu_count()`` would oversubscribe them). That count,
:func:`~gcnas.machine.usable_cpus`, and the device words, :data:`gcnas.sections.DEVICES`, live below the layers (data
sizes its loader workers by the first, composing a config checks the second) and are re-exported here.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from gcnas.errors import ConfigError
from gcnas.machine import usable_cpus
from gcnas.sections import DEVICES

__all__ = ["usable_cpus", "check_threads", "set_threads", "select_device", "DEVICES"]


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


def select_device(device: Any = "auto") -> str:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when torch sees a device) as the device to train on."""
    if device not in DEVICES:
        raise ConfigError(f"device: must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}; got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA device; use device=cpu or auto")
    return device
