"""Command-line processes that tests start side by side: each new Python process imports torch and timm anew (about
5 s on a 2-core machine), so cases that need a process each are started together, not one after the other, or started
early, on the core that a module's in-process tests (one thread each, tests/conftest.py) leave idle."""
from __future__ import annotations

import subprocess
from typing import Mapping, Sequence


def start(commands: Mapping[str, Sequence[str]], **popen) -> dict:
    """Start every command now, not waiting: ``{key: Popen}`` with text stdout and stderr piped; ``popen`` is given to
    every ``subprocess.Popen`` (``cwd``, ``env``). Read them with :func:`finish`."""
    return {key: subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
            for key, cmd in commands.items()}


def finish(procs: Mapping[str, subprocess.Popen], timeout: float = 600) -> dict:
    """Wait for every process :func:`start` started: ``{key: CompletedProcess}``. One still running at ``timeout``
    (or when another's wait failed) is killed."""
    done = {}
    try:
        for key, proc in procs.items():
            out, err = proc.communicate(timeout=timeout)
            done[key] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return done


def run_together(commands: Mapping[str, Sequence[str]], timeout: float = 600, **popen) -> dict:
    """Start every command at once and wait for all: ``{key: CompletedProcess}`` (:func:`start`, :func:`finish`)."""
    return finish(start(commands, **popen), timeout)
