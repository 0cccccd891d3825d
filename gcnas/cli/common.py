"""What the Hydra entry points share: resolving a config with clear errors, and user errors without tracebacks."""
from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import gcnas.conf  # noqa: F401  (registers the resolvers the configs use, also in a launcher's worker process)
import gcnas.cli.help  # noqa: F401  (the resolver the --help pages use)
from gcnas.errors import ConfigError, Interrupted

__all__ = ["resolve", "user_errors", "require_study", "check_writable"]


def resolve(cfg: DictConfig) -> dict:
    """The composed config as plain containers; an unresolvable or missing value names its key."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "config"
        msg = str(e).splitlines()[0]
        if "GCNAS_STORAGE_URL" in msg:
            msg += ("; storage=postgres reads the URL from it: export GCNAS_STORAGE_URL=postgresql+psycopg://USER:"
                    "PASSWORD@HOST:5432/DB (or give study.storage=...)")
        raise ConfigError(f"{key}: {msg}") from None


def check_writable(root: Any, key: str = "paths.root") -> Path:
    """Create ``root`` if needed and prove it writable, or say so naming the key (before any study is touched)."""
    path = Path(str(root))
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".gcnas-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{key}: cannot write to {path} ({e.strerror or e}); choose a writable folder, e.g. "
                          f"{key}=$PWD/outputs") from None
    return path


def require_study(config: dict) -> tuple[str, str]:
    """(study.name, study.storage); with no name, the error lists the studies the storage holds."""
    name, url = (config.get("study") or {}).get("name"), (config.get("study") or {}).get("storage")
    if not name:
        from gcnas.search.study import study_names

        names = study_names(url)
        raise ConfigError(f"study.name: required (study.name=NAME); the storage holds: "
                          f"{', '.join(names) if names else '(no studies)'}")
    if not isinstance(name, str):
        raise ConfigError(f"study.name: must be a string; got {name!r}")
    return name, url


def log_to_files(level: int, message: str, exc_info: bool = False) -> None:
    """Log ``message`` on the ``gcnas`` logger to the log files its records reach (a Hydra job's ``<job>.log``) and
    not to the console: the command prints its own line to stderr, and Hydra's console handler would show it twice."""
    logger = logging.getLogger("gcnas")
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, __file__, 0, "%s", (message,),
                               sys.exc_info() if exc_info else None)
    current = logger
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.FileHandler) and level >= handler.level:
                handler.handle(record)
        current = current.parent if current.propagate else None


def user_errors(prog: str) -> Callable:
    """Wrap a Hydra main: a :class:`~gcnas.errors.ConfigError` is a user error, printed to stderr as one paragraph
    (and logged to the log files, so a multirun job's log says why the job stopped), exit status 2; an interrupt
    (Ctrl-C, or :class:`~gcnas.errors.Interrupted`) is one line saying what was kept, exit status 128 + the signal
    (130 for SIGINT); anything else is a bug and keeps its traceback (Hydra prints it, exit status 1)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ConfigError as e:
                log_to_files(logging.ERROR, str(e))
                log_to_files(logging.DEBUG, "user error", exc_info=True)
                print(f"{prog}: {e}", file=sys.stderr)
                sys.exit(2)
            except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM where the command turns it into Interrupted
                stop = e if isinstance(e, Interrupted) else Interrupted()
                log_to_files(logging.WARNING, str(stop))
                print(f"{prog}: {stop}", file=sys.stderr)
                sys.exit(stop.exit_status)

        return inner

    return wrap
