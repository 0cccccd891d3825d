"""Command-line processes that tests start side by side: each new Python process imports torch and timm anew (about
5 s on a 2-core machine), so cases that need a process each are started together, not one after the other, or started
early, on the core that a module's in-process tests (one thread each, tests/conftest.py) leave idle."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence


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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_json(url: str, server: subprocess.Popen, wait: float, log: Optional[Path] = None) -> Any:
    """The JSON at ``url`` once the process ``server`` answers there; fails with the server's output (piped, or the
    ``log`` file it writes) where it ends or does not answer within ``wait`` seconds (it is killed then)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError):
            if server.poll() is not None or time.monotonic() > deadline:
                if server.poll() is None:
                    server.kill()
                out, err = server.communicate()
                said = log.read_text() if log is not None else f"{out}\n{err}"
                raise AssertionError(f"{url} did not answer (exit status {server.returncode}):\n{said}")
            time.sleep(0.1)
