"""Hooks a search worker calls around each trial; W&B tracking (``gcnas.track``) is one of them.

Tracking is a callback on the objective, never a dependency of training (docs/architecture.md): a hook that raises is
reported once as a warning and then skipped for the rest of the worker, and the search goes on.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["SearchCallback", "Callbacks"]

log = logging.getLogger("gcnas.search")


class SearchCallback:
    """Base class; every hook is a no-op. The worker calls them in this order, in its own process:

    ``trial_started`` once the trial's architecture is known (before cost and training), ``epoch_ended`` after each
    validated epoch, ``trial_ended`` after the result is stored (with the stored ``FrozenTrial``), ``study_ended`` once
    when this worker leaves and the study's budget is spent, ``close`` last.
    """

    def trial_started(self, number: int, role: str, arch, train: Mapping[str, Any]) -> None:
        pass

    def epoch_ended(self, number: int, result) -> None:
        pass

    def trial_ended(self, trial) -> None:
        pass

    def study_ended(self, study, result, study_dir: Path) -> None:
        pass

    def close(self) -> None:
        pass


class Callbacks:
    """Calls each hook of each callback; one that raises is warned about once and dropped."""

    def __init__(self, callbacks: Sequence[SearchCallback] = ()) -> None:
        self.callbacks = list(callbacks)

    def __call__(self, hook: str, *args: Any) -> None:
        for cb in list(self.callbacks):
            try:
                getattr(cb, hook)(*args)
            except Exception as e:  # a callback never stops the search
                self.callbacks.remove(cb)
                msg = f"{type(cb).__name__}.{hook} failed ({type(e).__name__}: {e}); it is off for this worker"
                log.warning("%s", msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
