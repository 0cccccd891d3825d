"""Queueing a trial again: a stale trial (its worker died) or an interrupted one gets a waiting copy that runs first."""
from __future__ import annotations

import copy
import logging
import warnings
from typing import Optional

import optuna
from optuna.trial import FrozenTrial

from gcnas.search import record
from gcnas.search.optuna_compat import without_constraints

__all__ = ["queue_again", "retry_stale_trial"]

log = logging.getLogger("gcnas.search")
# the user attributes a retried trial keeps
_WHAT_TO_RUN = (record.FIXED_ARCHITECTURE, record.ROLE, record.REPLICATE, record.CONFIRMS)


def retry_stale_trial(max_retries: int):
    """The heartbeat's stale-trial callback: fails the trial whose worker died and queues a waiting copy (at most
    ``max_retries`` retries in a chain; see :func:`queue_again`). Logs what it did."""

    def retry(study: optuna.Study, trial: FrozenTrial) -> None:
        reason = (f"trial {trial.number} (worker {record.WORKER.get(trial, '?')}) stopped sending "
                  f"heartbeats")
        if queue_again(study, trial, reason, max_retries):
            log.warning("trial %d went stale (its worker stopped); its architecture is queued again", trial.number)
        else:
            log.warning("trial %d went stale and has been retried %d times already; not again", trial.number,
                        max_retries)

    return retry


def queue_again(study: optuna.Study, trial: FrozenTrial, reason: str, max_retries: Optional[int] = None) -> bool:
    """Queue a waiting copy of ``trial`` (same parameters) through Optuna's ``RetryHeartbeatStaleTrialCallback``,
    which records the chain in ``retry_history``; the copy gets only the user attributes that say what to run (the
    enqueued architecture, its role, replicate and source trial) plus ``retry_of`` / ``retry_reason``: everything the
    earlier run measured is left behind. False when the chain already holds ``max_retries`` retries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # public since 2.8, still "experimental"
        if max_retries is not None and len(
                optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial)) >= max_retries:
            return False
        what = copy.copy(trial)
        what.user_attrs = {**{a.name: a.get(trial) for a in _WHAT_TO_RUN if a.on(trial)},
                           record.RETRY_OF.name: trial.number, record.RETRY_REASON.name: reason}
        what.system_attrs = without_constraints(trial.system_attrs)  # the retry records its own
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, what)
    return True
