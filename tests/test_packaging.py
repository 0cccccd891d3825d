"""The wheel a user installs with ``pip install .`` holds every module of the source tree.

``pyproject.toml`` lists gcnas's packages by hand (the config package lives in ``conf/``), and the editable install
the tests run from finds every module whatever that list says, so a package left out of it breaks only a user's
wheel install: this builds the wheel and compares.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_config(tmp_path):
    # Built from a copy: setuptools puts whatever an earlier build left in build/ into the wheel, which would hide
    # a package missing from the list.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "wandb", "outputs", "multirun", "exports",
        "benchmarks", "tests", "docs"))  # none of them goes into the wheel; benchmarks/ may hold large caches
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("gcnas-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gcnas").rglob("*.py")}
    configs = {"gcnas/conf/" + p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert modules and "gcnas/oneshot/supernet.py" in modules
    assert not modules - names, f"missing from the wheel (add the package to pyproject.toml): {sorted(modules - names)}"
    assert not configs - names, f"configs missing from the wheel: {sorted(configs - names)}"
