"""Device and thread selection, written once for every command: threads=auto follows the CPU affinity."""
import os
import subprocess
import sys

import pytest
import torch

from gcnas.errors import ConfigError
from gcnas.train.runtime import select_device, set_threads, usable_cpus


def test_auto_threads_follow_the_affinity_not_the_machine():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity API on this OS")
    code = ("import os, torch\nfrom gcnas.train.runtime import set_threads\n"
            "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
            "print(set_threads('auto'), torch.get_num_threads(), os.cpu_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    n, torch_threads, machine = map(int, out.stdout.split())
    assert (n, torch_threads) == (1, 1) and machine >= 1  # one allowed core: one thread, whatever the machine has


def test_set_threads_and_its_errors():
    old = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
        assert set_threads("auto") == usable_cpus() == torch.get_num_threads()
        for bad in (0, "many", 1.5, True):
            with pytest.raises(ConfigError, match=r"threads: must be auto or an integer >= 1; got"):
                set_threads(bad)
    finally:
        torch.set_num_threads(old)


def test_select_device():
    assert select_device("cpu") == "cpu"
    assert select_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match=r"device: must be cpu, cuda .*, cuda:N \(GPU N\) or auto; got 'tpu'"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no CUDA device; use device=cpu or auto"):
            select_device("cuda")

