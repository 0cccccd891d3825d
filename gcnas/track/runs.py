"""Which W&B run a training or a trial writes to: its id, recorded beside what it trains, so that whoever resumes the
work continues (or closes) the same W&B run instead of opening a second one.

A ``gcnas-train`` run records its W&B run id in its checkpoint folder (``<train.dir>/<model>/seed<k>/wandb-run.json``)
when it starts; a resume (``train.resume=true``) reads it back and continues that run with W&B's ``resume="allow"``,
its steps being epochs, so the resumed half starts at the step after the first half's last. ``train.resume=false``
starts over with a new id. A search trial records its id in its folder (``trials/trial-<N>/wandb-run.json``); a
retry of it (another trial number, trained from scratch, see :mod:`gcnas.search.retry`) reads it there and closes
that run as ``retried`` with the retry's number (:class:`~gcnas.track.WandbTracker`).

The ids are W&B's kind (8 random lowercase letters and digits), not hashes of what is trained: two studies or
trainings of the same name (one deleted and made again) then never write into each other's runs.
"""
from __future__ import annotations

import json
import secrets
import string
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from gcnas.errors import ConfigError
from gcnas.files import atomic_write_text

__all__ = ["RUN_FILE", "new_run_id", "recorded_run_id", "record_run_id", "find_recorded", "check_user_run_id"]

RUN_FILE = "wandb-run.json"
_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id() -> str:
    """A fresh W&B run id, in the form W&B gives its own."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))


def recorded_run_id(folder: Union[str, Path]) -> Optional[str]:
    """The W&B run id recorded in ``folder``; None when there is none (or it cannot be read: the run starts anew)."""
    try:
        value = json.loads((Path(folder) / RUN_FILE).read_text()).get("id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def record_run_id(folder: Union[str, Path], run_id: str, **about: Any) -> None:
    """Record ``run_id`` (and ``about``: what the run is) in ``folder``, whole or not at all."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(folder) / RUN_FILE, json.dumps({"id": run_id, **about}, sort_keys=True) + "\n")


def find_recorded(run_id: str, folders: Iterable[Path], but: Optional[Path] = None) -> Optional[Path]:
    """The first of ``folders`` (other than ``but``) that records ``run_id``; None if none does."""
    skip = Path(but).resolve() if but is not None else None
    for folder in folders:
        if recorded_run_id(folder) == run_id and Path(folder).resolve() != skip:
            return Path(folder)
    return None


def check_user_run_id(run_id: Optional[str], runs: int, folder: Path, resume: bool, others: Iterable[Path]) -> None:
    """``wandb.run_id`` as ``gcnas-train`` takes it, checked before anything trains: it names one run (``runs`` is
    how many this training has); a resume (``resume``) of the checkpoint in ``folder`` continues the run recorded
    there, and a start over does not write into it; no other folder among ``others`` (trainings', trials') records
    it. A :class:`ConfigError` naming the key."""
    if run_id is None:
        return
    if runs != 1:
        raise ConfigError(f"wandb.run_id: names one W&B run, but this training has {runs} (one per model and seed); "
                          f"leave it null: each run continues the one recorded beside its checkpoint")
    recorded = recorded_run_id(folder)
    if resume and recorded is not None and recorded != run_id:
        raise ConfigError(f"wandb.run_id: {run_id!r} is not the W&B run of the checkpoint in {folder}, whose curves "
                          f"are in run {recorded!r}; leave wandb.run_id null to continue that run, or start over "
                          f"with train.resume=false")
    if not resume and recorded == run_id:
        raise ConfigError(f"wandb.run_id: {run_id!r} holds the curves of the run that train.resume=false starts over "
                          f"({folder}); give another id, or leave it null for a new one")
    other = find_recorded(run_id, others, but=folder)
    if other is not None:
        raise ConfigError(f"wandb.run_id: {run_id!r} is the W&B run of another training or search trial ({other}); "
                          f"its curves and this training's would mix: choose another id, or leave it null for a new "
                          f"one")
