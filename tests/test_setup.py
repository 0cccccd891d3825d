"""The Makefile's set-up steps against a stand-in ``apt-get`` that behaves as a fresh machine's.

A fresh machine has no apt package lists until ``apt-get update`` has run, so ``apt-get install`` answers "Unable to
locate package". CI's machine already has the packages, so without these tests a set-up that forgets to refresh the
lists would stay green there and fail for every newcomer.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

# Logs every call; refuses `install` until `update` has run (or always, with STANDIN_NEVER=1); an accepted install of
# a package "installs" it by creating the file that STANDIN_CREATES names.
STANDIN = r"""#!/usr/bin/env bash
echo "$*" >> "$STANDIN_DIR/calls"
case " $* " in
  *" update "*) touch "$STANDIN_DIR/updated"; exit 0 ;;
  *" install "*)
    if [ -n "${STANDIN_NEVER:-}" ] || [ ! -f "$STANDIN_DIR/updated" ]; then
      echo "E: Unable to locate package ${!#}" >&2; exit 100
    fi
    mkdir -p "$(dirname "$STANDIN_CREATES")" && touch "$STANDIN_CREATES"; exit 0 ;;
esac
exit 1
"""


def _make(tmp_path: Path, *args: str, never: bool = False, creates: Path) -> tuple[subprocess.CompletedProcess, list]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "apt-get").write_text(STANDIN)
    (bindir / "apt-get").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "STANDIN_DIR": str(tmp_path),
           "STANDIN_CREATES": str(creates)}
    env.pop("STANDIN_NEVER", None)
    if never:
        env["STANDIN_NEVER"] = "1"
    res = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], env=env, capture_output=True,
                         text=True, timeout=60)
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return res, calls


def test_data_refreshes_package_lists_on_a_fresh_machine(tmp_path):
    target = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    res, calls = _make(tmp_path, "data", f"FASHION_MNIST={target}", creates=target)
    assert res.returncode == 0, res.stderr
    assert calls == ["install -y dataset-fashion-mnist", "update", "install -y dataset-fashion-mnist"]
    assert target.is_file()
    # Once installed, the step does nothing.
    res, calls = _make(tmp_path, "data", f"FASHION_MNIST={target}", creates=target)
    assert res.returncode == 0 and len(calls) == 3


def test_data_that_cannot_be_installed_says_what_to_run(tmp_path):
    target = tmp_path / "none" / "train-images-idx3-ubyte.gz"
    res, calls = _make(tmp_path, "data", f"FASHION_MNIST={target}", never=True, creates=target)
    assert res.returncode != 0
    assert calls == ["install -y dataset-fashion-mnist", "update", "install -y dataset-fashion-mnist"]
    hint = [line for line in res.stderr.splitlines() if "run by hand" in line]
    assert len(hint) == 1
    assert hint[0].endswith("apt-get update && apt-get install -y dataset-fashion-mnist"), hint


def test_postgres_installs_on_a_fresh_machine(tmp_path):
    initdb = tmp_path / "pg" / "bin" / "initdb"
    res, calls = _make(tmp_path, "postgres", f"PG_INITDB={initdb}", creates=initdb)
    assert res.returncode == 0, res.stderr
    assert calls == ["install -y postgresql", "update", "install -y postgresql"]
    assert "will be skipped" not in res.stdout + res.stderr


def test_postgres_that_cannot_be_installed_is_skipped_with_the_reason(tmp_path):
    initdb = tmp_path / "pg" / "bin" / "initdb"
    res, calls = _make(tmp_path, "postgres", f"PG_INITDB={initdb}", never=True, creates=initdb)
    assert res.returncode == 0, res.stderr
    assert calls[-1] == "install -y postgresql" and "update" in calls
    assert "PostgreSQL could not be installed; the PostgreSQL tests will be skipped" in res.stdout + res.stderr


def test_postgres_already_installed_touches_no_package(tmp_path):
    initdb = tmp_path / "pg" / "bin" / "initdb"
    initdb.parent.mkdir(parents=True)
    initdb.touch()
    res, calls = _make(tmp_path, "postgres", f"PG_INITDB={initdb}", creates=initdb)
    assert res.returncode == 0 and calls == []
