"""Storage, sampler, pruner and study from the config."""
from __future__ import annotations

import importlib
import inspect
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import optuna
import sqlalchemy.exc

from gcnas.errors import ConfigError

__all__ = ["make_storage", "make_sampler", "make_pruner", "make_study", "redact_url", "open_study", "study_names",
           "storage_file"]

log = logging.getLogger("gcnas.search")
STORAGE_ATTEMPTS = 8  # tries to open an RDB storage whose database errs or does not answer (0.25 s, 0.5 s, ... apart)


# scheme://user:password@ , also as Hydra escapes it in override strings (scheme\://user\:password@, with the
# backslashes doubled again inside YAML strings)
_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*\\*://[^:/@\s'\"\\]+\\*:)[^@\s'\"]+@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` (or any text) with every URL password replaced by ``***`` (for logs, messages and saved configs)."""
    return _PASSWORD.sub(r"\1***@", str(url))


def make_storage(url: str, heartbeat_interval: Optional[float] = None, grace_period: Optional[float] = None,
                 failed_trial_callback: Optional[Callable] = None) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL: ``sqlite:///file``, ``postgresql+psycopg://...``, ``journal:///file``.

    The RDB schema is created here, with retries, so that concurrent workers starting together do not race on it.
    With ``heartbeat_interval`` (seconds), running trials send heartbeats; one silent for ``grace_period`` seconds
    is failed by the next worker that looks, and ``failed_trial_callback`` retries it (RDB storages only).
    """
    if not isinstance(url, str) or not url:
        raise ConfigError(f"study.storage: must be a storage URL (sqlite:///..., postgresql+psycopg://..., "
                          f"journal:///...); got {url!r}")
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        if heartbeat_interval:
            raise ConfigError("study.heartbeat_interval: Optuna's JournalStorage has no heartbeats; use storage=sqlite "
                              "or storage=postgres for heartbeats, or set study.heartbeat_interval=null")

        path = Path(url[len("journal://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ConfigError(f"study.storage: {url!r} is not a URL; valid forms are sqlite:///path, "
                          "postgresql+psycopg://user:password@host/db and journal:///path")
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval:
        heartbeat = {"heartbeat_interval": max(1, int(round(heartbeat_interval))),
                     "grace_period": None if grace_period is None else max(1, int(round(grace_period))),
                     "heartbeat_stale_trial_callback": failed_trial_callback}
    last: Optional[Exception] = None
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in use
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except sqlalchemy.exc.DBAPIError as e:
            # The database answered with an error or not at all: the server is not up yet, the SQLite file is locked,
            # or another worker is creating the schema at the same moment. Worth another try.
            last = e
            log.warning("storage %s: attempt %d of %d failed (%s)", redact_url(url), attempt, STORAGE_ATTEMPTS,
                        redact_url(str(e)).splitlines()[0])
            time.sleep(0.25 * attempt)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:  # a bad URL or a missing driver: no retry helps
            last = e
            break
    raise ConfigError(f"study.storage: cannot open {redact_url(url)}: "
                      f"{redact_url(str(last)).splitlines()[0]}") from last


def _instantiate(spec: Mapping[str, Any], what: str, extra: Mapping[str, Any]) -> Any:
    spec = dict(spec)
    target = spec.pop("_target_", None)
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"{what}._target_: must name an Optuna class (e.g. optuna.samplers.TPESampler); got "
                          f"{target!r}")
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{what}._target_: {target!r} does not exist") from None
    params = inspect.signature(cls.__init__).parameters
    kwargs = {**spec, **{k: v for k, v in extra.items() if k in params}}
    try:
        return cls(**kwargs)
    except TypeError as e:
        valid = [p for p in params if p != "self"]
        raise ConfigError(f"{what}: {e}; {name} takes {', '.join(valid)}") from None
    except ValueError as e:  # the class refused a value: say which group, and what was given
        given = ", ".join(f"{what}.{k}={v!r}" for k, v in spec.items())
        raise ConfigError(f"{what}: {name} refuses {given}: {e}") from None


def make_sampler(spec: Mapping[str, Any], grid: Optional[Callable[[], dict]] = None) -> optuna.samplers.BaseSampler:
    extra: dict[str, Any] = {}
    if str(spec.get("_target_", "")).endswith("GridSampler"):
        if grid is None:
            raise ConfigError("sampler=grid needs a search space")
        extra["search_space"] = grid()
    return _instantiate(spec, "sampler", extra)


def make_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    return _instantiate(spec, "pruner", {})


def make_study(name: str, storage: optuna.storages.BaseStorage, directions: Sequence[str],
               sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """Create the study or load it; an existing study with other directions is an error, not a silent mix."""
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    directions=list(directions), load_if_exists=True)
    except ValueError as e:
        raise ConfigError(f"study.name: {name!r}: {e}") from None
    existing = [d.name.lower() for d in study.directions]
    if existing != [d.lower() for d in directions]:
        raise ConfigError(f"study.name: {name!r} already exists with directions {existing}; this objective has "
                          f"{list(directions)}. Pick another study.name or the matching objective.")
    return study


def storage_file(url: str) -> Optional[Path]:
    """The file of a SQLite or journal storage URL (its query string left out); None for a database server."""
    for prefix in ("sqlite:///", "journal://"):
        if isinstance(url, str) and url.startswith(prefix):
            return Path(url[len(prefix):].split("?")[0])
    return None


def _existing_storage(storage_url: str) -> optuna.storages.BaseStorage:
    """Open a storage that must already exist (an error names study.storage when it does not or cannot be opened)."""
    if not isinstance(storage_url, str) or not storage_url:
        raise ConfigError(f"study.storage: must be a storage URL (sqlite:///..., journal:///..., postgresql+psycopg://"
                          f"...); got {storage_url!r}")
    local = storage_file(storage_url)
    if local is not None and not local.is_file():
        raise ConfigError(f"study.storage: {redact_url(storage_url)} does not exist; point study.storage (or "
                          f"paths.root) at the storage the search used")
    return make_storage(storage_url)


def _names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False))


def study_names(storage_url: str) -> list[str]:
    """The studies an existing storage holds."""
    return _names(_existing_storage(storage_url))


def open_study(storage_url: str, study_name: str) -> optuna.Study:
    """Load an existing study; errors name the key, the bad value and what the storage holds."""
    storage = _existing_storage(storage_url)
    names = _names(storage)
    if study_name not in names:
        raise ConfigError(f"study.name: no study {study_name!r} in {redact_url(storage_url)}; it holds: "
                          f"{', '.join(names) if names else '(no studies)'}")
    return optuna.load_study(study_name=study_name, storage=storage)
