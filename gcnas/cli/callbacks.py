"""Hydra callbacks and a logging filter that every gcnas entry point's config installs.

* :class:`CheckOutputRoot` proves ``paths.root`` writable before Hydra makes its run folder under it, so that an
  unwritable root is one clear line (exit status 2), not Hydra's traceback.
* :class:`PrepareStorage` creates the storage's schema once in the launching process, before a multirun starts its
  workers: on a fresh PostgreSQL database, workers starting together otherwise race to create the tables.
* :class:`RedactSecrets` masks a storage URL's password in the files Hydra saved for the job (``.hydra/*.yaml``,
  ``multirun.yaml``), for users who passed the URL on the command line instead of through ``GCNAS_STORAGE_URL``.
* :class:`RedactFilter` masks it in every log record, console and file (Hydra's launchers log each job's overrides).

The multirun callbacks also give the launching process what Hydra 1.3 gives only a job: the ``${hydra:...}``
resolver (:func:`install_controller_config`), without which the default ``paths.root`` cannot be resolved there.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from gcnas.errors import ConfigError
from gcnas.files import atomic_write_text

__all__ = ["PrepareStorage", "RedactSecrets", "RedactFilter", "CheckOutputRoot", "redact_text",
           "install_controller_config"]

log = logging.getLogger("gcnas.search")


def install_controller_config(config: DictConfig) -> bool:
    """Make ``${hydra:...}`` resolvable in a multirun's launching process; True if this call did it.

    Hydra 1.3 sets ``HydraConfig`` only when a job starts, yet its sweepers and launchers resolve ``hydra.sweep.dir``
    in the launching process before any job, and ours is ``${paths.root}/multirun/...`` with ``paths.root`` at
    ``${hydra:runtime.cwd}/outputs``: without this, every multirun left at the default root stops with ``HydraConfig
    was not set`` (and the ``on_multirun_start`` checks here could not read the root). Hydra's own fix (PR 3439,
    unreleased in 1.3.8) installs the composed config exactly so, before the callbacks and the sweeper, and restores
    the previous one when the multirun ends; where Hydra does that already, this does nothing.
    ``tests/test_scale_out.py`` fails when Hydra starts doing it, so this can then go."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return False
    HydraConfig.instance().set_config(config)
    return True


def uninstall_controller_config() -> None:
    """Undo :func:`install_controller_config` when the multirun ends: a process that goes on (a test, a notebook)
    must not look as if it ran inside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None


class _Multirun(Callback):
    """Installs the launching process's ``HydraConfig`` for its own ``on_multirun_start`` if no callback before it
    did, and removes it again in ``on_multirun_end`` (called in reverse order, so after every other callback)."""

    _installed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._installed = install_controller_config(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._installed:
            uninstall_controller_config()
            self._installed = False


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with the password replaced by ``***``."""
    from gcnas.search.study import redact_url

    return redact_url(text)


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact_text(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


def _redact_file(path: Path) -> None:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return
    clean = redact_text(text)
    if clean == text:
        return
    atomic_write_text(path, clean)


class RedactSecrets(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hc = config.get("hydra") or {}
        out = OmegaConf.select(hc, "runtime.output_dir", default=None)
        subdir = OmegaConf.select(hc, "output_subdir", default=None)
        if out and subdir:
            for p in (Path(out) / subdir).glob("*.yaml"):
                _redact_file(p)
        sweep = OmegaConf.select(hc, "sweep.dir", default=None, throw_on_resolution_failure=False)
        if sweep and (Path(sweep) / "multirun.yaml").is_file():
            _redact_file(Path(sweep) / "multirun.yaml")


class PrepareStorage(_Multirun):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        super().on_multirun_start(config, **kwargs)
        from gcnas.search.study import make_storage, redact_url

        url = OmegaConf.select(config, "study.storage", default=None, throw_on_resolution_failure=False)
        if not isinstance(url, str) or not url or url.startswith("journal://"):
            return  # nothing to create ahead (journal files need no schema), or the URL differs per job
        try:
            make_storage(url)
            log.info("storage %s ready for the workers", redact_url(url))
        except Exception as e:  # the workers retry on their own and report a real problem with its key
            log.warning("could not prepare %s before the workers start: %s", redact_url(url), redact_text(str(e)))


class CheckOutputRoot(_Multirun):
    def _check(self, config: DictConfig) -> None:
        import sys

        from gcnas.cli.common import check_writable

        root = OmegaConf.select(config, "paths.root", default=None, throw_on_resolution_failure=False)
        if root is None:
            return
        try:
            check_writable(root)
        except ConfigError as e:
            print(f"{Path(sys.argv[0]).name}: {e}", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        super().on_multirun_start(config, **kwargs)
        self._check(config)
