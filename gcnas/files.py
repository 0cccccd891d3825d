"""Files that several processes share: a lock across processes, and writes that are whole or absent.

Search workers share a study's folder: one trains the one-shot supernet while the others wait for it, one pretrains a
missing backbone file, all ask one SQLite file for trials, and any of them may be killed mid-write. Two things serve
every such place:

* :func:`file_lock` holds an exclusive ``flock`` on a lock file for the duration of a ``with`` block (released when
  the block ends or the process dies). Where ``fcntl`` does not exist (not POSIX), it warns once and holds nothing:
  one worker at a time is then the user's to arrange.
* :func:`atomic_write` writes under a temporary name in the same folder, then renames it into place (``os.replace``,
  atomic on one file system), so a reader sees the old file or the new one, never half of one, and a failed write
  leaves the old file as it was.

This module imports only the standard library, so every layer may use it.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import warnings
from pathlib import Path
from typing import Callable, Iterator, Union

__all__ = ["file_lock", "atomic_write", "atomic_write_text"]

_warned_no_lock = False


@contextlib.contextmanager
def file_lock(path: Union[str, Path]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across the processes of this machine while the block
    runs; another process asking for it waits."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        global _warned_no_lock
        if not _warned_no_lock:
            warnings.warn("no fcntl on this platform: gcnas cannot lock files shared by several workers, so run one "
                          "worker per study folder", RuntimeWarning, stacklevel=3)
            _warned_no_lock = True
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def atomic_write(path: Union[str, Path], write: Callable[[Path], None]) -> None:
    """``write(tmp)`` writes the file's content to ``tmp`` (a new name in ``path``'s folder); then it replaces
    ``path`` in one step. If ``write`` raises, the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    # a name of this process's own (not mkstemp's, which creates the file readable by its owner alone: the file
    # gets the permissions any new file gets, as other workers and users of a shared study folder need)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """:func:`atomic_write` of a text file."""
    atomic_write(path, lambda tmp: tmp.write_text(text))
