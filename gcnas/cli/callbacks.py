"""Hydra callbacks and a logging filter that every gcnas entry point's config installs.

* :class:`CheckOutputRoot` proves ``paths.root`` writable before Hydra makes its run folder under it, so that an
  unwritable root is one clear line (exit status 2), not Hydra's traceback.
* :class:`PrepareStorage` creates the storage's schema once in the launching process, before a multirun starts its
  workers: on a fresh PostgreSQL database, workers starting together otherwise race to create the tables.
* :class:`RedactSecrets` masks a storage URL's password in the files Hydra saved for the job (``.hydra/*.yaml``,
  ``multirun.yaml``), for users who passed the URL on the command line instead of through ``GCNAS_STORAGE_URL``.
* :class:`RedactFilter` masks it in every log record, console and file (Hydra's launchers log each job's overrides).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from gcnas.errors import ConfigError

__all__ = ["PrepareStorage", "RedactSecrets", "RedactFilter", "CheckOutputRoot", "redact_text"]

log = logging.getLogger("gcnas.search")
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(clean)
    os.replace(tmp, path)


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


class PrepareStorage(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from gcnas.search.study import make_storage, redact_url

        url = OmegaConf.select(config, "study.storage", default=None, throw_on_resolution_failure=False)
        if not isinstance(url, str) or not url or url.startswith("journal://"):
            return  # nothing to create ahead (journal files need no schema), or the URL differs per job
        try:
            make_storage(url)
            log.info("storage %s ready for the workers", redact_url(url))
        except Exception as e:  # the workers retry on their own and report a real problem with its key
            log.warning("could not prepare %s before the workers start: %s", redact_url(url), redact_text(str(e)))


class CheckOutputRoot(Callback):
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
        self._check(config)
