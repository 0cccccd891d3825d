"""What the search worker does around Optuna's public API, in one place, and why.

The worker runs its own ask/tell loop instead of ``Study.optimize`` with ``MaxTrialsCallback``: only a loop that
checks, after ``ask``, how many trials are ahead of its own can end a study with *exactly* ``study.n_trials`` finished
trials when several workers share it (``optimize`` lets each worker overshoot by the trials it has in flight). Four
Optuna behaviours are handled here; ``tests/test_optuna_compat.py`` checks each one against
the installed Optuna and fails loudly when it changes, so this module can shrink:

* **Heartbeats.** ``optimize`` starts a heartbeat thread per trial; an ask/tell loop must send them itself
  (:class:`Heartbeat`, through the public ``storage.record_heartbeat``), and Optuna warns on every ``ask`` from a
  heartbeat storage outside ``optimize`` (:data:`HEARTBEAT_WARNING`), which :func:`ask` silences.
* **The grid's end.** ``GridSampler`` calls ``study.stop()`` when its grid is exhausted, which raises outside
  ``optimize`` after the trial has been stored; :func:`tell` lets that pass (the loop ends on the budget).
* **SQLite's enqueued trials.** Two processes asking at once on one SQLite file can both take the same waiting
  (enqueued) trial; :func:`ask` holds a file lock beside the database (PostgreSQL and the journal need none).
* **A retry's constraints.** ``RetryHeartbeatStaleTrialCallback`` copies every system attribute into the retry,
  constraint values (``Trial.set_constraint``) included, and ``set_constraint`` keeps a value already set (with a
  warning): the retry could never record its own. :func:`without_constraints` leaves them out of the copy; which
  system attributes hold constraints is found through the public API (:func:`_constraint_prefix`), not assumed.

Trial ids (for ``storage.get_trial`` and heartbeats) come from the public storage API (:func:`trial_id`).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
import warnings
from typing import Optional

import optuna

from gcnas.files import file_lock
from gcnas.search.study import redact_url

log = logging.getLogger("gcnas.search")

__all__ = ["HEARTBEAT_WARNING", "GRID_STOP_MESSAGE", "ask", "tell", "trial_id", "Heartbeat", "without_constraints"]

HEARTBEAT_WARNING = "Heartbeat of storage is supposed to be used"  # the start of Optuna's warning on ask
GRID_STOP_MESSAGE = "Study.stop"  # in the RuntimeError that study.stop() raises outside optimize


def ask(study: optuna.Study, url: str) -> optuna.Trial:
    """``study.ask()`` under the SQLite lock, without the heartbeat warning meant for ``optimize``."""
    with warnings.catch_warnings(), _sqlite_ask_lock(url):
        warnings.filterwarnings("ignore", message=HEARTBEAT_WARNING)
        return study.ask()


def tell(study: optuna.Study, trial, **kwargs) -> None:
    """``study.tell``, where a grid sampler's "grid exhausted" ``study.stop()`` is no error: the trial is stored first,
    and the loop ends on the study's budget (Optuna's GridSampler only expects to stop ``Study.optimize``)."""
    try:
        study.tell(trial, **kwargs)
    except RuntimeError as e:
        if GRID_STOP_MESSAGE not in str(e):
            raise
        log.info("the grid is exhausted: every grid point has been evaluated")


def trial_id(storage: optuna.storages.BaseStorage, study: optuna.Study, trial) -> int:
    """The id that ``storage`` gives ``trial`` of ``study`` (what ``storage.get_trial`` and heartbeats take)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name),
                                                           trial.number)


@contextlib.contextmanager
def _sqlite_ask_lock(url: str):
    """Serialise ``study.ask`` among the processes sharing one SQLite file.

    Python's sqlite3 reads a waiting (enqueued) trial's state outside a transaction, so two workers asking at the same
    moment could both take it and run it twice (seen: two workers both ran the enqueued baseline, and the second
    crashed telling a finished trial). A file lock beside the database closes that window; PostgreSQL (row locks) and
    the journal storage (its own lock) need none.
    """
    if not str(url).startswith("sqlite:///"):
        yield
        return
    with file_lock(f"{url[len('sqlite:///'):]}.ask.lock"):
        yield


class Heartbeat:
    """Records a running trial's heartbeat every ``interval`` seconds from a thread, while the trial runs."""

    def __init__(self, storage, trial_id: int, interval: Optional[float]) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Heartbeat":
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.trial_id}", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as e:  # a database hiccup: the next beat tries again; the grace period absorbs it
                log.warning("heartbeat of trial id %d not recorded: %s", self.trial_id, redact_url(str(e))[:200])

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@functools.lru_cache(maxsize=1)
def _constraint_prefix() -> str:
    """The start of the system attribute names in which ``Trial.set_constraint`` stores a value, found by setting one
    on a trial of a throw-away in-memory study."""
    storage = optuna.storages.InMemoryStorage()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line for a probe
    try:
        storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "gcnas-constraint-probe")
    finally:
        optuna.logging.set_verbosity(verbosity)
    study = optuna.load_study(study_name="gcnas-constraint-probe", storage=storage)
    trial = study.ask()
    trial.set_constraint("gcnas_probe", 0.0)
    names = [k for k in study.trials[0].system_attrs if k.endswith("gcnas_probe")]
    if len(names) != 1:
        raise RuntimeError(f"Optuna's Trial.set_constraint stored {names!r}: gcnas.search.optuna_compat needs updating")
    return names[0][:-len("gcnas_probe")]


def without_constraints(system_attrs: dict) -> dict:
    """``system_attrs`` without Optuna's constraint values (for a retry, which measures its own)."""
    prefix = _constraint_prefix()
    return {k: v for k, v in system_attrs.items() if not k.startswith(prefix)}
