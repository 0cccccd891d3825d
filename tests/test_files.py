"""Shared files (gcnas.files): a lock that a second process waits on, and writes that are whole or absent."""
from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from gcnas.files import atomic_write, atomic_write_text, file_lock


def _hold(lock: str, marks: str) -> None:
    with file_lock(lock):
        Path(marks).write_text(f"{time.monotonic()}\n")  # holding it
        time.sleep(0.5)
        with open(marks, "a") as f:
            f.write(f"{time.monotonic()}\n")  # about to let go


def test_a_second_process_waits_for_the_lock(tmp_path):
    lock, marks = tmp_path / "x.lock", tmp_path / "marks"
    child = multiprocessing.get_context("fork").Process(target=_hold, args=(str(lock), str(marks)))
    child.start()
    while not marks.is_file():
        time.sleep(0.01)
    with file_lock(lock):
        got = time.monotonic()
    child.join()
    released = float(marks.read_text().split()[-1])
    assert child.exitcode == 0 and got >= released  # not before the holder let go


def test_a_failed_write_leaves_the_old_file_and_no_trace(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_text(path, "old")

    def half(tmp: Path) -> None:
        tmp.write_text("new but cut")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_written_file_has_the_permissions_of_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644  # other workers and users can read it
