"""The machine every published number names: read from the real /proc/cpuinfo and torch."""
import os
import platform
from pathlib import Path

import pytest
import torch

from gcnas.machine import cpu_model, describe_machine


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads /proc/cpuinfo (Linux)")
def test_cpu_model_is_the_model_name_and_its_vector_extension():
    info = Path("/proc/cpuinfo").read_text()
    name = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
    flags_line = next((line for line in info.splitlines() if line.startswith("flags")), "flags:")
    flags = set(flags_line.split(":", 1)[1].split())
    got = cpu_model()
    assert got.startswith(name)
    assert ("AVX-512" in got) == ("avx512f" in flags)
    assert ("AVX2" in got) == ("avx2" in flags and "avx512f" not in flags)


def test_describe_machine_names_cores_threads_torch_and_python():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        text = describe_machine()
    finally:
        torch.set_num_threads(old)
    assert text.startswith(cpu_model())
    assert f"{os.cpu_count()} cores, 1 torch threads" in text
    assert f"torch {torch.__version__.split('+')[0]}, Python {platform.python_version()}" in text
