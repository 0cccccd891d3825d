"""The machine a number was measured on: CPU model and vector extension, cores, torch and Python versions.

Accuracies and timings differ between CPUs (other kernels, other rounding; one AVX2-only machine ran the demo 3x slower
than an AVX-512 one), so every published number names its machine: benchmarks print :func:`describe_machine` beside
their tables, and a search records it in its study (``machine`` user attribute) for the report and the model card.
"""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch

__all__ = ["cpu_model", "describe_machine", "usable_cpus"]


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask where the OS has one): a SLURM allocation, a cgroup or
    ``taskset`` may make it smaller than the machine, which ``os.cpu_count()`` would oversubscribe. Threads
    (:mod:`gcnas.train.runtime`) and DataLoader workers (:mod:`gcnas.data.stream`) are sized from it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)  # the CPU does not change; every trial asks
def cpu_model() -> str:
    """The CPU's model name and its widest x86 vector extension (AVX-512, AVX2), from ``/proc/cpuinfo`` on Linux;
    ``platform.processor()`` elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    flags = set(fields.get("flags", "").split())
    ext = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    return f"{name} ({ext})" if ext else name


def describe_machine() -> str:
    """One line: CPU model, cores torch uses of those the OS has, GPU if CUDA is in use, torch and Python versions."""
    cores = os.cpu_count() or 1
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu_model()}, {cores} cores, {torch.get_num_threads()} torch threads{gpu}; torch "
            f"{torch.__version__.split('+')[0]}, Python {platform.python_version()}")
